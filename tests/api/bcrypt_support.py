"""bcrypt checks held on their thread until the test lets them go: a way to fill the hashing
queue on purpose, with no sleeps and no timing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import bcrypt
import pytest

# Only a bound, so a check that never starts fails the test instead of hanging the run.
START_TIMEOUT_S = 30.0


@dataclass
class StalledChecks:
    started: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    release: threading.Event = field(default_factory=threading.Event)

    async def wait_until_running(self, count: int) -> None:
        """Return once `count` checks are on a bcrypt thread, held there."""
        for _ in range(count):
            started = await asyncio.to_thread(self.started.acquire, timeout=START_TIMEOUT_S)
            assert started, "a password check never reached a bcrypt thread"


@contextmanager
def stalled_bcrypt_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[StalledChecks]:
    """Every `bcrypt.checkpw` inside the block waits for `release`, which the block's end sets
    whatever happens, so no bcrypt thread is left blocked for later tests."""
    stalled = StalledChecks()
    real = bcrypt.checkpw

    def held(password: bytes, hashed: bytes) -> bool:
        stalled.started.release()
        stalled.release.wait()
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", held)
    try:
        yield stalled
    finally:
        stalled.release.set()
        monkeypatch.setattr(bcrypt, "checkpw", real)
