"""Asking the human, end to end, with the official MCP Python SDK as the client.

Run by tests/approval.rs (which starts PostgreSQL and writes the configuration):
    python tests/e2e/approval_client.py SQLGUARD_BIN CONFIG DB_URI PLAN_DB_URI TAG
The elicitation callback plays the person: it answers by the marker each query selects
('approve-…', 'decline-…', …), so one session exercises every answer. Prints one line per check
and 'N passed, N failed'; exits non-zero on failure. tests/approval.rs then counts, in
PostgreSQL's statement log, how often each marker's query ran.
"""
import asyncio
import json
import re
import sys

import os  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, finish, text_of  # noqa: E402

import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BIN, CONFIG, DB, PLAN_DB, TAG = sys.argv[1:6]
asked = []  # (marker, message, schema) of every elicitation the person saw




def q(marker, table="payroll"):
    """A query PostgreSQL's statement log shows by its leading marker comment."""
    return f"/* {TAG}-{marker} */ SELECT '{TAG}-{marker}' AS marker, count(*) AS n FROM {table}"


async def person(ctx, params):
    """The person at the client: answers by the query's marker."""
    m = re.search(re.escape(TAG) + r"-([a-z0-9-]+)", params.message)
    marker = m.group(1) if m else ""
    asked.append((marker, params.message, params.requested_schema))
    kind = marker.split("-")[0] if marker else ""
    if kind == "approve":
        if marker.endswith("-slow"):
            await asyncio.sleep(1.5)
        return types.ElicitResult(action="accept", content={"decision": "approve"})
    if kind == "formdecline":
        return types.ElicitResult(action="accept", content={"decision": "decline"})
    if kind == "decline":
        return types.ElicitResult(action="decline")
    if kind == "cancel":
        return types.ElicitResult(action="cancel")
    if kind == "late":
        await asyncio.sleep(4)  # past approval_timeout_s = 2
        return types.ElicitResult(action="accept", content={"decision": "approve"})
    if kind == "garbage":
        return types.ElicitResult(action="accept", content={"decision": "sure, why not"})
    if kind == "empty":
        return types.ElicitResult(action="accept")
    return types.ElicitResult(action="decline")


async def call(session, sql, database=DB):
    r = await session.call_tool("teleport_postgres_query", {"database": database, "query": sql})
    return r.is_error, text_of(r)


async def with_person():
    params = StdioServerParameters(command=BIN, args=["serve", "--config", CONFIG])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=person) as session:
            await session.initialize()

            err, text = await call(session, q("approve-1"))
            check("an approved query runs", not err and '"n":3' in text.replace(" ", ""), text)
            marker, message, schema = asked[-1]
            check("the person is asked about that query", marker == "approve-1", asked[-1])
            check("the person sees the database", DB in message, message)
            check("the person sees the exact query", q("approve-1") in message, message)
            check("the person sees why", "table_needs_approval" in message and "public.payroll" in message, message)
            check("the person is told the query is the agent's words", "agent's words" in message, message)
            props = schema.get("properties", {}) if isinstance(schema, dict) else {}
            check("the form asks approve or decline", props.get("decision", {}).get("enum") == ["approve", "decline"], schema)

            n = len(asked)
            err, text = await call(session, q("free-1", "staff"))
            check("a query the policy does not ask about runs without asking", not err and len(asked) == n, (text, asked[n:]))

            for marker, word, answer in [
                ("decline-1", "the person declined", "decline"),
                ("formdecline-1", "the person chose decline", "decline"),
                ("cancel-1", "dismissed the request", "cancel"),
                ("late-1", "nobody answered within 2 s", "timeout"),
                ("garbage-1", "neither approve nor decline", "malformed"),
                ("empty-1", "without an answer", "malformed"),
            ]:
                err, text = await call(session, q(marker))
                check(f"{answer} ({marker}) is a refusal", err and "Nothing was run" in text, text)
                check(f"{answer} ({marker}) says why", word in text, text)
                check(f"{answer} ({marker}) names the rule", "table_needs_approval" in text, text)
            err, text = await call(session, q("decline-2"))
            check("a declined call tells the agent not to retry unchanged", "Do not retry it unchanged" in text, text)

            # Two asks at once on one session: each gets its own answer.
            loop = asyncio.get_running_loop()

            async def timed(sql):
                r = await call(session, sql)
                return r, loop.time()

            ((e1, t1), done1), ((e2, t2), done2) = await asyncio.gather(
                timed(q("approve-c1-slow")), timed(q("decline-c2"))
            )
            check("concurrent: the quick decline is not held up by the slow approval", done2 < done1, (done1, done2))
            check("concurrent: the slow approval runs its own query", not e1 and "approve-c1-slow" in t1, t1)
            check("concurrent: the decline refuses only its own query", e2 and "declined" in t2, t2)

            # A view over the asked table asks too.
            err, text = await call(session, q("decline-view", "pay_view"))
            check("a view over an asked table asks", err and "pay_view reads public.payroll" in text, text)

            # The plan step asks after the plan is judged, before the statement is sent.
            err, text = await call(session, q("approve-plan", "ledger"), PLAN_DB)
            check("an approved plan ask runs", not err and '"n":20000' in text.replace(" ", ""), text)
            plan_message = asked[-1][1]
            check("the plan ask says it was planned", "PostgreSQL has planned it" in plan_message and "plan_cost_needs_approval" in plan_message, plan_message)
            err, text = await call(session, q("decline-plan", "ledger"), PLAN_DB)
            check("a declined plan ask does not run", err and "plan_cost_needs_approval" in text and "declined" in text, text)
            n = len(asked)
            err, text = await call(session, f"/* {TAG}-deny-plan */ SELECT 1 FROM ledger CROSS JOIN payroll", PLAN_DB)
            check("a plan deny wins over ask: the person is not asked", err and "plan_cartesian" in text and len(asked) == n, (text, asked[n:]))


async def without_capability():
    params = StdioServerParameters(command=BIN, args=["serve", "--config", CONFIG])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            err, text = await call(session, q("nocap-1"))
            check("a client without elicitation is refused", err and "did not declare the elicitation capability" in text, text)
            check("and told what to do", "supports elicitation" in text, text)
            err, text = await call(session, q("free-2", "staff"))
            check("queries without asks still run there", not err, text)


async def main():
    await with_person()
    await without_capability()
    print(json.dumps({"asked": [a[0] for a in asked]}))
    finish()


asyncio.run(main())
