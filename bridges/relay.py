"""The outbox relay: publishes committed outbox rows to Kafka, in order, then marks them published.

- One relay publishes at a time. The leader holds a PostgreSQL session advisory lock on a dedicated
  connection and runs every outbox query on that same connection, so losing the connection loses
  the lock and stops the work together. Standbys retry the lock every `relay_poll_seconds` and take
  over when the leader's session ends (a clean stop, a crash, or a TCP keepalive timeout).
- Woken by LISTEN on `tulifo_outbox` (the trigger NOTIFYs on commit), with a poll every
  `relay_poll_seconds` as a safety net.
- A batch of `relay_batch_size` rows, oldest id first, is sent and every ack awaited before one
  UPDATE marks it published; nothing is marked unless acked. A failed batch is sent again whole,
  so Kafka may hold duplicates, never gaps: consumers dedupe by event_id or sequence.
- Kafka down: the producer is dropped, the relay backs off exponentially (capped) and reconnects,
  recreating the topics first. Writes never wait for any of this: the outbox is the buffer.
- Kafka back without its data (an in-memory broker restarted): the relay's mark on the broker
  (`relay_mark_topic`) is gone, which the relay checks at connect and every MARK_CHECK_S. It then
  publishes the whole outbox again from the first row; folds skip what they already applied and
  set aside what would come out of order (agents/folding.py).

Order: rows are read by outbox id and sent to their stream's topic (streams/topics.py), packed
per partition (streams/packing.py) on the partition their aggregate id hashes to. Two
transactions may commit out of id order; a late commit is published on the next pass, after a
higher id. Events of one aggregate cannot: a writer takes its aggregate's next sequence
(bridges/outbox.py) only after the previous writer committed, so its outbox id is higher too, and
one aggregate's events reach their partition in sequence order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import Counter as Tally

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import RecordMetadata
from prometheus_client import Counter, Gauge, start_http_server

from bridges.kafka import ProducerFactory, ensure_topics
from infrastructure.logging import configure_logging
from infrastructure.settings import Settings
from streams.packing import pack_rows
from streams.topics import STREAMS, stream_topic

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "tulifo_outbox"
# Any constant works; it must differ from the migrations' lock and be the same for every relay.
RELAY_LOCK_ID = 0x7475_6F78  # "tuox"
# The first retry after a failure waits this long; each further failure doubles it up to the cap.
FIRST_BACKOFF_S = 0.2
# How often the relay checks that the broker still has its mark (a broker restarted empty).
MARK_CHECK_S = 2.0
# Server-side keepalives: a leader whose host vanished loses its session (and lock) in ~25 s.
_KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5"}

_SELECT_BATCH = """
    SELECT id, event_id::text AS event_id, event_type, stream, sequence, key,
           payload::text AS payload
      FROM outbox
     WHERE published_at IS NULL
     ORDER BY id
     LIMIT $1"""
_MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
_REWIND_OUTBOX = "UPDATE outbox SET published_at = NULL WHERE published_at IS NOT NULL"
_OLDEST_UNPUBLISHED_AGE = """
    SELECT extract(epoch FROM now() - created_at)::float8
      FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1"""

EVENTS_PUBLISHED = Counter(
    "tulifo_relay_events_published_total", "Outbox events acked by Kafka", ["event_type"]
)
PUBLISH_FAILURES = Counter(
    "tulifo_relay_publish_failures_total", "Batches that failed and will be sent again"
)
RELAY_LAG = Gauge(
    "tulifo_relay_lag_seconds", "Age of the oldest unpublished outbox row (0 when caught up)"
)
RELAY_LEADER = Gauge("tulifo_relay_leader", "1 while this process holds the relay lock")


class KafkaUnavailable(Exception):
    """The batch was not acked; nothing of it was marked published."""


class OutboxRewound(Exception):
    """Kafka lost what it had (see `connect_kafka`): the batch in hand is stale; read again."""


class OutboxRelay:
    """Publishes the outbox; `run()` until `stop()`, or drive `publish_pending()` yourself."""

    def __init__(
        self,
        settings: Settings,
        *,
        ack_timeout_s: float = 15.0,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = 30.0,
        lock_id: int = RELAY_LOCK_ID,
    ) -> None:
        self.settings = settings
        self.ack_timeout_s = ack_timeout_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.lock_id = lock_id
        # Observable state, for the metrics and for tests to wait on.
        self.is_leader = False
        self.standby = False
        self.published = 0
        self.failures = 0
        self._conn: asyncpg.Connection | None = None
        self._producer: AIOKafkaProducer | None = None
        self._producers = ProducerFactory(
            settings,
            client_id=f"{settings.service_name}-relay",
            request_timeout_ms=int(ack_timeout_s * 1000),
            # A batch is sent as fast as the previous one is acked; 256 KiB holds ~500 events.
            max_batch_size=262_144,
            linger_ms=0,
        )
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running: asyncio.Task[None] | None = None
        self._lag_measured_at = float("-inf")
        self._mark_checked_at = float("-inf")
        self._rewound = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Return once this relay leads: connected, holding the lock, listening. Standby until."""
        failures = 0
        while not self._stopping.is_set() and self._conn is None:
            try:
                conn = await asyncpg.connect(
                    self.settings.database_url, server_settings=_KEEPALIVES
                )
            except Exception as exc:
                failures += 1
                log.warning("relay cannot reach PostgreSQL: %s", exc)
                await self._pause(self._backoff(failures))
                continue
            try:
                while not self._stopping.is_set():
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_id):
                        await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                        self._conn, self.is_leader, self.standby = conn, True, False
                        RELAY_LEADER.set(1)
                        log.info("relay is the leader")
                        return
                    if not self.standby:
                        self.standby = True
                        log.info("another relay leads; standing by")
                    await self._pause(self.settings.relay_poll_seconds)
            except Exception as exc:
                failures += 1
                log.warning("relay lost PostgreSQL while standing by: %s", exc)
            finally:
                if self._conn is not conn:
                    await _close_quietly(conn)
            await self._pause(self._backoff(failures))

    async def stop(self) -> None:
        """Finish the batch in flight, release the lock, close Kafka and PostgreSQL."""
        self._stopping.set()
        self._wake.set()
        running = self._running
        if running is not None and running is not asyncio.current_task():
            await asyncio.shield(running)
            return
        await self._close()

    async def run(self) -> None:
        """Publish until `stop()`: lead or stand by, wake on NOTIFY or poll, back off on errors."""
        self._running = asyncio.current_task()
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    if self._conn is None:
                        await self.start()
                        continue
                    if self._producer is None:
                        await self.connect_kafka()  # topics exist before the first row comes
                    self._wake.clear()
                    try:
                        count = await self.publish_pending()
                    except OutboxRewound:
                        continue
                    failures = 0
                    await self._refresh_lag()
                    await self._check_mark()
                    if count < self.settings.relay_batch_size:
                        await self._pause(self.settings.relay_poll_seconds, wake=True)
                except KafkaUnavailable as exc:
                    failures += 1
                    await self._on_failure(exc, failures)
                except Exception as exc:
                    # PostgreSQL went away (or asyncpg is confused by a session killed under it,
                    # which raises InternalClientError): start over from a new session.
                    failures += 1
                    log.warning(
                        "relay lost PostgreSQL, giving up the lead: %s: %s", type(exc).__name__, exc
                    )
                    await self._drop_leadership()
                    await self._pause(self._backoff(failures))
        finally:
            self._running = None
            await self._close()

    # --- the step --------------------------------------------------------------------------

    async def publish_pending(self) -> int:
        """Publish the oldest batch of unpublished rows and mark it; returns how many were."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the relay does not lead: call start() first")
        rows = await conn.fetch(_SELECT_BATCH, self.settings.relay_batch_size)
        if not rows:
            return 0
        await self._send_all(rows)
        await conn.execute(_MARK_PUBLISHED, [row["id"] for row in rows])
        tally = Tally(row["event_type"] for row in rows)
        for event_type, count in tally.items():
            EVENTS_PUBLISHED.labels(event_type=event_type).inc(count)
        self.published += len(rows)
        return len(rows)

    async def connect_kafka(self) -> None:
        """Create the topics the broker lacks, then the producer (once; again after a failure).

        The broker may be new (an in-memory one restarted empty): topics come first, so they get
        our partition count rather than whatever broker auto-creation would pick. A broker
        without our mark (`relay_mark_topic`) never got this outbox, or lost it: every outbox
        row is marked unpublished again (`_rewind_outbox`), then the mark is made, and the
        relay publishes from the first row on. The mark, not "the topics are empty", decides: the
        old producer may deliver its last batch to a broker that came back on the same address,
        and a worker may create the topics first. Made before the republish, it survives a
        failure halfway (the next connect goes on from where it was); lost with the broker again,
        it rewinds again.
        """
        if self._producer is not None:
            return
        mark = relay_mark_topic(self.settings.topic_prefix)
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                await ensure_topics(self.settings)
                if not await topic_exists(self.settings, mark):
                    await self._rewind_outbox()
                    await ensure_topics(self.settings, [mark])
                self._producer = await self._producers.start()
        except OutboxRewound:
            raise
        except Exception as exc:
            raise KafkaUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _check_mark(self) -> None:
        """Every MARK_CHECK_S, make sure the broker still has our mark.

        A broker that restarts empty on the same address is invisible to the producer, which
        reconnects and goes on (a worker may even have recreated the topics): only the missing
        mark tells. Then the producer is dropped, and the next pass reconnects and republishes.
        """
        now = asyncio.get_running_loop().time()
        if self._producer is None or now - self._mark_checked_at < MARK_CHECK_S:
            return
        self._mark_checked_at = now
        mark = relay_mark_topic(self.settings.topic_prefix)
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                marked = await topic_exists(self.settings, mark)
        except Exception as exc:  # the next publish finds out what is wrong, and says so
            log.debug("could not check the relay mark: %s", exc)
            return
        if not marked:
            log.warning("Kafka lost the relay's mark (restarted empty?): reconnecting")
            await self._drop_producer()

    async def _rewind_outbox(self) -> None:
        """Mark every published outbox row unpublished again, in one statement.

        A batch a caller read before this (`_send_all`) is dropped (OutboxRewound): sent now, its
        rows would reach the new broker ahead of older ones of the same aggregates.
        """
        conn = self._conn
        if conn is None:
            return  # not the leader: the leader's own connect does it
        status = await conn.execute(_REWIND_OUTBOX)
        rewound = int(status.rsplit(" ", 1)[-1])
        if not rewound:
            return
        log.warning(
            "Kafka has no mark of this outbox, %d of whose events were published (a broker that "
            "lost its data, such as an in-memory one restarted): publishing the outbox again "
            "from its first event; consumers skip what they have already applied",
            rewound,
            extra={"bootstrap": self.settings.kafka_bootstrap, "rewound": rewound},
        )
        self._rewound = True

    async def _send_all(self, rows: list[asyncpg.Record]) -> None:
        await self.connect_kafka()
        if self._rewound:
            self._rewound = False
            raise OutboxRewound("the outbox was rewound; read from its first row again")
        assert self._producer is not None
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                await send_records(self._producer, rows, self.settings)
        except Exception as exc:  # KafkaError, TimeoutError, OSError: all mean "not acked"
            raise KafkaUnavailable(f"{type(exc).__name__}: {exc}") from exc

    # --- failures, waiting, closing --------------------------------------------------------

    async def _on_failure(self, exc: Exception, failures: int) -> None:
        self.failures += 1
        PUBLISH_FAILURES.inc()
        delay = self._backoff(failures)
        log.warning("relay could not publish (%s); retrying in %.1fs", exc, delay)
        await self._drop_producer()
        await self._refresh_lag()
        await self._pause(delay)

    def _backoff(self, failures: int) -> float:
        return float(min(self.max_backoff_s, self.first_backoff_s * 2 ** min(failures - 1, 16)))

    async def _pause(self, seconds: float, *, wake: bool = False) -> None:
        """Sleep `seconds`, cut short by `stop()` (and by a NOTIFY when `wake`)."""
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wake:
            waits.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _refresh_lag(self) -> None:
        """Measure the lag, at most once per poll interval (also while draining a backlog)."""
        now = asyncio.get_running_loop().time()
        if self._conn is None or now - self._lag_measured_at < self.settings.relay_poll_seconds:
            return
        self._lag_measured_at = now
        with contextlib.suppress(Exception):
            age = await self._conn.fetchval(_OLDEST_UNPUBLISHED_AGE)
            RELAY_LAG.set(max(0.0, age or 0.0))

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # Unsent batches expire after ack_timeout_s, so stop() cannot hang for longer.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.ack_timeout_s + 5)

    async def _drop_leadership(self) -> None:
        conn, self._conn = self._conn, None
        if self.is_leader:
            RELAY_LEADER.set(0)
        self.is_leader = False
        if conn is not None:
            await _close_quietly(conn)

    async def _close(self) -> None:
        await self._drop_producer()
        await self._drop_leadership()


async def send_records(
    producer: AIOKafkaProducer, rows: list[asyncpg.Record], settings: Settings
) -> list[RecordMetadata]:
    """Send outbox rows (`_SELECT_BATCH`'s columns) packed as they travel (streams/packing.py)
    and wait for every ack; returns the acks' metadata. The relay and `tulifo replay` both
    publish through it."""
    prefix = settings.topic_prefix
    partitions = {}
    for stream in {row["stream"] for row in rows} & STREAMS.keys():
        topic = stream_topic(stream, prefix)
        partitions[topic] = len(await producer.partitions_for(topic))  # cached metadata
    acks = []
    for record in pack_rows(rows, prefix=prefix, partitions=partitions):
        if not record.packed:
            log.error("an outbox row has an unknown event type: %s", dict(record.headers))
        acks.append(
            await producer.send(
                record.topic,
                value=record.value,
                key=record.key,
                partition=record.partition,
                headers=record.headers,
            )
        )
    metadata: list[RecordMetadata] = await asyncio.gather(*acks)
    return metadata


def relay_mark_topic(prefix: str) -> str:
    """A topic only the relay creates, once the broker has the whole outbox: its absence means a
    broker that never got this outbox, or lost it. (Its existence is the mark, not its records:
    Tansu's ListOffsets answers 0 for a partition holding one record.)"""
    return f"{prefix}.relay-mark"


async def topic_exists(settings: Settings, topic: str) -> bool:
    """Whether the broker has `topic` (from its metadata; asking creates nothing)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return topic in await consumer.topics()
    finally:
        await consumer.stop()


async def _close_quietly(conn: asyncpg.Connection) -> None:
    # Closing the session releases the advisory lock; a broken one is already gone.
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:
        conn.terminate()


def main(settings: Settings) -> None:
    """`tulifo relay`: publish the outbox until SIGTERM or SIGINT."""
    configure_logging(
        service=f"{settings.service_name}-relay",
        level=settings.log_level,
        json_lines=settings.log_json,
    )
    if settings.relay_metrics_port is not None:
        start_http_server(settings.relay_metrics_port, addr="0.0.0.0")  # noqa: S104 - scraped
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    relay = OutboxRelay(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(relay.stop()))
    log.info("outbox relay starting", extra={"bootstrap": settings.kafka_bootstrap})
    await relay.run()
    log.info("outbox relay stopped")


if __name__ == "__main__":  # `python -m bridges.relay`, configured by TULIFO_* (the tests do)
    from infrastructure.settings import get_settings

    main(get_settings())
