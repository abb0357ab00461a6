"""`api-write` and `api-write-storm`: PATCH /api/users/me/profile through a real uvicorn server
at a fixed offered rate, alone and then during a login storm.

The server is the production one (bench/api_server.py) in a process of its own. Users are
registered first (not measured); then each request changes one user's bio, so every write
commits a profile row and a `profile.updated` outbox event, as in production. Target
(DESIGN.md §6): p99 < 50 ms at 300 req/s on non-password endpoints, unchanged during a login
storm. The storm window runs the same write load against the same server process while
bench/login_storm.py signs accounts in at a stated rate, each a bcrypt check at cost 12.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from bench import login_storm
from bench.clients import ClientKind, Patch, patch_client
from bench.cpu import CpuWindow
from bench.environment import HOST, REDIS_URL, REGISTER_MAX_PER_IP, Environment
from bench.load import LoadResult, open_loop
from bench.login_storm import LoginStorm, StormPlan
from bench.report import Row, Target, row
from infrastructure.processes import ManagedProcess, free_port

TARGET_P99_MS = 50.0
# Our write path's server CPU per write at most this many times the floor's (issue 10).
FLOOR_RATIO_TARGET = 1.3
# The calm window is taken in this many slices, in turns with the floor's (`measure`).
FLOOR_SLICES = 10
# The achieved rate may fall this short of the offered one (the last answers land after the
# window closes) and still count as sustained.
RATE_TOLERANCE = 0.97
REQUEST_TIMEOUT_S = 5.0
# Connections to the server, and requests past the client at once (more wait in a semaphore,
# their latency still counted from when they were due). One uvicorn worker answers on one core;
# 16 keep its database round trips overlapped (8 lost throughput at 400 req/s). More only feed
# httpcore's pool bookkeeping, O(waiting x connections) per event: at 32 and 400 req/s the httpx
# client's CPU per request doubled (1.3 -> 2.7 ms), starving the server it was measuring.
CONNECTIONS = 16
SERVER_READY_S = 60.0
# Registration hashes a password; the write load never checks one, so cost 4 keeps set-up short.
# The storm's accounts are hashed at the production cost (bench/login_storm.py).
SETUP_BCRYPT_ROUNDS = 4
PASSWORD = "bench-password-0123"  # noqa: S105 - throwaway accounts in a throwaway database
_REPO = Path(__file__).resolve().parent.parent

# (request number) -> success
Send = Callable[[int], Awaitable[bool]]


@dataclass(frozen=True)
class Plan:
    rate: float
    duration_s: float
    warmup_s: float
    users: int
    client: ClientKind = "aiohttp"
    storm: StormPlan = dataclasses.field(default_factory=StormPlan)


@dataclass(frozen=True)
class WriteWindow:
    """One measured window of writes, where the CPU went in it, and the storm beside it."""

    load: LoadResult
    cpu: CpuWindow
    storm: LoginStorm | None = None


@dataclass(frozen=True)
class ApiWriteResult:
    plan: Plan
    calm: WriteWindow | None
    stormy: WriteWindow | None
    outbox_events: int
    writes_sent_ok: int
    # The same load on the floor app (bench/peers/api_floor.py), in turns with ours: in the
    # calm window, and in the storm's (the logins still going to ours).
    floor: WriteWindow | None = None
    stormy_floor: WriteWindow | None = None

    def rows(self) -> list[Row]:
        rows: list[Row] = []
        events_note = f"{self.outbox_events:,}/{self.writes_sent_ok:,} outbox events"
        if self.calm is not None:
            if self.floor is not None:
                rows += _floor_rows("api-write", self.floor)
            rows += self._write_rows("api-write", self.calm, self.floor, events_note)
        if self.stormy is not None:
            if self.stormy_floor is not None:
                rows += _floor_rows("api-write-storm", self.stormy_floor)
            rows += self._write_rows("api-write-storm", self.stormy, self.stormy_floor, events_note)
            assert self.stormy.storm is not None
            rows += _login_rows("api-write-storm", self.stormy.storm)
        return rows

    def _write_rows(
        self, name: str, window: WriteWindow, floor: WriteWindow | None, events_note: str
    ) -> list[Row]:
        load, rate, cpu = window.load, self.plan.rate, window.cpu
        server, client = cpu.cores(cpu.server_s), cpu.cores(cpu.client_s)
        server_text = f"server {server:.2f}"
        target_text = f"< {TARGET_P99_MS:.0f} @ {rate:.0f} req/s"
        if window.storm is not None:
            loop = cpu.cores(cpu.server_loop_s)
            server_text += f" (event loop {loop:.2f}, other threads {server - loop:.2f})"
            target_text += f" + {window.storm.plan.login_rate:.0f} logins/s"
        cores = f"cores used: {server_text}, client ({self.plan.client}) {client:.2f}"
        sustained = load.achieved_rate >= RATE_TOLERANCE * rate and load.error_count == 0
        p99 = row(
            f"{name} p99",
            load.latency_ms(99),
            "ms",
            target=Target("<", TARGET_P99_MS, target_text),
            note=cores,
        )
        if not sustained:
            p99 = dataclasses.replace(p99, verdict="misses", note=f"rate not sustained; {cores}")
        busy = f"machine busy {cpu.cores(cpu.machine_s):.2f} of {os.cpu_count()} cores"
        others = f"others: {cpu.busiest_others()}"
        # In the storm the server's other threads hash passwords: the writes' cost is what they
        # take of the event loop, the thread every request queues for.
        loop_only = window.storm is not None
        per_write = cpu_ms_per_request(window, loop_only=loop_only)
        if floor is not None:
            floor_ms = cpu_ms_per_request(floor)
            ratio = per_write / floor_ms if floor_ms else math.nan
            what = "event-loop CPU" if loop_only else "CPU"
            per_write_row = row(
                f"{name} {what} per write / floor",
                ratio,
                "x",
                target=Target("<", FLOOR_RATIO_TARGET, f"< {FLOOR_RATIO_TARGET:g}x the floor"),
                note=f"{per_write:.2f} ms vs the floor's {floor_ms:.2f} ms of server CPU",
            )
        else:
            per_write_row = row(f"{name} CPU per write", per_write, "ms", note="server CPU")
        return [
            per_write_row,
            row(f"{name} p50", load.latency_ms(50), "ms"),
            row(f"{name} p95", load.latency_ms(95), "ms"),
            p99,
            row(
                f"{name} achieved rate",
                load.achieved_rate,
                "req/s",
                target=Target(">=", RATE_TOLERANCE * rate, f"{rate:.0f} offered"),
                note=f"{load.ok:,} ok in {load.elapsed_s:.1f} s; {busy}",
            ),
            row(
                f"{name} errors",
                load.error_count,
                "req",
                target=Target("==", 0, "0"),
                note=f"{events_note}; {others}",
            ),
        ]


def cpu_ms_per_request(window: WriteWindow, *, loop_only: bool = False) -> float:
    """Server CPU milliseconds per answered request in the window (of its event-loop thread
    alone with `loop_only`)."""
    spent = window.cpu.server_loop_s if loop_only else window.cpu.server_s
    return 1000 * spent / window.load.ok if window.load.ok else math.nan


def _floor_rows(name: str, floor: WriteWindow) -> list[Row]:
    cores = f"server {floor.cpu.cores(floor.cpu.server_s):.2f} cores"
    return [
        row(f"{name} floor p99", floor.load.latency_ms(99), "ms", note=cores),
        row(
            f"{name} floor CPU per write",
            cpu_ms_per_request(floor),
            "ms",
            note=f"bare FastAPI + asyncpg doing the same write (bench/peers/api_floor.py), "
            f"in {FLOOR_SLICES} turns with ours",
        ),
    ]


def _login_rows(name: str, storm: LoginStorm) -> list[Row]:
    """The logins' own figures: no §6 target (a storm is more than bcrypt can check), but how
    many got in, how long they took, and what the others were told."""
    load = storm.load
    offered = f"{load.scheduled:,} offered at {storm.plan.login_rate:.0f}/s"
    return [
        row(f"{name} login p50", load.latency_ms(50), "ms", note="of the logins answered 200"),
        row(f"{name} login p99", load.latency_ms(99), "ms"),
        row(
            f"{name} logins ok",
            load.ok,
            "logins",
            note=f"{offered} from {storm.addresses} addresses; {storm.split()}",
        ),
    ]


async def measure(
    env: Environment, plan: Plan, *, calm: bool = True, storm: bool = True, floor: bool = True
) -> ApiWriteResult:
    """The calm window, then the storm window, each as selected, against one server. With the
    floor (same users, tokens and database, both servers up), each window is shared with it:
    after both warm up they take turns in slices (`FLOOR_SLICES`), floor first, the storm's
    logins going on through the floor's turns too. This machine's speed drifts within seconds
    by more than the cuts being measured: slices taken in turn see the same drift, and in the
    storm the same contention for the cores."""
    assert env.database_url is not None
    async with AsyncExitStack() as stack:
        base_url, server = await stack.enter_async_context(api_server(env))
        async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as setup:
            tokens = await register_users(setup, plan.users)
        ours = _Target(
            server.popen.pid, await stack.enter_async_context(_writer(plan, base_url, tokens))
        )
        floor_target = None
        if floor:
            floor_url, floor_server = await stack.enter_async_context(
                api_server(env, module="bench.peers.api_floor")
            )
            floor_target = _Target(
                floor_server.popen.pid,
                await stack.enter_async_context(_writer(plan, floor_url, tokens)),
            )
        storm_s = _window_s(plan, floor_target is not None)
        emails = []
        if storm:
            emails = await login_storm.create_accounts(
                env.database_url, int(plan.storm.login_rate * storm_s)
            )
        calm_measured = stormy_measured = None
        if calm:
            calm_measured = await _writes(ours, floor_target, plan)
        if storm:
            stormy_measured = await _during_storm(
                _writes(ours, floor_target, plan), storm_s, plan, base_url, emails
            )
    conn = await asyncpg.connect(env.database_url)
    try:
        events = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE event_type = 'profile.updated'"
        )
    finally:
        await conn.close()
    sent_ok = sum(m.sent_ok for m in (calm_measured, stormy_measured) if m is not None)
    return ApiWriteResult(
        plan,
        calm_measured.ours if calm_measured else None,
        stormy_measured.ours if stormy_measured else None,
        events,
        sent_ok,
        calm_measured.floor if calm_measured else None,
        stormy_measured.floor if stormy_measured else None,
    )


@dataclass(frozen=True)
class _Target:
    """A server under load: its process and how to send it a write."""

    pid: int
    write: Send


@dataclass(frozen=True)
class _Measured:
    """One window: writes answered in it (warm-ups included), ours, and the floor's turns."""

    sent_ok: int
    ours: WriteWindow
    floor: WriteWindow | None


