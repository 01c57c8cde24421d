"""End-to-end test of `sqlguard serve` with the official MCP Python SDK as the client.

Run by tests/mcp.rs (which starts the PostgreSQL cluster and writes the configuration):
    python tests/e2e/mcp_client.py SQLGUARD_BIN CONFIG DB_URI DATA_FILE
Prints one line per check and a closing 'N passed, N failed' line; exits non-zero on failure.
"""
import asyncio
import json
import sys
import time

import os  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, text_of  # noqa: E402

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BIN, CONFIG, DB, DATA_FILE = sys.argv[1:5]




async def query(session, sql, database=DB):
    r = await session.call_tool("teleport_postgres_query", {"database": database, "query": sql})
    body = json.loads(text_of(r))
    return r.is_error, body


# Each bypass class of the threat model, with a word the denial must contain.
DENIED = [
    ("COMMIT; DROP TABLE users", "max_statements"),
    ("SET TRANSACTION READ WRITE", "read_write_transaction"),
    ("SET default_transaction_read_only = off", "setting_change"),
    ("WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", "data_modifying_cte"),
    ("SELECT * INTO copy_of_users FROM users", "select_into"),
    ("SELECT * FROM users FOR UPDATE", "row_lock"),
    ("EXPLAIN ANALYZE DELETE FROM users", "explain_analyze_write"),
    ("PREPARE p AS DELETE FROM users", "statement_kind"),
    ("COPY users TO STDOUT", "statement_kind"),
    ("DO $$ BEGIN DELETE FROM users; END $$", "statement_kind"),
    ("SELECT nextval('counter')", "function_risk"),
    ("SELECT pg_sleep(5)", "function_risk"),
    ("SELECT query_to_xml('DELETE FROM users RETURNING *', true, true, '')", "function_risk"),
    ("SET ROLE postgres", "identity_switch"),
    ("SELECT * FROM pg_authid", "sensitive_catalog"),
    ("SELECT U&\"pg_read_fil\\0065\"('/etc/passwd')", "function_risk"),
    ("SELECT " + "(" * 100000 + "1" + ")" * 100000, "over this server's limit"),
    ("SELECT " + "(" * 20000 + "1" + ")" * 20000, "flatten it"),
    ("DELETE FROM users", "statement_kind"),
    ("SELECT ssn FROM users", "column_denied"),
]


async def main():
    params = StdioServerParameters(command=BIN, args=["serve", "--config", CONFIG])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check("initialize names the server", init.server_info.name == "sqlguard", init.server_info)
            check("instructions state the rules", "read-only" in (init.instructions or ""), init.instructions)

            tools = await session.list_tools()
            names = sorted(t.name for t in tools.tools)
            check("tools are Teleport's", names == ["teleport_list_databases", "teleport_postgres_query"], names)

            resources = await session.list_resources()
            uris = {str(r.uri): r for r in resources.resources}
            check("the database is a resource", DB in uris and uris[DB].mime_type == "application/yaml", list(uris))
            check("resource name is '<name> Database'", DB in uris and uris[DB].name == "shop Database", uris.get(DB))
            y = await session.read_resource(DB)
            check("database resource is YAML", "protocol: postgres" in y.contents[0].text, y.contents[0].text)
            schema_uri = DB.replace("teleport://", "sqlguard://") + "/schema"
            s = json.loads((await session.read_resource(schema_uri)).contents[0].text)
            users = [r for r in s["relations"] if r["name"] == "users"]
            cols = [c["name"] for c in users[0]["columns"]] if users else []
            check("schema lists readable columns", "email" in cols and "ssn" not in cols, cols)

            lst = await session.call_tool("teleport_list_databases", {})
            check("list_databases returns embedded YAML", not lst.is_error and lst.content[0].resource.mime_type == "application/yaml", lst)

            err, body = await query(session, "SELECT id, name, email FROM users WHERE id <= 3 ORDER BY id")
            check("allowed query returns rows", not err and body["rowsCount"] == 3 and body["data"][0] == {"id": 1, "name": "user1", "email": "user1@example.com"}, body)
            check("result says not truncated", body.get("truncated") is False, body)
            err, body = await query(session, "SELECT total, placed_at, total > 1 AS big FROM orders ORDER BY id LIMIT 1")
            check("typed values", not err and body["data"][0] == {"total": "1.25", "placed_at": "2024-05-06T07:08:09+00:00", "big": True}, body)

            for sql, word in DENIED:
                err, body = await query(session, sql)
                check(f"denied [{word}] {sql[:50]}", err and body["data"] is None and body["rowsCount"] == 0 and word in body.get("error", ""), body)

            err, body = await query(session, "SELECT 1", database="postgres://nope")
            check("malformed URI explains the format", err and "teleport://clusters/<cluster>/databases/<name>" in body["error"], body)
            err, body = await query(session, "SELECT 1", database="teleport://clusters/local/databases/other")
            check("unknown database points to the list", err and "teleport_list_databases" in body["error"], body)
            err, body = await query(session, "SELECT * FROM no_such_table")
            check("PostgreSQL errors pass through with SQLSTATE", err and "42P01" in body["error"], body)

            start = time.time()
            results = await asyncio.gather(*[query(session, f"SELECT {i} AS i, pg_backend_pid() IS NOT NULL AS ok") for i in range(20)])
            check("20 concurrent calls", all(not e and b["data"][0]["i"] == i for i, (e, b) in enumerate(results)), results[:2])
            print(f"     20 concurrent calls took {time.time() - start:.3f}s")

            err, body = await query(session, "SELECT g FROM generate_series(1, 500000) g")
            check("large result is capped", not err and body["rowsCount"] == 1000 and body["truncated"] is True and "note" in body, {k: body[k] for k in body if k != "data"})

            err, body = await query(session, "SELECT count(*) AS n FROM orders")
            check("orders readable before reload", not err and body["data"][0]["n"] == 1000, body)
            with open(DATA_FILE) as f:
                data = json.load(f)
            data["sqlguard"]["tables"] = {"deny": ["public.orders"]}
            with open(DATA_FILE, "w") as f:
                json.dump(data, f)
            denied = False
            for _ in range(40):
                await asyncio.sleep(0.25)
                err, body = await query(session, "SELECT count(*) AS n FROM orders")
                if err and "table_denied" in body["error"]:
                    denied = True
                    break
            check("policy reload between two calls", denied, body)
            err, body = await query(session, "SELECT count(*) AS n FROM users")
            check("other tables still readable after reload", not err, body)

    finish()


asyncio.run(main())
