#!/usr/bin/env python3
"""A stand-in for `tsh proxy db --tunnel`, built for sqlguard's tests.

Listens on 127.0.0.1:<--port> (a free port without it), prints tsh's readiness line naming it, and forwards every connection to
$FAKE_TSH_TARGET (host:port of the test PostgreSQL). With FAKE_TSH_FAIL set it fails the way
tsh does when the session expired: a message on stderr and exit status 1; likewise with "Not
logged in" when $TELEPORT_HOME is unset or holds a file `fake-tsh-not-logged-in` (so tests see
which home the child was given).
"""
import asyncio
import os
import sys

args = sys.argv[1:]
if args[:3] != ["proxy", "db", "--tunnel"]:
    print(f"fake tsh: unsupported command {args}", file=sys.stderr)
    sys.exit(2)
opts = {}
i = 3
while i < len(args) and args[i].startswith("--"):
    opts[args[i]] = args[i + 1]
    i += 2
db = args[i] if i < len(args) else ""
# Like tsh, logged in or not according to its home: without TELEPORT_HOME it would look in
# ~/.tsh, where these tests log nobody in.
home = os.environ.get("TELEPORT_HOME", "")
if not home or os.path.exists(os.path.join(home, "fake-tsh-not-logged-in")):
    print("ERROR: Not logged in.", file=sys.stderr)
    sys.exit(1)
if os.environ.get("FAKE_TSH_FAIL"):
    print("ERROR: your Teleport session has expired; run 'tsh login'", file=sys.stderr)
    sys.exit(1)
host, port = os.environ["FAKE_TSH_TARGET"].rsplit(":", 1)


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    server_reader, server_writer = await asyncio.open_connection(host, int(port))
    await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer), return_exceptions=True)


async def main():
    # Like tsh: without --port, bind a free port and name it on the ready line.
    server = await asyncio.start_server(handle, "127.0.0.1", int(opts.get("--port", "0")))
    port = server.sockets[0].getsockname()[1]
    print(f'Started authenticated tunnel for the PostgreSQL database "{db}" in cluster "{opts.get("--cluster", "")}" on 127.0.0.1:{port}.', flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
