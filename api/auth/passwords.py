"""bcrypt hashing: off the event loop, at the lowest CPU priority, behind a bounded queue.

bcrypt reads at most 72 bytes of a password (bcrypt 5 raises beyond that). We refuse longer
passwords at registration (`schemas.Password`) instead of pre-hashing them: hashes stay plain
bcrypt, portable to any other bcrypt implementation, and the rule is visible to the user.

A login storm asks for more bcrypt than the machine has: at cost 12 one hash holds a core for
~0.2-0.25 s, so each thread checks 4-5 passwords a second. DESIGN.md §6 wants every other
endpoint unchanged meanwhile, and the logins themselves should get a quick answer, not a
timeout. Three rules (measured in bench/README.md, `api-write-storm`):

- Threads: one fewer than the cores, so the event loop always has a core to run on, shared
  among the API processes of the machine (`tulifo api --workers N`).
- Priority: the hashing threads are SCHED_IDLE on Linux. bcrypt releases the GIL, so a hash is
  a thread of its own competing for the CPU, and at normal priority it kept its core against
  the event loop, PostgreSQL and whatever else shares the machine. An idle-class thread is
  preempted at once by any other thread that wakes, and its core counts as free when the
  kernel places one: hashing gets only CPU nothing else wants, which on a quiet machine is
  still a whole core. With a neighbour using half a core, the writes' p99 during a storm
  fell from 21-72 ms (bounded queue, normal priority) to 12-20 ms.
- Queue: at most `queue_per_thread` hashes wait per thread (~2 s of waiting at cost 12 with
  the default 8). Past that a login or registration is refused at once with 503 and
  Retry-After, before it is counted against the email or address: it was never checked, so
  the refusal must not use up its attempts. Unbounded, the queue only grew (20 logins/s
  offered, ~5 checked): 86% of the logins timed out at the client while the server went on
  hashing for callers long gone, and a restart waited on them. Bounded, twice as many logins
  got in (48-68 of 240 instead of 26-35), and the rest heard "retry in 2 s" at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import bcrypt

from api.errors import ServiceUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# bcrypt's own input limit, in bytes of UTF-8.
BCRYPT_MAX_BYTES = 72

# How many API processes share this machine's cores: `tulifo api --workers N` tells each of its
# processes (api/server.py); set it by hand when a supervisor starts several `tulifo api`.
PROCESSES_ENV = "TULIFO_API_PROCESSES"


def threads_per_process(cpus: int | None, processes_text: str | None) -> int:
    """One fewer than the cores, split among the API processes: N processes then hash on the
    cores one would, and each bounds its queue and counts Retry-After by its own share."""
    try:
        processes = max(1, int(processes_text or 1))
    except ValueError:
        problem = f"{PROCESSES_ENV} must be a whole number, not {processes_text!r}"
        raise ValueError(problem) from None
    return max(1, ((cpus or 2) - 1) // processes)


WORKERS = threads_per_process(os.cpu_count(), os.environ.get(PROCESSES_ENV))
_executor: ThreadPoolExecutor | None = None
_dummy_hashes: dict[int, bytes] = {}


@dataclass
class _Queue:
    """What the bounded queue needs to know. Touched from the event loop only, except
    `last_hash_s`, a float the hashing threads replace whole."""

    # Hashes admitted by `hashing_slot` and not finished: running on a thread or waiting.
    admitted: int = 0
    # How long the latest hash took on its thread, waiting for the CPU included: the unit of
    # Retry-After. A cost-12 hash here until one has been measured.
    last_hash_s: float = 0.25


_queue = _Queue()


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=WORKERS, thread_name_prefix="bcrypt", initializer=_yield_the_cpu
        )
    return _executor


def _yield_the_cpu() -> None:
    """Thread initializer: put this hashing thread, and only it, in the idle scheduling class."""
    # On Linux a thread is a scheduling entity of its own: sched_setscheduler(2) given a thread
    # id changes that thread alone. The policy needs no privilege to take.
    if sys.platform != "linux":
        return
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        log.warning("bcrypt threads run at normal priority", exc_info=True)


@contextmanager
def hashing_slot(*, queue_per_thread: int) -> Iterator[None]:
    """A place in the bcrypt queue for the hash or check made inside the block; 503 with
    Retry-After when `queue_per_thread` hashes per thread are already waiting."""
    if _queue.admitted >= WORKERS * (1 + queue_per_thread):
        # 503, not 429: the server is short of capacity, the caller did nothing wrong. Retry
        # after the time the hashes ahead need to clear.
        retry_after = max(1, math.ceil(_queue.admitted / WORKERS * _queue.last_hash_s))
        raise ServiceUnavailable(
            f"too many sign-ins and sign-ups at once; try again in {retry_after} seconds",
            headers={"Retry-After": str(retry_after)},
            details={"retryAfter": retry_after},
        )
    _queue.admitted += 1
    try:
        yield
    finally:
        _queue.admitted -= 1


def fits_bcrypt(password: str) -> bool:
    """Whether bcrypt would read the whole password."""
    return len(password.encode()) <= BCRYPT_MAX_BYTES


def _hash(password: bytes, rounds: int) -> bytes:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=rounds))


def _timed(work: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        return work()
    finally:
        _queue.last_hash_s = time.perf_counter() - started


async def _on_hashing_thread(work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_pool(), partial(_timed, work))


async def hash_password(password: str, *, rounds: int) -> str:
    """A bcrypt hash of `password` at cost `rounds`, computed off the event loop."""
    if not fits_bcrypt(password):
        raise ValueError(f"password longer than {BCRYPT_MAX_BYTES} bytes reached hashing")
    hashed = await _on_hashing_thread(partial(_hash, password.encode(), rounds))
    return hashed.decode()


async def verify_password(password: str, password_hash: str | None, *, rounds: int) -> bool:
    """Check `password` against `password_hash`, or against a dummy hash when there is none."""
    # The dummy has the same cost, so "no such email" takes as long as "wrong password".
    target = password_hash.encode() if password_hash is not None else await _dummy_hash(rounds)
    # A password bcrypt would truncate can never be one we stored; check the dummy so the
    # timing still matches, and refuse.
    candidate = password.encode() if fits_bcrypt(password) else b"x"
    matched = await _on_hashing_thread(partial(bcrypt.checkpw, candidate, target))
    return matched and password_hash is not None and fits_bcrypt(password)


async def _dummy_hash(rounds: int) -> bytes:
    # Made once per cost, on first use: a constant hash in the source would have a fixed cost.
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = await _on_hashing_thread(
            partial(_hash, os.urandom(16).hex().encode(), rounds)
        )
    return _dummy_hashes[rounds]