@asynccontextmanager
async def _writer(plan: Plan, base_url: str, tokens: list[str]) -> AsyncIterator[Send]:
    async with patch_client(
        plan.client, base_url, connections=CONNECTIONS, timeout_s=REQUEST_TIMEOUT_S
    ) as patch:
        yield _profile_writer(patch, tokens)


def _window_s(plan: Plan, with_floor: bool) -> float:
    """How long a window lasts, warm-ups included."""
    sides = 2 if with_floor else 1
    return sides * (plan.warmup_s + plan.duration_s)


async def _writes(ours: _Target, floor: _Target | None, plan: Plan) -> _Measured:
    """A warm-up (connections, caches), then the window: ours alone, or `FLOOR_SLICES` turns
    of the floor and ours, each a slice of the window's length, each side's slices joined."""
    drain = REQUEST_TIMEOUT_S + 1
    targets = (ours,) if floor is None else (floor, ours)
    slices_of = 1 if floor is None else FLOOR_SLICES
    sent_ok = 0
    for target in targets:
        warm = await open_loop(
            target.write, rate=plan.rate, duration_s=plan.warmup_s, drain_timeout_s=drain
        )
        sent_ok += warm.ok
    slices: dict[int, list[WriteWindow]] = {target.pid: [] for target in targets}
    for _ in range(slices_of):
        for target in targets:
            cpu = CpuWindow(target.pid)
            cpu.start()
            load = await open_loop(
                target.write,
                rate=plan.rate,
                duration_s=plan.duration_s / slices_of,
                drain_timeout_s=drain,
            )
            cpu.stop()
            sent_ok += load.ok
            slices[target.pid].append(WriteWindow(load, cpu))
    return _Measured(
        sent_ok,
        _joined(slices[ours.pid]),
        _joined(slices[floor.pid]) if floor is not None else None,
    )


