"""The MongoDB client (motor): created once per process at startup, then handed to its users."""

from __future__ import annotations

from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from infrastructure.settings import Settings

# Fail an operation after 5 s without a reachable server instead of pymongo's 30 s: the caller
# (an agent's retry loop) decides how long to keep trying, with backoff and a log line per attempt.
SERVER_SELECTION_TIMEOUT_MS = 5_000

MongoDatabase = AsyncIOMotorDatabase[dict[str, Any]]


def create_mongo_client(settings: Settings) -> AsyncIOMotorClient[dict[str, Any]]:
    """A client that connects lazily, on its first operation; datetimes come back timezone-aware."""
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        settings.mongo_url,
        tz_aware=True,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
        connectTimeoutMS=SERVER_SELECTION_TIMEOUT_MS,
        appname=settings.service_name,
    )
    return client


def mongo_database(client: AsyncIOMotorClient[dict[str, Any]], settings: Settings) -> MongoDatabase:
    """The application's database on `client`."""
    return client[settings.mongo_database]
