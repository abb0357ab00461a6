"""A marketplace for the read benches (match-api, search): workers, their profiles and reviews,
and open projects, COPYed straight into the write side's tables; and the HTTP client those
benches load the API with."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import asyncpg
import bcrypt
import httpx

from bench.api_write import CONNECTIONS, REQUEST_TIMEOUT_S
from tables.matching_synthetic import filler_text, pick_skills
from tables.ratings import PRIOR_MEAN, PRIOR_WEIGHT

# (request number) -> success
Send = Callable[[int], Awaitable[bool]]


@dataclass(frozen=True)
class Marketplace:
    client_id: uuid.UUID
    worker_ids: list[uuid.UUID]
    project_ids: list[uuid.UUID]


AVAILABILITY = ("available", "available", "busy", "unavailable")
LOCATIONS = ("Berlin, Germany", "Lisbon, Portugal", "Nairobi, Kenya", "Austin, USA", "Remote")


async def seed_marketplace(
    database_url: str,
    *,
    workers: int,
    projects: int,
    client_id: uuid.UUID | None = None,
    seed: int = 7,
) -> Marketplace:
    """`workers` public workers (profiles of synthetic_corpus's shape, 70% with reviews) and
    `projects` open projects of `client_id` (a client made here when None), COPYed straight
    into the write side's tables: set-up, not measured. Nobody logs in as them: they share one
    hash of a password nobody knows."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    password_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(4)).decode()
    now = datetime.now(UTC)
    users, profiles, worker_profiles, ratings = [], [], [], []
    if client_id is None:
        client_id = _uuid(rng)
        users.append((client_id, f"client-{run}@example.com", password_hash, "client", "Bench Co"))
    worker_ids = []
    for i in range(workers):
        wid = _uuid(rng)
        worker_ids.append(wid)
        # tables/matching_synthetic.py's recipe, kept in its parts: the profile's fields.
        skills = pick_skills(rng, 3, 8)
        headline = f"{rng.choice(skills)} specialist"
        experience = [{"title": headline, "description": filler_text(rng, 8, skills)}]
        users.append((wid, f"worker-{i}-{run}@example.com", password_hash, "worker", f"W {i}"))
        bio = filler_text(rng, 30, skills)
        profiles.append((wid, bio, skills, json.dumps(experience), rng.choice(LOCATIONS)))
        worker_profiles.append(
            (wid, headline, rng.randrange(1_500, 20_000, 100), rng.choice(AVAILABILITY))
        )
        if rng.random() >= 0.3:
            # Stars 1..5: a few low reviews and mostly 5s.
            stars = [*(rng.randint(0, 4) for _ in range(4)), rng.randint(1, 12)]
            ratings.append(_rating(wid, stars, now))
    project_ids, project_rows = [], []
    for _ in range(projects):
        pid = _uuid(rng)
        project_ids.append(pid)
        skills = pick_skills(rng, 2, 5)
        title = f"Need a {rng.choice(skills)} expert for {filler_text(rng, 2, [])}"
        description = filler_text(rng, 40, skills)
        budget = rng.randrange(10_000, 1_000_000, 500)
        project_rows.append((pid, client_id, title, description, budget, "USD", skills, "open"))
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await _copy(conn, "users", users, "id email password_hash role name")
            await _copy(conn, "user_profiles", profiles, "user_id bio skills experience location")
            await _copy(
                conn,
                "worker_profiles",
                worker_profiles,
                "user_id headline hourly_rate_cents availability",
            )
            await _copy(
                conn,
                "user_ratings",
                ratings,
                "user_id role count sum stars_1 stars_2 stars_3 stars_4 stars_5 average bayesian"
                " last_sequence updated_at",
                schema="analytics",
            )
            await _copy(
                conn,
                "projects",
                project_rows,
                "id client_id title description budget_cents currency required_skills status",
            )
        # Statistics, as autovacuum would have them on a database that grew to this size.
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return Marketplace(client_id, worker_ids, project_ids)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _rating(wid: uuid.UUID, stars: list[int], now: datetime) -> tuple[object, ...]:
    """A worker's ratings row from its count of reviews per star (1..5), the Bayesian average
    as tables/ratings.py computes it."""
    count = sum(stars)
    total = sum(n * s for s, n in enumerate(stars, start=1))
    bayesian = (PRIOR_WEIGHT * PRIOR_MEAN + total) / (PRIOR_WEIGHT + count)
    places = Decimal("0.0001")
    average = (Decimal(total) / count).quantize(places)
    return (wid, "worker", count, total, *stars, average, bayesian.quantize(places), count, now)


async def _copy(
    conn: asyncpg.Connection,
    table: str,
    records: list[tuple[object, ...]],
    columns: str,
    *,
    schema: str = "public",
) -> None:
    await conn.copy_records_to_table(
        table, schema_name=schema, records=records, columns=columns.split()
    )


async def register_client(client: httpx.AsyncClient) -> tuple[str, uuid.UUID]:
    """A client registered through the API, as api-write registers its workers; (access token,
    user id)."""
    response = await client.post(
        "/api/auth/register",
        json={
            "email": f"bench-client-{uuid.uuid4().hex[:8]}@example.com",
            "password": "bench-password-0123",
            "name": "Bench Client",
            "role": "client",
        },
    )
    if response.status_code != 201:
        raise RuntimeError(f"registration failed: {response.status_code} {response.text}")
    data = response.json()["data"]
    return data["accessToken"], uuid.UUID(data["user"]["id"])


def get_session(base_url: str) -> aiohttp.ClientSession:
    """aiohttp, api-write's default client (bench/clients.py), over CONNECTIONS connections."""
    return aiohttp.ClientSession(
        base_url=base_url,
        connector=aiohttp.TCPConnector(limit=CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


def getter(
    session: aiohttp.ClientSession, path_of: Callable[[int], str], headers: dict[str, str]
) -> Send:
    """Request i: GET path_of(i), a success when answered 200 (the body read whole)."""
    gate = asyncio.Semaphore(CONNECTIONS)

    async def get(i: int) -> bool:
        async with gate, session.get(path_of(i), headers=headers) as response:
            await response.read()
            return response.status == 200

    return get
