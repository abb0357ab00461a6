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


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.tulifo
    return state


def get_settings_dep(request: Request) -> Settings:
    return get_state(request).settings


def get_pool(request: Request) -> asyncpg.Pool:
    return get_state(request).pool


def get_redis(request: Request) -> aioredis.Redis:
    return get_state(request).redis


def get_mongo(request: Request) -> MongoDatabase:
    return get_state(request).mongo


StateDep = Annotated[AppState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
MongoDep = Annotated[MongoDatabase, Depends(get_mongo)]
