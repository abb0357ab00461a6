"""Stripe in the launcher: localstripe when no Stripe is configured, delivering its signed webhooks
to the API; a real key is used as it is, and nothing is started or called for it."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.payments.webhooks import _HANDLERS
from infrastructure.local import LocalServices, Mode
from infrastructure.local.stripe import WEBHOOK_EVENTS
from infrastructure.processes import free_port, port_open
from infrastructure.settings import DEV_STRIPE_API_KEY, Settings
from tests.api.gigs import book_gig, create_intent
from tests.conftest import wait_until
from tests.infrastructure.conftest import STARTUP_DEADLINE_S, StartTulifo, clean_env, gone
from tests.mail import MailCapture

# A key shaped like Stripe's (sk_test_ + 24 characters); api.stripe.com would refuse it.
REAL_LOOKING_KEY = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"
# localstripe delivers an event ~1 s after it; the deadline only bounds a failure.
WEBHOOK_DEADLINE_S = 15.0


@pytest.fixture
def configured(
    database_url: str,
    redis_url: str,
    kafka: str,
    mongo_url: str,
    elasticsearch_url: str,
    smtp: MailCapture,
) -> dict[str, object]:
    """Settings under which every service but Stripe answers, so a launch starts at most
    localstripe and takes well under a second."""
    return {
        "env": "test",
        "log_json": False,
        "database_url": database_url,
        "redis_url": redis_url,
        "kafka_bootstrap": kafka,
        "mongo_url": mongo_url,
        "rabbitmq_url": None,
        "elasticsearch_url": elasticsearch_url,
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
    }


def settings(configured: dict[str, object], **overrides: object) -> Settings:
    return Settings(**{**configured, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def stripe_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host name this process resolves from now on that belongs to Stripe."""
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str | bytes) and "stripe" in str(host):
            looked_up.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    return looked_up


def test_webhooks_are_asked_for_exactly_the_events_the_api_handles() -> None:
    assert set(WEBHOOK_EVENTS) == set(_HANDLERS)


def test_localstripe_is_started_when_no_stripe_is_configured_and_stopped_on_exit(
    tmp_path: Path, configured: dict[str, object]
) -> None:
    api_url = f"http://127.0.0.1:{free_port()}"
    config = settings(configured)
    with LocalServices(config, state_dir=tmp_path / "state", api_url=api_url) as services:
        status = services.status("stripe")
        assert status.mode is Mode.EMBEDDED
        assert status.url is not None and status.url.startswith("http://127.0.0.1:")
        assert f"webhooks delivered to {api_url}/api/payments/webhook" in status.detail
        assert services.env["TULIFO_STRIPE_API_BASE"] == status.url
        assert [p.name for p in services.processes] == ["stripe (localstripe)"]
        # It serves the Stripe API with the development key, the one the children keep.
        created = httpx.post(
            f"{status.url}/v1/payment_intents",
            data={"amount": "1000", "currency": "usd"},
            auth=(DEV_STRIPE_API_KEY, ""),
            trust_env=False,
        )
        assert created.status_code == 200, created.text
        assert created.json()["status"] == "requires_payment_method"
        assert (services.logs_dir / "stripe.log").exists()
        port = int(status.url.rsplit(":", 1)[1])
        pids = [p.popen.pid for p in services.processes]
    assert gone(pids) == []
    assert not port_open("127.0.0.1", port)


