"""The floor `api-write` is compared with: the smallest FastAPI + asyncpg app doing the same work.

`PATCH /api/users/me/profile` with `{"bio": ...}`: verify the caller's HS256 access token with
PyJWT (the same secret, the same algorithm pin), then one transaction of the UPDATE … RETURNING
and the outbox INSERT our write path runs (the same statement, bridges/outbox.py), and a small
JSON envelope back. No middleware, no per-request dependencies beyond the body model, no
session check, no metrics, no access log: what any FastAPI service doing this write would pay.
Served the way ours is (bench/api_server.py): uvicorn, uvloop, httptools, one worker.

Run as `python -m bench.peers.api_floor PORT` with the TULIFO_* environment of the bench's
server (database and JWT secret); it reads nothing else of ours.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from bridges.outbox import APPEND_SQL
from infrastructure.settings import get_settings
from streams.topics import stream_of

STREAM = stream_of("profile.updated")


class ProfilePatch(BaseModel):
    bio: str


def create_floor_app() -> FastAPI:
    settings = get_settings()
    secret = settings.jwt_access_secret.get_secret_value()
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal pool

        async def init(conn: asyncpg.Connection) -> None:
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )

        pool = await asyncpg.create_pool(settings.database_url, min_size=2, max_size=20, init=init)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.patch("/api/users/me/profile")
    async def patch_profile(
        body: ProfilePatch, authorization: str = Header(default="")
    ) -> dict[str, Any]:
        scheme, _, token = authorization.partition(" ")
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"]) if scheme == "Bearer" else {}
        except jwt.InvalidTokenError as exc:
            raise HTTPException(401, "invalid token") from exc
        if claims.get("type") != "access":
            raise HTTPException(401, "invalid token")
        user_id = uuid.UUID(claims["sub"])
        now = datetime.now(UTC)
        event_id = uuid.uuid4()
        payload = {
            "event_id": str(event_id),
            "type": "profile.updated",
            "aggregate_id": str(user_id),
            "occurred_at": now.isoformat(),
            "data": {"user_id": str(user_id), "changed": ["bio"], "profile": {"bio": body.bio}},
        }
        assert pool is not None
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE user_profiles SET bio = $2, updated_at = now() WHERE user_id = $1"
                " RETURNING bio, updated_at",
                user_id,
                body.bio,
            )
            if row is None:
                raise HTTPException(404, "profile not found")
            await conn.fetchval(
                APPEND_SQL, event_id, "profile.updated", STREAM, str(user_id), payload, now
            )
        return {
            "success": True,
            "data": {"userId": str(user_id), "bio": row["bio"], "updatedAt": row["updated_at"]},
        }

    return app


def main() -> None:
    uvicorn.run(
        create_floor_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
