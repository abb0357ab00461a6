"""`kafka-ceiling`: what plain aiokafka does on this broker, the bound every stage is compared to.

Produce: N ~200-byte JSON values, acks=all, linger 5 ms, every ack awaited. Consume: the same N
read back from the beginning of every partition (no group, so no rebalance is timed), each value
decoded with json.loads.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.report import Row, row
from bridges.kafka import ensure_topics
from infrastructure.settings import Settings

VALUE_BYTES = 200
LINGER_MS = 5
# A run that takes longer than this is broken, not slow.
DEADLINE_S = 120.0


@dataclass(frozen=True)
class CeilingResult:
    messages: int
    produce_s: float
    consume_s: float

    @property
    def produce_rate(self) -> float:
        return self.messages / self.produce_s

    @property
    def consume_rate(self) -> float:
        return self.messages / self.consume_s

    def rows(self) -> list[Row]:
        return [
            row(
                "kafka-ceiling produce",
                self.produce_rate,
                "msg/s",
                note="acks=all, linger 5 ms; §6 reference ≈ 38k",
            ),
            row(
                "kafka-ceiling consume+decode",
                self.consume_rate,
                "msg/s",
                note="json.loads each; §6 reference ≈ 100k",
            ),
        ]


def sample_value(i: int) -> bytes:
    """An event-shaped JSON document of ~VALUE_BYTES bytes."""
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "bench.sample",
        "version": 1,
        "aggregate_id": f"agg-{i % 1000}",
        "data": {"seq": i, "pad": ""},
    }
    short = len(json.dumps(body, separators=(",", ":")))
    body["data"] = {"seq": i, "pad": "x" * max(0, VALUE_BYTES - short)}
    return json.dumps(body, separators=(",", ":")).encode()


async def measure(settings: Settings, *, messages: int) -> CeilingResult:
    topic = f"{settings.topic_prefix}.bench-ceiling"
    await ensure_topics(settings, [topic])
    values = [sample_value(i) for i in range(messages)]
    keys = [f"agg-{i % 1000}".encode() for i in range(messages)]
    async with asyncio.timeout(DEADLINE_S):
        produce_s = await _produce(settings.kafka_bootstrap, topic, keys, values)
    async with asyncio.timeout(DEADLINE_S):
        consume_s = await _consume(settings, topic, messages)
    return CeilingResult(messages, produce_s, consume_s)


async def _produce(bootstrap: str, topic: str, keys: list[bytes], values: list[bytes]) -> float:
    # Tansu refuses InitProducerId, so no idempotence: the relay falls back to the same.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=LINGER_MS, enable_idempotence=False
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"warm-up")  # metadata, connections
        started = time.perf_counter()
        acks = [await producer.send(topic, v, key=k) for k, v in zip(keys, values, strict=True)]
        await asyncio.gather(*acks)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def _consume(settings: Settings, topic: str, messages: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        wanted = messages + 1  # the warm-up message too
        seen = 0
        started = time.perf_counter()
        while seen < wanted:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                seen += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()
