"""A MongoDB database of one test's own on the session's SecantusDB."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from infrastructure.mongo import MongoDatabase, create_mongo_client, mongo_database
from infrastructure.settings import Settings


@asynccontextmanager
async def scratch_database(mongo_url: str) -> AsyncIterator[MongoDatabase]:
    settings = Settings(mongo_url=mongo_url, mongo_database=f"t_{uuid.uuid4().hex[:10]}")
    client = create_mongo_client(settings)
    try:
        yield mongo_database(client, settings)
    finally:
        await client.drop_database(settings.mongo_database)
        client.close()
