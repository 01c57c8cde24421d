"""`sqlguard serve --listen` with Teleport's JWT, end to end, with the official MCP Python SDK's
streamable-HTTP client.

Run by tests/http.rs (which starts PostgreSQL and writes the configuration):
    python tests/e2e/http_client.py SQLGUARD_BIN CONFIG DB_URI JWKS_PORT MCP_PORT AUDIENCE ISSUER
This script serves the JWKS itself (two RSA keys; the set it serves can change: a rotation),
signs tokens the way Teleport does (RS256, `kid`, claims aud/iss/sub/username/roles/traits/
nbf/exp), starts sqlguard, and drives it. Prints one line per check and 'N passed, N failed'.
"""
import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

import os  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, text_of  # noqa: E402

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

BIN, CONFIG, DB, JWKS_PORT, MCP_PORT, AUDIENCE, ISSUER = sys.argv[1:8]
URL = f"http://127.0.0.1:{MCP_PORT}/mcp"



def b64(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


KEYS = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "k2", "rogue")}
served_kids = ["k1"]


def jwks():
    keys = []
    for kid in served_kids:
        pub = KEYS[kid].public_key().public_numbers()
        keys.append({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64(pub.n), "e": b64(pub.e)})
    return {"keys": keys}


class Jwks(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(jwks()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def token(user, roles, kid="k1", aud=AUDIENCE, iss=ISSUER, exp_in=600, nbf_in=-5, alg="RS256"):
    now = int(time.time())
    claims = {
        "aud": [aud], "iss": iss, "sub": user, "username": user, "roles": roles,
        "traits": {"logins": [user]}, "nbf": now + nbf_in, "exp": now + exp_in,
    }
    if alg == "HS256":
        return jwt.encode(claims, "not-the-cluster-key-but-long-enough-for-hs256", algorithm="HS256", headers={"kid": kid})
    return jwt.encode(claims, KEYS[kid], algorithm=alg, headers={"kid": kid})



async def session_call(tok, sql):
    headers = {"Teleport-Jwt-Assertion": tok} if tok else {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(URL, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await session.list_tools()  # as clients do; the SDK checks results against it
                r = await session.call_tool("teleport_postgres_query", {"database": DB, "query": sql})
                return r.is_error, text_of(r)


async def session_calls(tok, sqls):
    """Several calls on one session, in order."""
    out = []
    async with create_mcp_http_client(headers={"Teleport-Jwt-Assertion": tok}) as http:
        async with streamable_http_client(URL, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                for sql in sqls:
                    r = await session.call_tool("teleport_postgres_query", {"database": DB, "query": sql})
                    out.append((r.is_error, text_of(r)))
    return out


def raw_post(tok):
    """A bare MCP initialize POST: the HTTP status and body (401s happen before MCP)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}).encode()
    req = urllib.request.Request(URL, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    if tok is not None:
        req.add_header("Teleport-Jwt-Assertion", tok)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_ready():
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{MCP_PORT}/healthz", timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.05)
    return False


async def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(JWKS_PORT)), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc = subprocess.Popen([BIN, "serve", "--config", CONFIG, "--listen", f"127.0.0.1:{MCP_PORT}"],
                            stderr=subprocess.PIPE, text=True)
    try:
        check("/healthz answers", wait_ready())
        with urllib.request.urlopen(f"http://127.0.0.1:{MCP_PORT}/readyz", timeout=5) as r:
            check("/readyz: every database has a route", r.status == 200)

        sql = "SELECT count(*) AS n FROM hr.salaries"
        err, text = await session_call(token("alice", ["dev"]), sql)
        check("alice (dev) may read hr.salaries", not err and '"n"' in text, text)
        err, text = await session_call(token("bob", ["contractor"]), sql)
        check("bob (contractor) may not, on the same query", err and "role_contractor_hr" in text, text)

        # A session belongs to the user who opened it.
        async with create_mcp_http_client(headers={"Teleport-Jwt-Assertion": token("alice", ["dev"])}) as http:
            async with streamable_http_client(URL, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    await session.list_tools()
                    http.headers["Teleport-Jwt-Assertion"] = token("bob", ["contractor"])
                    r = await session.call_tool("teleport_postgres_query", {"database": DB, "query": "SELECT 1 AS one"})
                    check("another user's token on alice's session is refused", r.is_error and "opened by alice" in text_of(r), text_of(r))

        for name, tok, rule in [
            ("missing", None, "jwt_missing"),
            ("garbage", "not.a.jwt", "jwt_malformed"),
            ("expired", token("alice", ["dev"], exp_in=-120), "jwt_expired"),
            ("not yet valid", token("alice", ["dev"], nbf_in=300), "jwt_not_yet_valid"),
            ("wrong audience", token("alice", ["dev"], aud="http://other-app"), "jwt_wrong_audience"),
            ("wrong issuer", token("alice", ["dev"], iss="another-cluster"), "jwt_wrong_issuer"),
            ("unknown key", token("alice", ["dev"], kid="rogue"), "jwt_unknown_key"),
            ("HS256 (the public key as a secret)", token("alice", ["dev"], alg="HS256"), "jwt_bad_signature"),
        ]:
            status, body = raw_post(tok)
            check(f"{name} token: 401", status == 401, (status, body))
            check(f"{name} token: says why ({rule})", rule in body, body)

        # Rotation: the cluster signs with k2 now; sqlguard fetches the set again for the new kid.
        served_kids[:] = ["k1", "k2"]
        time.sleep(1.2)  # unknown kids fetch the set at most once a second
        err, text = await session_call(token("alice", ["dev"], kid="k2"), "SELECT 1 AS one")
        check("a token of a rotated-in key is accepted without a restart", not err, text)
        served_kids[:] = ["k2"]
        status, body = raw_post(token("alice", ["dev"], kid="rogue"))
        check("after rotation an unknown key is still refused", status == 401, (status, body))

        # Per-user limits: refused at once, never queued.
        slow = "SELECT count(*) AS n FROM generate_series(1, 20000000)"
        results = await asyncio.gather(*[session_call(token("carol", ["dev"]), slow) for _ in range(3)])
        over = [t for e, t in results if e and "limits.per_user.concurrent = 2" in t]
        check("one user's third concurrent call is refused", len(over) == 1, results)
        check("her other two ran", sum(1 for e, _ in results if not e) == 2, results)
        texts = await session_calls(token("dave", ["dev"]), ["SELECT 1 AS one"] * 41)
        check("one user's first 40 calls in a minute run", all(not e for e, _ in texts[:40]), texts[:40])
        check("the 41st is refused with when to call again", texts[40][0] and "limits.per_user.per_minute = 40" in texts[40][1] and "call again in" in texts[40][1], texts[40])
        err, text = await session_call(token("erin", ["dev"]), "SELECT 1 AS one")
        check("other users are not held back by one user's limit", not err, text)

        with urllib.request.urlopen(f"http://127.0.0.1:{MCP_PORT}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        for needle in [
            'sqlguard_calls_total{tool="teleport_postgres_query",verdict="denied"}',
            'sqlguard_calls_total{tool="teleport_postgres_query",verdict="allowed"}',
            'sqlguard_refusals_total{rule="role_contractor_hr"} 1',
            'sqlguard_refusals_total{rule="jwt_expired"} 1',
            'sqlguard_refusals_total{rule="per_user_rate"} 1',
            "sqlguard_decision_seconds_bucket",
            "sqlguard_execution_seconds_count",
            'sqlguard_pool_connections{database="' + DB + '",state="open"}',
        ]:
            check(f"/metrics has {needle}", needle in metrics, metrics[:3000])

        # Drain: a call running at SIGTERM finishes with its result; new calls are refused.
        running = asyncio.create_task(session_call(token("alice", ["dev"]), slow))
        await asyncio.sleep(0.8)
        proc.terminate()
        await asyncio.sleep(0.2)
        err, text = await session_call(token("frank", ["dev"]), "SELECT 1 AS one")
        check("a call during the drain is refused as shutting down", err and "shutting down" in text, text)
        err, text = await running
        check("the call running at SIGTERM finishes with its result", not err and '"n"' in text, text)
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        check("SIGTERM stops the server cleanly", proc.returncode == 0, (proc.returncode, stderr[-2000:]))
        server.shutdown()
    finish()


if __name__ == "__main__":
    asyncio.run(main())