def test_children_read_the_embedded_stripe_as_their_api_base(
    tmp_path: Path, configured: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalServices(settings(configured), state_dir=tmp_path / "state") as services:
        for key, value in services.env.items():
            monkeypatch.setenv(key, value)
        assert Settings().stripe_api_base == services.status("stripe").url
        # Without an API address there is nowhere to send webhooks, and the banner says so.
        assert "no webhooks" in services.status("stripe").detail


@pytest.mark.parametrize("production", [False, True], ids=["a real key", "production"])
def test_a_real_stripe_is_reported_configured_and_nothing_is_started_or_called(
    tmp_path: Path, configured: dict[str, object], stripe_lookups: list[str], production: bool
) -> None:
    if production:
        # model_copy skips validation: production refuses the placeholder key on its own, and
        # even past that check the launcher must never embed a Stripe there.
        config = settings(configured).model_copy(update={"env": "production"})
    else:
        config = settings(configured, stripe_api_key=REAL_LOOKING_KEY)
    with LocalServices(config, state_dir=tmp_path / "state", api_url="http://127.0.0.1:1") as s:
        status = s.status("stripe")
        assert status.mode is Mode.CONFIGURED
        assert status.url == "https://api.stripe.com"
        assert s.env["TULIFO_STRIPE_API_BASE"] == ""
        assert s.processes == []
    assert stripe_lookups == []


def test_a_configured_api_base_is_used_as_it_is_and_said_loudly_when_silent(
    tmp_path: Path, configured: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    config = settings(configured, stripe_api_base=base)
    with LocalServices(config, state_dir=tmp_path / "state") as services:
        assert services.status("stripe").mode is Mode.CONFIGURED
        assert services.env["TULIFO_STRIPE_API_BASE"] == base
        assert services.processes == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("stripe" in m and "does not answer" in m for m in warnings), warnings


# --- a payment end to end, through the launcher's services ------------------------------------


def api_env(services: LocalServices, port: int) -> dict[str, str]:
    return clean_env(
        **services.env,
        TULIFO_ENV="test",
        TULIFO_LOG_JSON="false",
        TULIFO_API_PORT=str(port),
        TULIFO_BCRYPT_ROUNDS="4",
        # Every registration comes from 127.0.0.1 into the shared test Redis.
        TULIFO_REGISTER_MAX_PER_IP="1000000",
        TULIFO_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:6]}",
    )


async def wait_for_health(api: httpx.AsyncClient, alive: Any) -> None:
    async def healthy() -> bool:
        assert alive(), "tulifo api exited during startup"
        try:
            return (await api.get("/health")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(healthy, timeout=STARTUP_DEADLINE_S, what="tulifo api to answer /health")


async def pay_at_localstripe(stripe_base: str, intent_id: str) -> dict[str, Any]:
    """What Stripe.js does in the browser, as the README's curl lines do it: attach a test card,
    then confirm."""
    auth = (DEV_STRIPE_API_KEY, "")
    async with httpx.AsyncClient(base_url=stripe_base, auth=auth, trust_env=False) as stripe:
        attached = await stripe.post(
            f"/v1/payment_intents/{intent_id}", data={"payment_method": "pm_card_visa"}
        )
        assert attached.status_code == 200, attached.text
        confirmed = await stripe.post(f"/v1/payment_intents/{intent_id}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        intent: dict[str, Any] = confirmed.json()
        return intent


async def pay_for_a_booking(api_url: str, stripe_base: str, alive: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api_url, trust_env=False, timeout=10) as api:
        await wait_for_health(api, alive)
        gig = await book_gig(api)
        intent = await create_intent(api, gig)
        paid = await pay_at_localstripe(stripe_base, intent["paymentIntentId"])
        assert paid["status"] == "succeeded"

        async def funded() -> dict[str, Any] | None:
            response = await api.get(f"/api/escrow/{gig.escrow_id}", headers=gig.client.headers)
            assert response.status_code == 200, response.text
            escrow: dict[str, Any] = response.json()["data"]
            return escrow if escrow["status"] == "funded" else None

        escrow = await wait_until(
            funded, timeout=WEBHOOK_DEADLINE_S, what="localstripe's webhook to fund the escrow"
        )
        assert escrow["paymentStatus"] == "succeeded"
        return {"intent": intent, "escrow": escrow}


async def stripe_events_of(database_url: str, payment_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT id, type, outcome FROM stripe_events WHERE payment_id = $1",
                uuid.UUID(payment_id),
            )
        )
    finally:
        await conn.close()


def test_a_payment_confirmed_at_localstripe_funds_the_escrow_through_its_signed_webhook(
    tmp_path: Path, configured: dict[str, object], run_tulifo: StartTulifo
) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    config = settings(configured)
    with LocalServices(config, state_dir=tmp_path / "state", api_url=api_url) as services:
        stripe_base = services.env["TULIFO_STRIPE_API_BASE"]
        api = run_tulifo(["api", "--port", str(port)], api_env(services, port))
        outcome = asyncio.run(
            pay_for_a_booking(api_url, stripe_base, lambda: api.popen.poll() is None)
        )
        # The event the API applied is localstripe's own (its id, its signature), not one a
        # test made up.
        events = asyncio.run(stripe_events_of(config.database_url, outcome["intent"]["paymentId"]))
        assert [(e["type"], e["outcome"]) for e in events] == [
            ("payment_intent.succeeded", "applied")
        ]
        assert events[0]["id"].startswith("evt_")
        api.signal(signal.SIGTERM)
        api.wait()
