"""The typed per-process state the API builds at startup, and the dependencies that hand it out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
import redis.asyncio as aioredis
from elasticsearch import AsyncElasticsearch
from fastapi import Depends, Request

from infrastructure.mongo import MongoDatabase
from infrastructure.settings import Settings


@dataclass
class AppState:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    mongo: MongoDatabase
    # None when TULIFO_ELASTICSEARCH_URL is unset: search is off in this process.
    search: AsyncElasticsearch | None


# The dependencies are `async def` though they never await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency per request for an attribute read.


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.tulifo
    return state


async def get_state(request: Request) -> AppState:
    return app_state(request)


async def get_settings_dep(request: Request) -> Settings:
    return app_state(request).settings


async def get_pool(request: Request) -> asyncpg.Pool:
    return app_state(request).pool


StateDep = Annotated[AppState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
