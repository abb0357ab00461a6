"""PostgreSQL databases of a test's (or a run's) own on the machine's server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from infrastructure.migrations import migrate

PG_ADMIN_URL = os.environ.get(
    "TULIFO_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@asynccontextmanager
async def fresh_database(prefix: str = "tulifo_test") -> AsyncIterator[str]:
    """A migrated database, dropped afterwards: nothing of other tests' (outbox rows, advisory
    locks, which are per database) is visible in it."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        await migrate(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
