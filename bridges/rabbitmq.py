"""The RabbitMQ feed: every domain event, one AMQP message each, on the `tulifo.events` exchange.

Consumers outside the pipeline (the seed's services, DESIGN.md §3) subscribe by routing key, which
is the event type (`bid.accepted`, `payment.*`, `#`), instead of reading packs off Kafka.

- Reads every stream topic (streams/topics.py) with its own consumer group
  (`<faust_app_id>-rabbitmq-bridge`), from the earliest offset the group has not committed. A
  message is a pack of envelopes or a single one (streams/packing.py); each envelope becomes one
  persistent AMQP message: routing key and `event_type` header = its type, `message_id` = its
  event_id, `schema_version` header = its version, body = the envelope's JSON, less the fields
  that stay inside the pipeline (`PRIVATE_FIELDS`: what a chat message said).
- Offsets are committed only once RabbitMQ confirmed every message of the batch (publisher
  confirms). RabbitMQ down or the connection dropped: the batch stays in hand, nothing more is
  read, and the bridge reconnects with capped backoff and publishes the whole batch again. So the
  feed is at-least-once: a subscriber dedupes by `message_id`.
- A message that is no pack, or an envelope without a usable `event_id`/`type`, is poison: it
  goes to the dead-letter topic with the reason and its origin, in the headers the agents use
  (agents/runtime.py), and the partition moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections import Counter as Tally
from collections.abc import Awaitable, Sequence
from typing import Any

import aio_pika
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Gauge, start_http_server

from agents.runtime import parked
from bridges.kafka import ProducerFactory, ensure_topics
from infrastructure.logging import configure_logging
from infrastructure.settings import Settings
from streams.events import PoisonEvent
from streams.messages import FEED_PRIVATE_FIELDS, MessageSent
from streams.packing import is_pack, unpack
from streams.topics import STREAMS, dead_letter_topic, stream_topic

log = logging.getLogger(__name__)

AGENT_NAME = "rabbitmq-bridge"
# The first retry after a failure waits this long; each further failure doubles it up to the cap.
FIRST_BACKOFF_S = 0.2
# Kafka messages read per batch: a pack holds up to 200 events (streams/packing.py), so a full
# batch is up to 10,000 AMQP messages awaiting confirms at once, well within a channel's reach.
BATCH_MAX_MESSAGES = 50

EVENTS_BRIDGED = Counter(
    "tulifo_bridge_events_total", "Events confirmed by RabbitMQ", ["event_type"]
)
BRIDGE_FAILURES = Counter(
    "tulifo_bridge_failures_total", "Batches that failed and will be published again", ["cause"]
)
DEAD_LETTERED = Counter(
    "tulifo_bridge_dead_letters_total", "Poison messages or envelopes sent to the dead-letter topic"
)
BRIDGE_CONNECTED = Gauge("tulifo_bridge_connected", "1 while connected to RabbitMQ")


class BridgeRefused(Exception):
    """The bridge cannot run with these settings (RabbitMQ is off)."""


class RabbitUnavailable(Exception):
    """Not every message of the batch was confirmed; its offsets were not committed."""


class KafkaUnavailable(Exception):
    """A dead letter was not acked by Kafka; the batch was not committed."""


# Fields of an event's data that stay inside the pipeline: the feed's subscribers are other
# services, not the parties a private field belongs to.
PRIVATE_FIELDS: dict[str, frozenset[str]] = {MessageSent.event_type: FEED_PRIVATE_FIELDS}


class Outgoing:
    """One AMQP message to publish, from one envelope."""

    __slots__ = ("event_type", "message")

    def __init__(self, envelope: dict[str, Any]) -> None:
        self.event_type = str(envelope["type"])
        version = envelope.get("version", 1)
        private = PRIVATE_FIELDS.get(self.event_type)
        if private and isinstance(envelope.get("data"), dict):
            data = {k: v for k, v in envelope["data"].items() if k not in private}
            envelope = {**envelope, "data": data}
        self.message = aio_pika.Message(
            orjson.dumps(envelope),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(envelope["event_id"]),
            type=self.event_type,
            headers={"event_type": self.event_type, "schema_version": version},
        )


def to_outgoing(envelope: Any, *, stream: str) -> Outgoing:
    """The AMQP message for one envelope, or `PoisonEvent` saying why it cannot have one.

    Only what the feed needs is checked (an event_id, a type of this stream, a version): the
    body is the envelope as the outbox wrote it (less its private fields), not a re-rendering.
    """
    if not isinstance(envelope, dict):
        raise PoisonEvent(f"not an event envelope: a JSON {type(envelope).__name__}")
    try:
        uuid.UUID(str(envelope["event_id"]))
    except (KeyError, ValueError) as exc:
        raise PoisonEvent(f"not an event envelope: no valid event_id ({exc})") from None
    event_type = envelope.get("type")
    if event_type not in STREAMS[stream]:
        raise PoisonEvent(f"event type {event_type!r} on the {stream!r} stream")
    version = envelope.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PoisonEvent(f"not an event envelope: version {version!r}")
    return Outgoing(envelope)


class RabbitBridge:
    """Bridges Kafka to RabbitMQ; `run()` until `stop()`, or drive `bridge_batch()` yourself."""

    def __init__(
        self,
        settings: Settings,
        *,
        confirm_timeout_s: float = 15.0,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = 30.0,
        batch_max_messages: int = BATCH_MAX_MESSAGES,
    ) -> None:
        if not settings.rabbitmq_url:
            raise BridgeRefused(
                "TULIFO_RABBITMQ_URL is empty: RabbitMQ is off, so there is nothing to bridge "
                "to; set it (e.g. amqp://guest:guest@127.0.0.1:5672/) to run the bridge"
            )
        self.settings = settings
        self.rabbitmq_url: str = settings.rabbitmq_url
        self.confirm_timeout_s = confirm_timeout_s
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.batch_max_messages = batch_max_messages
        self.group_id = f"{settings.faust_app_id}-{AGENT_NAME}"
        self.topics = {stream_topic(stream, settings.topic_prefix): stream for stream in STREAMS}
        # Observable state, for the metrics and for tests to wait on.
        self.bridged = 0
        self.dead_lettered = 0
        self.failures = 0
        self.connected = False
        self.connections = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._producers = ProducerFactory(
            settings,
            client_id=f"{settings.service_name}-{AGENT_NAME}",
            request_timeout_ms=int(confirm_timeout_s * 1000),
        )
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        # Read but not yet confirmed and committed: published again after a failure.
        self._batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] | None = None
        self._stopping = asyncio.Event()
        self._running: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Bridge until `stop()`: read a batch, publish and confirm it, commit; back off on
        failures, holding the batch in hand meanwhile (nothing more is read)."""
        self._running = asyncio.current_task()
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    await self.bridge_batch()
                    failures = 0
                except (RabbitUnavailable, KafkaUnavailable) as exc:
                    failures += 1
                    await self._on_failure(exc, failures)
                except Exception as exc:
                    # Kafka itself (the consumer could not start, a fetch failed): start over
                    # from the committed offsets with a new consumer.
                    failures += 1
                    self.failures += 1
                    BRIDGE_FAILURES.labels(cause="kafka").inc()
                    delay = self._backoff(failures)
                    log.warning(
                        "bridge lost Kafka (%s: %s); reconnecting in %.1fs",
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    await self._drop_kafka()
                    await self._pause(delay)
        finally:
            self._running = None
            await self._close()

    async def stop(self) -> None:
        """Finish the batch in flight (or its backoff), then close every connection."""
        self._stopping.set()
        running = self._running
        if running is not None and running is not asyncio.current_task():
            await asyncio.shield(running)
            return
        await self._close()

    # --- the step --------------------------------------------------------------------------

    async def bridge_batch(self) -> int:
        """Publish the batch in hand (or read the next one), wait for every confirm, then commit
        its offsets; returns how many events were published."""
        # RabbitMQ first: while it is down nothing is read, and a connection closed while idle
        # is replaced before a batch needs it.
        await self._connect_rabbit()
        consumer = await self._connect_kafka()
        if self._batch is None:
            self._batch = await consumer.getmany(
                timeout_ms=500, max_records=self.batch_max_messages
            )
        batch = self._batch
        if not batch:
            self._batch = None
            return 0
        outgoing = await self._prepare(batch)
        if outgoing:
            await self._publish(outgoing)
        await self._commit(consumer, batch)
        self._batch = None
        tally = Tally(item.event_type for item in outgoing)
        for event_type, count in tally.items():
            EVENTS_BRIDGED.labels(event_type=event_type).inc(count)
        self.bridged += len(outgoing)
        return len(outgoing)

    async def _prepare(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> list[Outgoing]:
        """The AMQP messages of a batch, in partition order; poison is dead-lettered (and
        acked by Kafka) before anything is published, so a commit never skips it."""
        outgoing: list[Outgoing] = []
        dead: list[tuple[ConsumerRecord[bytes, bytes], str, Any, int | None]] = []
        for tp, records in batch.items():
            stream = self.topics[tp.topic]
            for record in records:
                try:
                    envelopes = unpack(record.value)
                except PoisonEvent as exc:
                    dead.append((record, str(exc), None, None))
                    continue
                packed = is_pack(record.value)
                for index, envelope in enumerate(envelopes):
                    try:
                        outgoing.append(to_outgoing(envelope, stream=stream))
                    except PoisonEvent as exc:
                        dead.append((record, str(exc), envelope, index if packed else None))
        if dead:
            await self._dead_letter(dead)
        return outgoing

    async def _publish(self, outgoing: Sequence[Outgoing]) -> None:
        exchange = await self._connect_rabbit()
        try:
            async with asyncio.timeout(self.confirm_timeout_s):
                # Sent in order on one channel; the confirms come back as RabbitMQ persists them.
                publishes: list[Awaitable[Any]] = [
                    exchange.publish(item.message, item.event_type, mandatory=False)
                    for item in outgoing
                ]
                await asyncio.gather(*publishes)
        except Exception as exc:  # connection lost, channel closed, nack, no confirm in time
            raise RabbitUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _commit(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        offsets = {
            tp: OffsetAndMetadata(records[-1].offset + 1, "") for tp, records in batch.items()
        }
        try:
            await consumer.commit(offsets)
        except Exception as exc:
            # Published and confirmed already: a partition handed to another member meanwhile
            # is read again from its last commit there, which only duplicates (same
            # message_id). Our own next commit covers these offsets too.
            log.warning("bridge could not commit its offsets (%s: %s)", type(exc).__name__, exc)

    async def _dead_letter(
        self, dead: list[tuple[ConsumerRecord[bytes, bytes], str, Any, int | None]]
    ) -> None:
        """Send each poison message (or single envelope of a pack) to the dead-letter topic, in
        the agents' format (agents/runtime.py DeadLetters), and wait for every ack."""
        topic = dead_letter_topic(self.settings.topic_prefix)
        try:
            producer = await self._connect_producer()
            acks = []
            for record, reason, item, index in dead:
                key, value, headers = parked(
                    record, agent=AGENT_NAME, reason=reason, item=item, index=index
                )
                acks.append(await producer.send(topic, value=value, key=key, headers=headers))
            async with asyncio.timeout(self.confirm_timeout_s):
                await asyncio.gather(*acks)
        except Exception as exc:
            await self._drop_producer()
            raise KafkaUnavailable(f"dead letters not acked: {type(exc).__name__}: {exc}") from exc
        self.dead_lettered += len(dead)
        DEAD_LETTERED.inc(len(dead))

    # --- connections -----------------------------------------------------------------------

    async def _connect_kafka(self) -> AIOKafkaConsumer:
        if self._consumer is not None:
            return self._consumer
        # The topics get our partition count, not whatever broker auto-creation would pick.
        await ensure_topics(
            self.settings, [*self.topics, dead_letter_topic(self.settings.topic_prefix)]
        )
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            client_id=f"{self.settings.service_name}-{AGENT_NAME}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
            session_timeout_ms=int(self.settings.broker_session_timeout * 1000),
        )
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer
        log.info("bridge consuming", extra={"group": self.group_id, "topics": list(self.topics)})
        return consumer

    async def _connect_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = await self._producers.start()
        return self._producer

    async def _connect_rabbit(self) -> aio_pika.abc.AbstractExchange:
        """A plain (not robust) connection: after a loss we, not the library, decide what to
        publish again, and only once a new connection and channel are up."""
        if self._exchange is not None and self._connection is not None:
            if not self._connection.is_closed:
                return self._exchange
            # Closed while idle (a broker restart, an operator): no publish needs to fail first.
            log.warning("bridge found its RabbitMQ connection closed; reconnecting")
            await self._drop_rabbit()
        try:
            connection = await aio_pika.connect(
                self.rabbitmq_url,
                timeout=self.confirm_timeout_s,
                client_properties={"connection_name": f"{self.settings.service_name}-{AGENT_NAME}"},
            )
        except Exception as exc:
            raise RabbitUnavailable(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self.settings.rabbitmq_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await connection.close()
            raise RabbitUnavailable(
                f"cannot declare the exchange: {type(exc).__name__}: {exc}"
            ) from exc
        self._connection, self._exchange = connection, exchange
        self.connected = True
        self.connections += 1
        BRIDGE_CONNECTED.set(1)
        log.info(
            "bridge connected to RabbitMQ",
            extra={"exchange": self.settings.rabbitmq_exchange},
        )
        return exchange

    # --- failures, waiting, closing --------------------------------------------------------

    async def _on_failure(self, exc: Exception, failures: int) -> None:
        self.failures += 1
        cause = "rabbitmq" if isinstance(exc, RabbitUnavailable) else "dead_letter"
        BRIDGE_FAILURES.labels(cause=cause).inc()
        delay = self._backoff(failures)
        held = sum(len(records) for records in (self._batch or {}).values())
        if held:
            log.warning(
                "bridge could not publish a batch of %d Kafka messages (%s); holding it, "
                "retrying in %.1fs",
                held,
                exc,
                delay,
            )
        else:
            log.warning("bridge cannot reach RabbitMQ (%s); retrying in %.1fs", exc, delay)
        if isinstance(exc, RabbitUnavailable):
            await self._drop_rabbit()
        await self._pause(delay)

    def _backoff(self, failures: int) -> float:
        return float(min(self.max_backoff_s, self.first_backoff_s * 2 ** min(failures - 1, 16)))

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, cut short by `stop()`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _drop_rabbit(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if self.connected:
            BRIDGE_CONNECTED.set(0)
        self.connected = False
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.confirm_timeout_s + 5)

    async def _drop_kafka(self) -> None:
        # A new consumer starts from the committed offsets: the batch in hand is read again.
        self._batch = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 15)
        await self._drop_producer()

    async def _close(self) -> None:
        await self._drop_kafka()
        await self._drop_rabbit()


def main(settings: Settings) -> None:
    """`tulifo bridge`: republish every domain event to RabbitMQ until SIGTERM or SIGINT."""
    configure_logging(
        service=f"{settings.service_name}-bridge",
        level=settings.log_level,
        json_lines=settings.log_json,
    )
    bridge = RabbitBridge(settings)  # refuses before anything starts when RabbitMQ is off
    if settings.bridge_metrics_port is not None:
        start_http_server(settings.bridge_metrics_port, addr="0.0.0.0")  # noqa: S104 - scraped
    asyncio.run(_serve(bridge))


async def _serve(bridge: RabbitBridge) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bridge.stop()))
    log.info(
        "RabbitMQ bridge starting",
        extra={
            "bootstrap": bridge.settings.kafka_bootstrap,
            "exchange": bridge.settings.rabbitmq_exchange,
        },
    )
    await bridge.run()
    log.info("RabbitMQ bridge stopped")


if __name__ == "__main__":  # `python -m bridges.rabbitmq`, configured by TULIFO_* (the tests do)
    import sys

    from infrastructure.settings import get_settings

    try:
        main(get_settings())
    except BridgeRefused as exc:
        print(f"tulifo bridge: {exc}", file=sys.stderr)
        sys.exit(1)
