from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from infrastructure.settings import Settings
from tests.databases import fresh_database


@pytest.fixture
async def outbox_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture
def relay_settings(settings: Settings, outbox_url: str, kafka: str) -> Settings:
    """The session's settings on a database and a topic prefix of this test's own."""
    return settings.model_copy(
        update={
            "database_url": outbox_url,
            "kafka_bootstrap": kafka,
            "topic_prefix": f"r{uuid.uuid4().hex[:8]}",
            "relay_poll_seconds": 0.1,
        }
    )
