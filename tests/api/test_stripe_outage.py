"""A Stripe that hangs or refuses connections stalls only the requests that need it.

Each test runs the API against a localstripe of its own, which it stops (SIGSTOP: a provider
that accepts connections and never answers) or kills (connection refused), then brings back.
While Stripe is down, create-intent calls for one booking answer 503 with Retry-After within the
Stripe deadline, an anonymous GET /api/projects answers while they are still waiting, no pooled
connection is held for them, and nothing is left that blocks the retry once Stripe is back: the
retry makes exactly one PaymentIntent.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from infrastructure.processes import ManagedProcess, free_port, wait_for_port
from infrastructure.settings import Settings
from tests.api.conftest import api_of_its_own, client_from, unique_ip
from tests.api.gigs import Gig, book_gig
from tests.api.stripe_support import (
    LOCALSTRIPE,
    OUTAGE_RETRY_AFTER,
    outage_settings,
    stripe_client,
)
from tests.conftest import wait_until

URL = "/api/payments/create-intent"
CALLS = 24
RETRY_AFTER = OUTAGE_RETRY_AFTER


class OwnStripe:
    """A localstripe on a port that stays the same across restarts, so the API (whose Stripe
    base is fixed at startup) finds the new one where the old one was."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_dir = log_dir
        self._proc: ManagedProcess | None = None
        self._paused = False

    def start(self) -> None:
        # --from-scratch: a restarted localstripe remembers nothing, so every PaymentIntent it
        # lists afterwards was made after Stripe came back.
        self._proc = ManagedProcess.spawn(
            "localstripe",
            [str(LOCALSTRIPE), "--port", str(self.port), "--from-scratch"],
            log_path=self._log_dir / "localstripe.log",
        )
        wait_for_port("127.0.0.1", self.port, deadline_s=30, proc=self._proc)

    def hang(self) -> None:
        """Stopped, not gone: the kernel still accepts connections, nothing ever answers."""
        assert self._proc is not None
        os.killpg(self._proc.popen.pid, signal.SIGSTOP)
        self._paused = True

    def kill(self) -> None:
        """Gone: connections are refused."""
        if self._proc is not None:
            self._proc.kill()  # SIGKILL ends a stopped process too
            self._proc.stop()  # closes its log
            self._proc = None
        self._paused = False

    def restart(self) -> None:
        self.kill()
        self.start()


@dataclass(frozen=True)
class Outage:
    api: FastAPI
    http: httpx.AsyncClient
    stripe: OwnStripe
    settings: Settings


