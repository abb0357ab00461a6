"""`python -m bench.instructions`: the instructions our profile write executes in the API process,
against the floor's (bench/peers/api_floor.py), counted by valgrind's callgrind.

Seconds of CPU move with the machine: two runs of `api-write` on one VM differ by more than a
cut of 5% in our code, and an Intel and an AMD machine of the same kind disagree. Instructions do
not: the same code, inputs and library versions execute the same count, whatever else the machine
is doing, so a change is measured in one run of each side. What they miss is what they cannot see:
the kernel (socket writes), the server's HTTP parsing (uvicorn's, the same for both apps, is not
run here) and how fast each instruction is (cache misses).

Each side runs in a child process under callgrind with counting off: the app is built with its
lifespan (pool, clients), users are registered and `--warmup` writes sent through the ASGI app
(no server, no sockets of ours), then counting is switched on (`callgrind_control`) for the
`--requests` measured writes, `--concurrency` at a time, and off again. The two children run at
once, one per core. Needs valgrind (`apt-get install valgrind`) and the machine's PostgreSQL;
each child works in a scratch database of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.environment import PG_ADMIN_URL, REDIS_URL, machine_name

SIDES = ("ours", "floor")
USERS = 8
PASSWORD = "bench-password-0123"  # noqa: S105 - throwaway accounts in a throwaway database

AsgiApp = Callable[..., Awaitable[None]]


async def _call(app: AsgiApp, method: str, path: str, body: Any, token: str | None) -> bytes:
    """One request through the ASGI app; returns the body, raising unless 2xx."""
    raw = json.dumps(body).encode()
    headers = [
        (b"host", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    if not 200 <= status < 300:
        raise RuntimeError(f"{method} {path}: {status} {b''.join(chunks)[:300]!r}")
    return b"".join(chunks)


async def _child(side: str, requests: int, warmup: int, concurrency: int) -> None:
    """Run inside valgrind: set up, warm up, count the measured writes only."""
    from infrastructure.migrations import scratch_database

    name = f"tulifo_instr_{uuid.uuid4().hex[:8]}"
    async with scratch_database(PG_ADMIN_URL, name) as dsn:
        os.environ.update(
            {
                "TULIFO_ENV": "test",
                "TULIFO_DATABASE_URL": dsn,
                "TULIFO_REDIS_URL": REDIS_URL,
                "TULIFO_MONGO_URL": "mongodb://127.0.0.1:1",
                "TULIFO_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                "TULIFO_RABBITMQ_URL": "",
                "TULIFO_BCRYPT_ROUNDS": "4",
                "TULIFO_REGISTER_MAX_PER_IP": "1000000",
                # As in production: one JSON access line per request, here to /dev/null.
                "TULIFO_LOG_LEVEL": "INFO",
                "TULIFO_LOG_JSON": "true",
            }
        )
        from api.server import app_from_environment
        from bench.peers.api_floor import create_floor_app

        ours = app_from_environment()
        # Registration goes through our app on either side: the floor has no sign-up.
        app = ours if side == "ours" else create_floor_app()
        async with ours.router.lifespan_context(ours):
            tokens = [await _register(ours, i) for i in range(USERS)]
            if app is ours:
                await _measure(app, tokens, requests, warmup, concurrency)
            else:
                async with app.router.lifespan_context(app):
                    await _measure(app, tokens, requests, warmup, concurrency)


async def _register(app: AsgiApp, i: int) -> str:
    body = {
        "email": f"instr-{i}-{uuid.uuid4().hex[:6]}@example.com",
        "password": PASSWORD,
        "name": f"Instr Worker {i}",
        "role": "worker",
    }
    answer = json.loads(await _call(app, "POST", "/api/auth/register", body, None))
    token: str = answer["data"]["accessToken"]
    return token


async def _measure(
    app: AsgiApp, tokens: list[str], requests: int, warmup: int, concurrency: int
) -> None:
    counter = iter(range(10**9))

    async def writes(n: int) -> None:
        todo = iter(range(n))

        async def one_at_a_time() -> None:
            for i in todo:
                # A new bio each time: an unchanged profile would write no event.
                body = {"bio": f"instructions write {next(counter)}"}
                await _call(app, "PATCH", "/api/users/me/profile", body, tokens[i % len(tokens)])

        await asyncio.gather(*(one_at_a_time() for _ in range(concurrency)))

    await writes(warmup)
    _instrument("on")
    await writes(requests)
    _instrument("off")


def _instrument(state: str) -> None:
    subprocess.run(
        ["callgrind_control", "--instr=" + state, str(os.getpid())],
        check=True,
        capture_output=True,
    )


def _count(out_file: Path) -> int:
    for line in out_file.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        uvloop.run(_child(args.child, args.requests, args.warmup, args.concurrency))
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench.instructions needs valgrind: apt-get install valgrind")
    with tempfile.TemporaryDirectory(prefix="tulifo-instructions-") as workdir:
        children = {}
        for side in SIDES:
            out_file = Path(workdir) / f"callgrind.{side}"
            command = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out_file}",
                sys.executable,
                "-m",
                "bench.instructions",
                "--child",
                side,
                *("--requests", str(args.requests), "--warmup", str(args.warmup)),
                *("--concurrency", str(args.concurrency)),
            ]
            log = (Path(workdir) / f"{side}.log").open("w")
            children[side] = (subprocess.Popen(command, stdout=log, stderr=log), out_file, log)
        per_request = {}
        for side, (child, out_file, log) in children.items():
            if child.wait() != 0:
                log.close()
                tail = (Path(workdir) / f"{side}.log").read_text()[-2000:]
                sys.exit(f"the {side} child failed ({child.returncode}):\n{tail}")
            per_request[side] = _count(out_file) / args.requests
    print(f"machine: {machine_name()}, Python {sys.version.split()[0]}")
    print(f"{args.requests} measured PATCH /api/users/me/profile after {args.warmup}, ", end="")
    print(f"{args.concurrency} at a time, in process (no server, no sockets)")
    for side in SIDES:
        print(f"  {side:5}  {per_request[side] / 1e6:.3f} M instructions per write")
    print(f"  ratio  {per_request['ours'] / per_request['floor']:.3f}x the floor")


if __name__ == "__main__":
    main()
