"""bcrypt hashing, run on a small thread pool so a login storm never blocks the event loop.

bcrypt reads at most 72 bytes of a password (bcrypt 5 raises beyond that). We refuse longer
passwords at registration (`schemas.Password`) instead of pre-hashing them: hashes stay plain
bcrypt, portable to any other bcrypt implementation, and the rule is visible to the user.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import bcrypt

# bcrypt's own input limit, in bytes of UTF-8.
BCRYPT_MAX_BYTES = 72

# bcrypt releases the GIL, so each hash takes a whole core for ~250 ms at cost 12. Leaving one
# core to the event loop keeps non-password endpoints fast during a login storm (DESIGN.md §6);
# extra logins queue here instead of competing with request handling.
_WORKERS = max(1, (os.cpu_count() or 2) - 1)
_executor: ThreadPoolExecutor | None = None
_dummy_hashes: dict[int, bytes] = {}


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="bcrypt")
    return _executor


def fits_bcrypt(password: str) -> bool:
    """Whether bcrypt would read the whole password."""
    return len(password.encode()) <= BCRYPT_MAX_BYTES


def _hash(password: bytes, rounds: int) -> bytes:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=rounds))


async def hash_password(password: str, *, rounds: int) -> str:
    """A bcrypt hash of `password` at cost `rounds`, computed off the event loop."""
    if not fits_bcrypt(password):
        raise ValueError(f"password longer than {BCRYPT_MAX_BYTES} bytes reached hashing")
    loop = asyncio.get_running_loop()
    hashed = await loop.run_in_executor(_pool(), partial(_hash, password.encode(), rounds))
    return hashed.decode()


async def verify_password(password: str, password_hash: str | None, *, rounds: int) -> bool:
    """Check `password` against `password_hash`, or against a dummy hash when there is none."""
    # The dummy has the same cost, so "no such email" takes as long as "wrong password".
    target = password_hash.encode() if password_hash is not None else await _dummy_hash(rounds)
    # A password bcrypt would truncate can never be one we stored; check the dummy so the
    # timing still matches, and refuse.
    candidate = password.encode() if fits_bcrypt(password) else b"x"
    loop = asyncio.get_running_loop()
    matched = await loop.run_in_executor(_pool(), partial(bcrypt.checkpw, candidate, target))
    return matched and password_hash is not None and fits_bcrypt(password)


async def _dummy_hash(rounds: int) -> bytes:
    # Made once per cost, on first use: a constant hash in the source would have a fixed cost.
    if rounds not in _dummy_hashes:
        loop = asyncio.get_running_loop()
        _dummy_hashes[rounds] = await loop.run_in_executor(
            _pool(), partial(_hash, os.urandom(16).hex().encode(), rounds)
        )
    return _dummy_hashes[rounds]
