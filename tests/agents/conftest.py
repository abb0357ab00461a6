from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from infrastructure.mongo import MongoDatabase
from tests.tables.support import scratch_database


@pytest.fixture
async def mongo_db(mongo_url: str) -> AsyncIterator[MongoDatabase]:
    async with scratch_database(mongo_url) as db:
        yield db