def _joined(windows: list[WriteWindow]) -> WriteWindow:
    return WriteWindow(
        LoadResult.joined([w.load for w in windows]), CpuWindow.joined([w.cpu for w in windows])
    )


async def _during_storm(
    writes: Awaitable[_Measured], storm_s: float, plan: Plan, base_url: str, emails: list[str]
) -> _Measured:
    """`writes` with logins offered to our server from the start of the warm-up to the end of
    the window: whatever queue the storm builds is there when the writes are counted."""
    statuses: Counter[str] = Counter()
    addresses = login_storm.client_addresses(login_storm.addresses_for(len(emails)))
    async with login_storm.login_client(
        base_url, addresses, timeout_s=REQUEST_TIMEOUT_S, statuses=statuses
    ) as login:

        async def sign_in(i: int) -> bool:
            return await login(i, emails[i % len(emails)]) == 200

        logins = asyncio.create_task(
            open_loop(
                sign_in,
                rate=plan.storm.login_rate,
                duration_s=storm_s,
                drain_timeout_s=REQUEST_TIMEOUT_S + 1,
            )
        )
        try:
            measured = await writes
            login_load = await logins
        finally:
            logins.cancel()
    storm = LoginStorm(plan.storm, len(addresses), login_load, statuses)
    return dataclasses.replace(measured, ours=dataclasses.replace(measured.ours, storm=storm))


