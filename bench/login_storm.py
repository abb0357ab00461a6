"""The login storm of `api-write-storm`: POST /api/auth/login at a fixed offered rate, beside the
write load, against accounts whose passwords are hashed at the production cost.

A storm is many people signing in at once (after an outage, on a Monday morning, or a credential
stuffer with a botnet): many accounts, many client addresses. Each login here is a different
account, sent on a fresh connection from one of many loopback addresses (127.0.0.0/8 is all
local on Linux). The API counts logins per socket peer and never reads X-Forwarded-For
(api/auth/router.py), so the honest way to be many clients is to be many peers; the server is
not given proxy settings it would not have in production, and its limits stay the defaults.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import aiohttp

from api.auth import passwords, service
from bench.load import LoadResult
from infrastructure.database import create_pool, unit_of_work
from infrastructure.settings import Settings

# The production cost (the setting's default, not the bench server's TULIFO_BCRYPT_ROUNDS=4):
# checking a login costs whatever cost its stored hash was made with.
PRODUCTION_BCRYPT_ROUNDS: int = Settings.model_fields["bcrypt_rounds"].default
# Below the API's defaults of 20 attempts per client IP per 15 minutes, so the per-IP limiter
# never refuses a storm login just because the bench has fewer addresses than a real storm.
LOGINS_PER_ADDRESS = 10
STORM_PASSWORD = "storm-password-0123"  # noqa: S105 - throwaway accounts in a throwaway database

# (login number, email) -> HTTP status
Login = Callable[[int, str], Awaitable[int]]


@dataclass(frozen=True)
class StormPlan:
    # Four times what one bcrypt thread checks at cost 12 (~0.2 s each here): a storm, not a
    # busy hour.
    login_rate: float = 20


@dataclass
class LoginStorm:
    """The logins' own outcome: latencies of the 200s (in `load`), and every answer's status."""

    plan: StormPlan
    addresses: int
    load: LoadResult
    statuses: Counter[str] = field(default_factory=Counter)

    def split(self) -> str:
        """E.g. "200: 50, 503: 190, TimeoutError: 2"."""
        outcomes = self.statuses + Counter(
            {k: v for k, v in self.load.errors.items() if k != "unexpected status"}
        )
        return ", ".join(f"{k}: {v:,}" for k, v in sorted(outcomes.items())) or "none"


async def create_accounts(database_url: str, count: int) -> list[str]:
    """`count` workers whose password is hashed at the production cost; returns their emails.

    Made with the product's own account code (as `tulifo create-admin` does), not through
    /register: the bench server hashes at cost 4 to keep the write bench's set-up short. They
    share one hash: checking a password costs the same whatever its salt, and hashing one per
    account would add ~0.25 s of set-up per account.
    """
    password_hash = await passwords.hash_password(STORM_PASSWORD, rounds=PRODUCTION_BCRYPT_ROUNDS)
    run = uuid.uuid4().hex[:8]
    emails = [f"storm-{i}-{run}@example.com" for i in range(count)]
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with unit_of_work(pool) as conn:
            for i, email in enumerate(emails):
                await service.create_account(
                    conn,
                    user_id=uuid.uuid4(),
                    email=email,
                    password_hash=password_hash,
                    role="worker",
                    name=f"Storm Worker {i}",
                )
    finally:
        await pool.close()
    return emails


def client_addresses(count: int) -> list[str]:
    """`count` loopback addresses in a /16 picked at random: the limiter's counters (Redis)
    outlive a run by 15 minutes, and a rerun must not inherit them."""
    block = random.randint(1, 254)
    return [f"127.{block}.{k // 250}.{k % 250 + 1}" for k in range(count)]


def addresses_for(logins: int) -> int:
    return max(1, math.ceil(logins / LOGINS_PER_ADDRESS))


@asynccontextmanager
async def login_client(
    base_url: str, addresses: list[str], *, timeout_s: float, statuses: Counter[str]
) -> AsyncIterator[Login]:
    """A login function sending login i from `addresses[i % len(addresses)]`, each on a new
    connection (a storm is many clients, not a few keep-alive ones); counts every status."""
    async with AsyncExitStack() as stack:
        sessions = []
        for address in addresses:
            connector = aiohttp.TCPConnector(local_addr=(address, 0), force_close=True)
            session = aiohttp.ClientSession(
                base_url=base_url,
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            )
            sessions.append(await stack.enter_async_context(session))

        async def login(i: int, email: str) -> int:
            session = sessions[i % len(sessions)]
            body = {"email": email, "password": STORM_PASSWORD}
            async with session.post("/api/auth/login", json=body) as response:
                await response.read()
            statuses[str(response.status)] += 1
            return response.status

        yield login
