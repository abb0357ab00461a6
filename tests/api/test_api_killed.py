"""An API process SIGKILLed in the middle of a stream of profile writes: every write it answered is
stored with its event, nothing is stored without its event, and no event is there twice. The
outbox is the record: each user's events, in sequence, end at the profile PostgreSQL holds."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx

from infrastructure.processes import ManagedProcess, free_port
from infrastructure.settings import Settings
from tests.api.conftest import PASSWORD, outbox_events, unique_email
from tests.api.test_openapi_contract import API, settings_env
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]
USERS = 6
# Two writers per user, so the compare-and-set writes race on the same rows.
WRITERS_PER_USER = 2
KILL_AFTER = 150


async def _register(http: httpx.AsyncClient) -> tuple[uuid.UUID, str]:
    response = await http.post(
        "/api/auth/register",
        json={"email": unique_email("w"), "password": PASSWORD, "name": "K W", "role": "worker"},
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    return uuid.UUID(data["user"]["id"]), data["accessToken"]


async def test_an_api_killed_mid_writes_keeps_every_answered_write_and_its_event_once(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    server = ManagedProcess.spawn(
        "api",
        [*API, str(port)],
        env=settings_env(settings) | {"TULIFO_LOGIN_MAX_PER_IP": "100000"},
        cwd=REPO,
        log_path=tmp_path / "api.log",
    )
    answered: dict[uuid.UUID, list[str]] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def up() -> bool:
                assert server.alive, "the API exited before it answered"
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(up, timeout=60, what="the API")
            users = [await _register(http) for _ in range(USERS)]
            ok = 0

            async def write(user_id: uuid.UUID, token: str, writer: int) -> None:
                nonlocal ok
                for n in range(10_000):
                    bio = f"{user_id} w{writer} n{n}"
                    try:
                        response = await http.patch(
                            "/api/users/me/profile",
                            json={"bio": bio},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    except httpx.TransportError:
                        return  # the server is gone
                    assert response.status_code == 200, response.text
                    answered.setdefault(user_id, []).append(bio)
                    ok += 1
                    if ok == KILL_AFTER:
                        server.kill()

            await asyncio.gather(
                *(
                    write(user_id, token, writer)
                    for user_id, token in users
                    for writer in range(WRITERS_PER_USER)
                )
            )
    finally:
        server.kill()
        server.stop()  # closes its log

    assert sum(len(bios) for bios in answered.values()) >= KILL_AFTER
    for user_id, _ in users:
        events = await outbox_events(db, event_type="profile.updated", key=user_id)
        written = [event["data"]["profile"]["bio"] for event in events]
        sequences = [event["sequence"] for event in events]
        assert sequences == list(range(sequences[0], sequences[0] + len(events)))
        # Each bio is new, so each stored write is exactly one event: none twice...
        assert len(set(written)) == len(written)
        # ...none answered and lost (a write may have been stored as the answer was cut)...
        assert set(answered.get(user_id, [])) <= set(written)
        # ...and the events end at what PostgreSQL holds.
        stored = await db.fetchval("SELECT bio FROM user_profiles WHERE user_id = $1", user_id)
        assert stored == written[-1]
