"""Does the configured server answer? Each check is bounded by a short timeout.

A probe answers one of three things: the server answers and serves us (use it), nothing answers
(start an embedded one, or switch the feature off), or something answers but refuses us — wrong
password, not that protocol — which raises `Refused`: starting a stand-in would hide the mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import httpx

from infrastructure.processes import port_open

# A server on this machine accepts a TCP connection in well under a millisecond and a closed port
# is refused at once; one second only matters for a remote host that drops packets.
PROBE_TIMEOUT_S = 1.0


class LocalServiceError(RuntimeError):
    """A local service could not be found or started; the message says what to do."""


class Refused(LocalServiceError):
    """Something answers at the configured address but will not serve us."""


@dataclass(frozen=True)
class Probe:
    answers: bool
    reason: str = ""
    created_database: bool = False


def redact(url: str) -> str:
    """`url` with its password replaced by ***, for logs and banners."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _addresses(url: str, default_port: int) -> list[tuple[str, int]]:
    """host:port pairs of a URL or a comma-separated bootstrap list."""
    netloc = urlsplit(url).netloc if "://" in url else url
    netloc = netloc.rsplit("@", 1)[-1].split("/", 1)[0]
    pairs = []
    for item in netloc.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not port.isdigit():
            host, port = item.strip(), str(default_port)
        pairs.append((host.strip("[]") or "127.0.0.1", int(port)))
    return pairs


def any_port_open(url: str, default_port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    return any(port_open(host, port, timeout) for host, port in _addresses(url, default_port))


# --- PostgreSQL -------------------------------------------------------------------------------


def database_name(dsn: str) -> str:
    name = unquote(urlsplit(dsn).path.lstrip("/"))
    if not name:
        raise LocalServiceError(f"no database name in {redact(dsn)}")
    return name


def with_database(dsn: str, name: str) -> str:
    """The same server and credentials, another database (query parameters kept)."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


async def create_database(dsn: str) -> bool:
    """Create the database named in `dsn` through the server's `postgres` database.

    Returns False if it already existed.
    """
    name = database_name(dsn)
    admin = await asyncpg.connect(with_database(dsn, "postgres"), timeout=10)
    try:
        quoted = name.replace('"', '""')
        await admin.execute(f'CREATE DATABASE "{quoted}"')
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    return True


async def _probe_postgres(dsn: str, timeout: float) -> Probe:
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except asyncpg.InvalidCatalogNameError:
        return Probe(True, created_database=await create_database(dsn))
    except (OSError, TimeoutError) as exc:
        return Probe(False, f"{type(exc).__name__}: {exc}")
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Refused(
            f"PostgreSQL at {redact(dsn)} answers but refuses us ({exc}); "
            "fix TULIFO_DATABASE_URL or stop that server to get an embedded one"
        ) from exc
    await conn.close()
    return Probe(True)


def probe_postgres(dsn: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """Connect for real (a port answering is not a database); create the database if missing."""
    return asyncio.run(_probe_postgres(dsn, timeout))


async def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` if the server lacks it; True if it was created."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        return await create_database(dsn)
    await conn.close()
    return False


# --- Redis, MongoDB, Kafka, SMTP, RabbitMQ, Elasticsearch ------------------------------------


def probe_redis(url: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        raise Refused(
            f"Redis at {redact(url)} answers but refuses us ({exc}); fix TULIFO_REDIS_URL"
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return Probe(False, str(exc))
    finally:
        client.close()
    return Probe(True)


def probe_mongo(url: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    import pymongo
    import pymongo.errors

    if url.startswith("mongodb://") and not any_port_open(url, 27017, timeout):
        return Probe(False, "nothing listens there")
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=int(timeout * 1000), connectTimeoutMS=int(timeout * 1000)
    )
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        raise Refused(
            f"MongoDB at {redact(url)} is listening but does not answer a ping ({exc}); "
            "fix TULIFO_MONGO_URL"
        ) from exc
    finally:
        client.close()
    return Probe(True)


def probe_kafka(bootstrap: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    if any_port_open(bootstrap, 9092, timeout):
        return Probe(True)
    return Probe(False, "no bootstrap server accepts connections")


def probe_smtp(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    if not port_open(host, port, timeout):
        return Probe(False, "nothing listens there")
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            code, _ = smtp.noop()
    except (OSError, smtplib.SMTPException) as exc:
        raise Refused(
            f"{host}:{port} is listening but does not speak SMTP ({exc}); "
            "fix TULIFO_SMTP_HOST / TULIFO_SMTP_PORT"
        ) from exc
    if code != 250:
        raise Refused(f"SMTP server at {host}:{port} answered NOOP with {code}")
    return Probe(True)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """aiormq logs a failed connection at ERROR and aio-pika some at WARNING; the caller reports
    once."""
    logger = logging.getLogger(logger_name)
    was = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(was)


async def _amqp_handshake(url: str, timeout: float) -> None:
    import aio_pika

    # The handshake itself (connection.start/tune/open) and the close, each bounded.
    connection = await aio_pika.connect(url, timeout=timeout * 3)
    await asyncio.wait_for(connection.close(), timeout * 3)


def probe_rabbitmq(url: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """An AMQP handshake, so wrong credentials count as "does not answer" with the reason."""
    if not any_port_open(url, 5672, timeout):
        return Probe(False, "nothing listens there")
    import aiormq.exceptions

    try:
        with _quiet("aiormq"), _quiet("aio_pika"):
            asyncio.run(_amqp_handshake(url, timeout))
    except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
        return Probe(False, f"AMQP handshake failed: {type(exc).__name__} {exc}".strip())
    return Probe(True)


def probe_stripe(api_base: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    """Only whether something listens: a request would need the key, and a configured Stripe
    is used as it is whatever it answers."""
    if any_port_open(api_base, 443 if api_base.startswith("https") else 80, timeout):
        return Probe(True)
    return Probe(False, "nothing listens there")


def probe_elasticsearch(url: str, timeout: float = PROBE_TIMEOUT_S) -> Probe:
    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return Probe(False, f"{type(exc).__name__}: {exc}")
    if response.status_code in (401, 403):
        # A real cluster that will not let us in: replacing it with an empty stand-in would
        # hide the wrong credentials behind a search that finds nothing.
        raise Refused(
            f"Elasticsearch at {redact(url)} answers HTTP {response.status_code}; "
            "fix the credentials in TULIFO_ELASTICSEARCH_URL"
        )
    if response.status_code != 200:
        return Probe(False, f"answered HTTP {response.status_code}")
    return Probe(True)
