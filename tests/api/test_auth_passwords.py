"""bcrypt: the cost, the thread it runs on, and the 72-byte edge."""

from __future__ import annotations

import threading

import bcrypt
import pytest

from api.auth import passwords
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
