"""Times the pglast-based peer guards over a JSON-lines stream, as `sqlguard check --jsonl` reads it.

Run by `cargo bench --bench decision` (its CLI rows) with the interpreters that
`scripts/peer-bench` installs; by hand:

    target/peer-bench/postgres-mcp/bin/python benches/peers.py postgres-mcp STREAM.jsonl

Prints one line: the peer, the calls, how many it allowed, and microseconds per call. Only the
check is timed (the interpreter's start-up and the imports are not), and each peer's logging
is silenced, so the figure is the peer's best case.
"""

import json
import sys
import time


def postgres_mcp():
    # Postgres MCP Pro's restricted mode: SafeSqlDriver._validate (pglast parse + tree walk).
    from postgres_mcp.sql.safe_sql import SafeSqlDriver

    driver = SafeSqlDriver(None)
    return driver._validate, (ValueError,)


def awslabs():
    # The awslabs Postgres MCP server's read-only guard (pglast parse + node checks).
    from awslabs.postgres_mcp_server.sql_guard import SqlPolicyError, assert_executable
    from loguru import logger

    logger.remove()
    return assert_executable, (SqlPolicyError,)


PEERS = {"postgres-mcp": postgres_mcp, "awslabs": awslabs}


def main():
    peer, path = sys.argv[1], sys.argv[2]
    check, refused = PEERS[peer]()
    with open(path, encoding="utf-8") as f:
        stream = [json.loads(line)["sql"] for line in f if line.strip()]
    allowed = 0
    started = time.perf_counter_ns()
    for sql in stream:
        try:
            check(sql)
            allowed += 1
        except refused:
            pass
        except Exception:  # a peer that breaks on an input refuses it
            pass
    elapsed = time.perf_counter_ns() - started
    if not stream:
        print(f"{peer}: no calls")
        return
    print(f"{peer}: {len(stream)} calls, {allowed} allowed, {elapsed / 1000 / len(stream):.1f} µs per call")


if __name__ == "__main__":
    main()
