"""A bounded load test on loopback: `serve --listen` with Teleport JWTs against stdio, same run.

Run by tests/http.rs (`load_on_loopback`):
    python tests/e2e/load.py SQLGUARD_BIN CONFIG DB_URI JWKS_PORT MCP_PORT AUDIENCE ISSUER SESSIONS CALLS
HTTP: SESSIONS sessions (one user each, own token), CALLS calls in all, all sessions at once.
stdio: one session with SESSIONS calls in flight, CALLS calls. Prints p50/p99 and calls/s of
each, errors, and the server's RSS per idle HTTP session; the last line is JSON.
"""
import asyncio
import json
import subprocess
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import http_client as tokens  # noqa: E402  (its JWKS server and token signer; argv is shared)

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402

BIN, CONFIG, DB = sys.argv[1:4]
SESSIONS, CALLS = int(sys.argv[8]), int(sys.argv[9])
SQL = "SELECT name FROM hr.salaries WHERE amount > 1000 LIMIT 5"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


async def drive(session, n, lat, errors):
    for _ in range(n):
        t = time.perf_counter()
        r = await session.call_tool("teleport_postgres_query", {"database": DB, "query": SQL})
        lat.append(time.perf_counter() - t)
        if r.is_error:
            errors.append(tokens.text_of(r)[:200])


async def http_session(i, n, lat, errors, ready, go):
    tok = tokens.token(f"load{i}", ["dev"], exp_in=3600)
    async with create_mcp_http_client(headers={"Teleport-Jwt-Assertion": tok}) as http:
        async with streamable_http_client(tokens.URL, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await session.list_tools()
                ready.append(i)
                await go.wait()
                await drive(session, n, lat, errors)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def idle_sessions(pid, n):
    """RSS growth per session that is opened and left idle."""
    before = rss_kb(pid)
    stack = []
    import contextlib
    async with contextlib.AsyncExitStack() as es:
        for i in range(n):
            tok = tokens.token(f"idle{i}", ["dev"], exp_in=3600)
            http = await es.enter_async_context(create_mcp_http_client(headers={"Teleport-Jwt-Assertion": tok}))
            read, write = await es.enter_async_context(streamable_http_client(tokens.URL, http_client=http))
            s = await es.enter_async_context(ClientSession(read, write))
            await s.initialize()
            stack.append(s)
        await asyncio.sleep(0.5)
        after = rss_kb(pid)
    return (after - before) / n


def share(i):
    """Session i's calls: CALLS split as evenly as it goes."""
    return CALLS // SESSIONS + (1 if i < CALLS % SESSIONS else 0)


async def run_http(pid):
    lat, errors, ready = [], [], []
    go = asyncio.Event()
    tasks = [asyncio.create_task(http_session(i, share(i), lat, errors, ready, go)) for i in range(SESSIONS)]
    while len(ready) < SESSIONS:
        await asyncio.sleep(0.05)
        if any(t.done() for t in tasks):
            break
    t0 = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    took = time.perf_counter() - t0
    return {"calls": len(lat), "errors": len(errors), "first_errors": errors[:3],
            "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "calls_per_s": len(lat) / took}


async def run_stdio():
    lat, errors = [], []
    params = StdioServerParameters(command=BIN, args=["serve", "--config", CONFIG])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()
            t0 = time.perf_counter()
            await asyncio.gather(*[drive(session, share(i), lat, errors) for i in range(SESSIONS)])
            took = time.perf_counter() - t0
    return {"calls": len(lat), "errors": len(errors), "first_errors": errors[:3],
            "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "calls_per_s": len(lat) / took}


async def main():
    import threading
    server = tokens.ThreadingHTTPServer(("127.0.0.1", int(tokens.JWKS_PORT)), tokens.Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc = subprocess.Popen([BIN, "serve", "--config", CONFIG, "--listen", f"127.0.0.1:{tokens.MCP_PORT}"],
                            stderr=subprocess.DEVNULL)
    try:
        assert tokens.wait_ready(), "the HTTP server did not start"
        idle = await idle_sessions(proc.pid, 100)
        http = await run_http(proc.pid)
        http["rss_kb_per_idle_session"] = idle
    finally:
        proc.terminate()
        proc.wait(timeout=40)
        server.shutdown()
    stdio = await run_stdio()
    for name, r in (("http", http), ("stdio", stdio)):
        print(f"{name:5}: {r['calls']} calls, {r['errors']} errors, p50 {r['p50_ms']:.2f} ms, "
              f"p99 {r['p99_ms']:.2f} ms, {r['calls_per_s']:.0f} calls/s")
    print(f"RSS per idle HTTP session: {http['rss_kb_per_idle_session']:.0f} KiB")
    print(json.dumps({"http": http, "stdio": stdio, "sessions": SESSIONS}))
    sys.exit(1 if http["errors"] or stdio["errors"] or http["calls"] < CALLS or stdio["calls"] < CALLS else 0)


asyncio.run(main())
