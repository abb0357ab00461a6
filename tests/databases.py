"""PostgreSQL databases of a test's (or a run's) own on the machine's server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from infrastructure.migrations import scratch_database

PG_ADMIN_URL = os.environ.get(
    "TULIFO_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@asynccontextmanager
async def fresh_database(prefix: str = "tulifo_test") -> AsyncIterator[str]:
    """A migrated database, dropped afterwards: nothing of other tests' (outbox rows, advisory
    locks, which are per database) is visible in it."""
    async with scratch_database(PG_ADMIN_URL, f"{prefix}_{uuid.uuid4().hex[:10]}") as url:
        yield url
