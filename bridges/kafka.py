"""Kafka clients shared by the relay and the worker: the producer (with the idempotence fallback)
and the creation of every topic the system uses."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import BrokerResponseError, KafkaError, TopicAlreadyExistsError, for_code

from infrastructure.settings import Settings
from streams.topics import all_topics

log = logging.getLogger(__name__)


def event_topics(prefix: str) -> list[str]:
    """Every stream's topic (streams/topics.py), plus the dead-letter topic."""
    return all_topics(prefix)


async def ensure_topics(
    settings: Settings, topics: list[str] | None = None, *, timeout_ms: int = 10_000
) -> list[str]:
    """Create the topics the broker lacks (all of the catalog by default); returns those created.

    Topics are created up front rather than left to broker auto-creation, which would pick the
    broker's default partition count and so change which partition a key lands on.
    """
    wanted = topics if topics is not None else event_topics(settings.topic_prefix)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=timeout_ms
    )
    try:
        await admin.start()
        response = await admin.create_topics(
            [
                NewTopic(name, settings.topic_partitions, settings.topic_replication_factor)
                for name in wanted
            ],
            timeout_ms=timeout_ms,
        )
    except TopicAlreadyExistsError:
        return []
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    created, problems = [], []
    for topic, code, *rest in response.topic_errors:
        if code == 0:
            created.append(topic)
        elif code != TopicAlreadyExistsError.errno:
            problems.append(f"{topic}: {for_code(code).__name__} {rest[0] if rest else ''}")
    if problems:
        raise KafkaError("could not create topics: " + "; ".join(problems))
    if created:
        log.info("created %d topics", len(created), extra={"topics": created})
    return created


class ProducerFactory:
    """Starts producers honouring `settings.kafka_idempotence`.

    "auto" asks for the idempotent producer and, when the broker answers InitProducerId with an
    error (Tansu does), falls back once per factory to acks=all. Order still holds then: aiokafka
    keeps one in-flight batch per partition; a retried batch may duplicate, and consumers dedupe
    by event_id.
    """

    def __init__(self, settings: Settings, **options: Any) -> None:
        self.settings = settings
        self.options = options
        # None until a broker has answered: then whether the producers we start are idempotent.
        self.idempotent: bool | None = None if settings.kafka_idempotence != "off" else False

    async def start(self) -> AIOKafkaProducer:
        if self.idempotent is not False:
            producer = self._new(enable_idempotence=True)
            try:
                await producer.start()
            except BrokerResponseError as exc:
                await _stop_quietly(producer)
                if self.settings.kafka_idempotence == "on":
                    raise
                self.idempotent = False
                log.warning(
                    "broker refused InitProducerId (%s): producing without idempotence, "
                    "acks=all and one in-flight batch per partition; consumers dedupe by event_id",
                    type(exc).__name__,
                    extra={"bootstrap": self.settings.kafka_bootstrap},
                )
            except BaseException:
                await _stop_quietly(producer)
                raise
            else:
                self.idempotent = True
                return producer
        producer = self._new(acks="all")
        try:
            await producer.start()
        except BaseException:
            await _stop_quietly(producer)
            raise
        return producer

    def _new(self, **extra: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, **self.options, **extra
        )


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()
