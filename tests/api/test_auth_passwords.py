"""bcrypt: the cost, the thread it runs on and its priority, the bounded queue, and the
72-byte edge."""

from __future__ import annotations

import os
import sys
import threading
from contextlib import ExitStack

import bcrypt
import pytest

from api.auth import passwords
from api.errors import ServiceUnavailable
from infrastructure.settings import Settings


async def test_hashing_runs_off_the_event_loop_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real = bcrypt.hashpw

    def recording(password: bytes, salt: bytes) -> bytes:
        threads.append(threading.get_ident())
        return real(password, salt)

    monkeypatch.setattr(bcrypt, "hashpw", recording)
    await passwords.hash_password("a fine password", rounds=4)
    assert threads
    assert threading.get_ident() not in threads


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread scheduling classes are Linux's")
async def test_hashing_threads_yield_the_cpu_while_the_event_loop_keeps_its_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policies: list[int] = []
    real = bcrypt.hashpw

    def recording(password: bytes, salt: bytes) -> bytes:
        policies.append(os.sched_getscheduler(threading.get_native_id()))
        return real(password, salt)

    monkeypatch.setattr(bcrypt, "hashpw", recording)
    loop_policy = os.sched_getscheduler(0)

    await passwords.hash_password("a fine password", rounds=4)

    assert policies == [os.SCHED_IDLE]
    assert os.sched_getscheduler(0) == loop_policy != os.SCHED_IDLE


def test_the_queue_refuses_past_its_bound_with_retry_after_and_frees_its_places() -> None:
    with ExitStack() as held:
        # One running and one waiting per thread.
        for _ in range(2 * passwords.WORKERS):
            held.enter_context(passwords.hashing_slot(queue_per_thread=1))
        with (
            pytest.raises(ServiceUnavailable) as refused,
            passwords.hashing_slot(queue_per_thread=1),
        ):
            pass
    assert refused.value.status_code == 503
    retry_after = int(refused.value.headers["Retry-After"])
    assert retry_after >= 1
    assert refused.value.details == {"retryAfter": retry_after}
    # Every place was given back: even a queue of none admits a hash again.
    with passwords.hashing_slot(queue_per_thread=0):
        pass


async def test_the_default_cost_is_12_and_the_hash_says_so() -> None:
    # Paid once here; every other test runs at cost 4.
    rounds = Settings().bcrypt_rounds
    assert rounds == 12
    hashed = await passwords.hash_password("a fine password", rounds=rounds)
    assert hashed.startswith("$2b$12$")
    assert await passwords.verify_password("a fine password", hashed, rounds=rounds)


async def test_a_password_only_matching_in_its_first_72_bytes_never_verifies() -> None:
    stored = await passwords.hash_password("a" * 72, rounds=4)
    assert await passwords.verify_password("a" * 72, stored, rounds=4)
    assert not await passwords.verify_password("a" * 73, stored, rounds=4)


async def test_without_a_stored_hash_nothing_verifies() -> None:
    assert not await passwords.verify_password("anything at all", None, rounds=4)


async def test_hashing_refuses_what_bcrypt_would_truncate() -> None:
    with pytest.raises(ValueError, match="72 bytes"):
        await passwords.hash_password("é" * 37, rounds=4)


@pytest.mark.parametrize(
    ("cpus", "processes", "threads"),
    [(2, None, 1), (8, None, 7), (8, "1", 7), (8, "2", 3), (8, "4", 1), (2, "4", 1), (None, "", 1)],
)
def test_api_processes_share_the_machines_bcrypt_threads(
    cpus: int | None, processes: str | None, threads: int
) -> None:
    # `tulifo api --workers N` sets TULIFO_API_PROCESSES for its processes (api/server.py).
    assert passwords.threads_per_process(cpus, processes) == threads


def test_a_bad_process_count_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="TULIFO_API_PROCESSES"):
        passwords.threads_per_process(8, "two")