@pytest.fixture
def own_stripe(tmp_path: Path) -> Iterator[OwnStripe]:
    server = OwnStripe(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def outage(settings: Settings, own_stripe: OwnStripe) -> AsyncIterator[Outage]:
    # Short timeouts keep the test quick; the hang below is still several times longer than
    # the bounded waits of the requests that must not wait on it.
    own = outage_settings(settings, stripe_api_base=own_stripe.url)
    async with api_of_its_own(own) as api, client_from(api, ip=unique_ip()) as http:
        yield Outage(api, http, own_stripe, own)


def _pool(outage: Outage) -> asyncpg.Pool:
    pool: asyncpg.Pool = outage.api.state.tulifo.pool
    return pool


def _connections_in_use(pool: asyncpg.Pool) -> int:
    return int(pool.get_size() - pool.get_idle_size())


def _deadline(outage: Outage) -> float:
    """How long a Stripe-bound request may take: the gateway's deadline, and some slack for
    the two short transactions around it."""
    deadline: float = outage.api.state.stripe_gateway.deadline_seconds
    return deadline + 10.0


def _fire(outage: Outage, gig: Gig) -> list[asyncio.Task[httpx.Response]]:
    return [
        asyncio.create_task(
            outage.http.post(
                URL, json={"bookingId": str(gig.booking_id)}, headers=gig.client.headers
            )
        )
        for _ in range(CALLS)
    ]


async def _browse(outage: Outage) -> list[httpx.Response]:
    """Anonymous visitors reading the project board, concurrently, with a bounded wait."""
    async with asyncio.timeout(10):
        return await asyncio.gather(*(outage.http.get("/api/projects") for _ in range(8)))


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    error = response.json()["error"]
    assert error["code"] == "PAYMENT_PROVIDER_UNAVAILABLE"
    assert error["details"]["retryAfter"] == RETRY_AFTER


async def _attempt(db: asyncpg.Connection, gig: Gig) -> asyncpg.Record | None:
    record: asyncpg.Record | None = await db.fetchrow(
        """SELECT *, lease_until <= now() AS lease_over
             FROM payment_intent_attempts WHERE booking_id = $1""",
        gig.booking_id,
    )
    return record


async def _assert_nothing_half_written(db: asyncpg.Connection, gig: Gig) -> None:
    assert (
        await db.fetchval("SELECT count(*) FROM payments WHERE booking_id = $1", gig.booking_id)
        == 0
    )
    attempt = await _attempt(db, gig)
    assert attempt is not None
    # Released, not left to run out: the next call claims it at once, with the same key (an
    # outage is not a refusal, and the lost create may have reached Stripe).
    assert (attempt["status"], attempt["lease_over"], attempt["refused"]) == ("failed", True, False)
    assert attempt["idempotency_key"] == f"pi-{gig.booking_id}"


async def _retry_makes_exactly_one_intent(outage: Outage, gig: Gig, db: asyncpg.Connection) -> None:
    first = await outage.http.post(
        URL, json={"bookingId": str(gig.booking_id)}, headers=gig.client.headers
    )
    again = await outage.http.post(
        URL, json={"bookingId": str(gig.booking_id)}, headers=gig.client.headers
    )

    assert (first.status_code, again.status_code) == (201, 200), first.text
    intent_id = first.json()["data"]["paymentIntentId"]
    assert again.json()["data"]["paymentIntentId"] == intent_id
    async with stripe_client(outage.stripe.url) as sc:
        listed = await sc.v1.payment_intents.list_async(params={"limit": 100})
    ours = [
        i.id for i in listed.data if i.metadata.to_dict().get("booking_id") == str(gig.booking_id)
    ]
    assert ours == [intent_id]
    rows = await db.fetch(
        "SELECT stripe_payment_intent_id, status FROM payments WHERE booking_id = $1",
        gig.booking_id,
    )
    assert [tuple(r) for r in rows] == [(intent_id, "pending")]
    attempt = await _attempt(db, gig)
    assert attempt is not None
    assert (attempt["status"], attempt["stripe_payment_intent_id"]) == ("created", intent_id)


async def test_a_hanging_stripe_stalls_only_the_calls_that_need_it(
    outage: Outage, db: asyncpg.Connection
) -> None:
    gig = await book_gig(outage.http)
    pool = _pool(outage)
    outage.stripe.hang()

    calls = _fire(outage, gig)
    try:
        # The claim is committed just before the Stripe call: from here on a request is at
        # Stripe, and the pool must have every connection back.
        await wait_until(lambda: _attempt_status(db, gig, "creating"), timeout=10, what="the claim")
        await wait_until(lambda: _connections_in_use(pool) == 0, timeout=5, what="an idle pool")
        board = await _browse(outage)
        still_waiting = [not call.done() for call in calls]
        in_use = _connections_in_use(pool)
        # A transaction waiting on Stripe shows as one left open with nothing to do.
        open_transactions = await db.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND state LIKE 'idle in transaction%'"""
        )
    finally:
        async with asyncio.timeout(_deadline(outage)):
            answers = await asyncio.gather(*calls)

    assert [r.status_code for r in board] == [200] * len(board)
    assert all(still_waiting), "the board answered only after the Stripe-bound calls"
    assert in_use == 0
    assert open_transactions == 0
    for response in answers:
        _assert_unavailable(response)
    await _assert_nothing_half_written(db, gig)

    outage.stripe.restart()
    await _retry_makes_exactly_one_intent(outage, gig, db)


async def test_a_refused_connection_is_a_503_and_the_retry_pays_once(
    outage: Outage, db: asyncpg.Connection
) -> None:
    gig = await book_gig(outage.http)
    outage.stripe.kill()

    async with asyncio.timeout(_deadline(outage)):
        answers = await asyncio.gather(*_fire(outage, gig))
    board = await _browse(outage)

    for response in answers:
        _assert_unavailable(response)
    assert [r.status_code for r in board] == [200] * len(board)
    assert _connections_in_use(_pool(outage)) == 0
    await _assert_nothing_half_written(db, gig)

    outage.stripe.start()
    await _retry_makes_exactly_one_intent(outage, gig, db)


async def _attempt_status(db: asyncpg.Connection, gig: Gig, status: str) -> bool:
    attempt = await _attempt(db, gig)
    return attempt is not None and attempt["status"] == status