def _profile_writer(patch: Patch, tokens: list[str]) -> Send:
    counter = itertools.count()
    gate = asyncio.Semaphore(CONNECTIONS)

    async def patch_profile(i: int) -> bool:
        # A new bio each time: an unchanged profile would write no event.
        body = {"bio": f"bench write {next(counter)}"}
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        async with gate:
            return await patch("/api/users/me/profile", body, headers) == 200

    return patch_profile


async def register_users(client: httpx.AsyncClient, count: int) -> list[str]:
    """`count` workers, registered through the API; returns their access tokens."""
    gate = asyncio.Semaphore(4)

    async def one(i: int) -> str:
        async with gate:
            response = await client.post(
                "/api/auth/register",
                json={
                    "email": f"bench-{i}-{uuid.uuid4().hex[:8]}@example.com",
                    "password": PASSWORD,
                    "name": f"Bench Worker {i}",
                    "role": "worker",
                },
            )
        if response.status_code != 201:
            raise RuntimeError(f"registration failed: {response.status_code} {response.text}")
        token: str = response.json()["data"]["accessToken"]
        return token

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@asynccontextmanager
async def api_server(
    env: Environment,
    extra_env: Mapping[str, str] | None = None,
    *,
    module: str = "bench.api_server",
) -> AsyncIterator[tuple[str, ManagedProcess]]:
    """The API (or another server `module` taking a port) in a process of its own on a free
    port, its settings `server_env` and `extra_env`; yields its base URL and the process."""
    port = free_port(HOST)
    log_path = env.workdir / f"{module.rsplit('.', 1)[-1]}.log"
    proc = ManagedProcess.spawn(
        "api",
        [sys.executable, "-m", module, str(port)],
        env=server_env(env) | dict(extra_env or {}),
        cwd=_REPO,
        log_path=log_path,
    )
    base_url = f"http://{HOST}:{port}"
    try:
        await _wait_until_serving(base_url, proc)
        yield base_url, proc
    finally:
        proc.stop()
    # Uvicorn drains, then re-raises the SIGTERM it caught: -15 is its clean exit.
    if proc.popen.returncode not in (0, -signal.SIGTERM, None):
        raise RuntimeError(f"the API exited with {proc.popen.returncode}: {_tail(log_path)}")


def server_env(env: Environment) -> dict[str, str]:
    """The parent's environment without any TULIFO_* of a developer's, plus the bench's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TULIFO_")}
    assert env.database_url is not None
    return base | {
        "TULIFO_ENV": "test",
        "TULIFO_DATABASE_URL": env.database_url,
        "TULIFO_REDIS_URL": REDIS_URL,
        # Not contacted by the endpoint measured; the clients connect lazily.
        "TULIFO_KAFKA_BOOTSTRAP": env.kafka_bootstrap or f"{HOST}:1",
        # Sign-ins record their sessions there (api/sessions); no other endpoint measured uses it.
        "TULIFO_MONGO_URL": env.mongo_url or f"mongodb://{HOST}:1",
        "TULIFO_MONGO_DATABASE": f"bench_{env.run_id}",
        "TULIFO_RABBITMQ_URL": "",
        "TULIFO_REGISTER_MAX_PER_IP": str(REGISTER_MAX_PER_IP),
        "TULIFO_BCRYPT_ROUNDS": str(SETUP_BCRYPT_ROUNDS),
        # Production logging: one JSON access line per request (to the log file).
        "TULIFO_LOG_LEVEL": "INFO",
        "TULIFO_LOG_JSON": "true",
    }


async def _wait_until_serving(base_url: str, proc: ManagedProcess) -> None:
    deadline = time.monotonic() + SERVER_READY_S
    async with httpx.AsyncClient(base_url=base_url, timeout=1.0) as probe:
        while time.monotonic() < deadline:
            if not proc.alive:
                raise RuntimeError(f"the API exited at start: {_tail(proc.log_path)}")
            try:
                await probe.get("/health")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise TimeoutError(f"the API did not answer within {SERVER_READY_S:.0f} s")


def _tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
