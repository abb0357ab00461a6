"""The dashboard page in a real browser: Debian's headless Chromium, driven by playwright (its
own browser downloads are never used: `executable_path` is the system's). A worker signs in on
the page; the client releases the escrow through the API; the page's values change as the
release comes down the pipeline (outbox relay → Kafka → live agent → Redis → the stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import BrowserContext, async_playwright, expect

from api.money import platform_fee
from infrastructure.settings import Settings
from tests.api.gigs import Gig, gig_in_status, release
from tests.browser.live_stack import (
    PIPELINE_DEADLINE_S,
    LiveApi,
    live_pipeline,
    pipeline_settings,
    serve_api,
)

CHROMIUM = Path("/usr/bin/chromium")
# The machine notes' flags: nothing reaches out (no updates, sync or QUIC probes), no GPU, and
# no sandbox (CI runs as root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A page step (load, sign-in) on a loaded 2-vCPU machine.
PAGE_DEADLINE_MS = 30_000


@pytest.fixture(scope="module")
async def live(settings: Settings) -> AsyncIterator[LiveApi]:
    async with serve_api(settings) as api:
        yield api


@pytest.fixture(scope="module")
async def pipeline(
    settings: Settings, kafka: str, live: LiveApi, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[None]:
    directory = tmp_path_factory.mktemp("browser-pipeline")
    async with live_pipeline(pipeline_settings(settings, kafka, directory), directory):
        yield


@pytest.fixture
async def http(live: LiveApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def chromium() -> Path:
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install -y chromium"
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile per test
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield context
        finally:
            await context.close()


async def sign_in(context: BrowserContext, live: LiveApi, email: str, password: str) -> Any:
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    await page.goto(f"{live.url}/dashboard")
    await page.fill("#email", email)
    await page.fill("#password", password)
    await page.click("#login-button")
    await expect(page.locator("#status")).to_have_attribute(
        "data-state", "live", timeout=PAGE_DEADLINE_MS
    )
    page.problems = problems
    return page


async def test_a_release_through_the_api_changes_the_workers_page(
    live: LiveApi,
    pipeline: None,
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    browser: BrowserContext,
) -> None:
    gig: Gig = await gig_in_status(http, db, "delivered")
    page = await sign_in(browser, live, gig.worker.email, gig.worker.password)

    booking = page.locator(f'[data-escrow-id="{gig.escrow_id}"] [data-value="escrow-status"]')
    await expect(booking).to_have_text("funded", timeout=PAGE_DEADLINE_MS)
    held = page.locator(f'[data-currency="{gig.currency}"] [data-value="held-cents"]')
    await expect(held).to_have_attribute("data-cents", str(gig.amount_cents))
    waiting = page.locator(
        f'[data-currency="{gig.currency}"] [data-value="pending-transfer-cents"]'
    )
    await expect(waiting).to_have_attribute("data-cents", "0")

    await release(http, gig)

    # The event itself flips the booking; the earnings follow from the snapshot it reloads.
    deadline_ms = PIPELINE_DEADLINE_S * 1000
    await expect(booking).to_have_text("released", timeout=deadline_ms)
    net = platform_fee(gig.amount_cents).net_cents
    await expect(waiting).to_have_attribute("data-cents", str(net), timeout=PAGE_DEADLINE_MS)
    await expect(held).to_have_attribute("data-cents", "0")
    await expect(page.locator('#feed [data-type="escrow.released"]')).to_have_count(1)
    assert page.problems == []
