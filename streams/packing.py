"""How events ride on a stream topic: many to one Kafka message, a "pack".

Faust spends most of an agent's time handing each Kafka message over (futures per message, flow
control, the stream iterator; DESIGN.md §7), not in the agent: a fold that takes one event per
message tops out at ~4-5k events/s here, whatever it does with them. So the relay (and a replay)
pack the events bound for one partition into one message, up to PACK_MAX_EVENTS events or
PACK_MAX_BYTES, and the agents unpack them.

A pack on the wire:
- value: a JSON array of event envelopes (streams/events.py), the outbox's own JSON, in outbox
  order, so one aggregate's events stay in commit order inside a pack and across packs;
- partition: the one every aggregate in it hashes to (aiokafka's default partitioner, murmur2 of
  the aggregate id, as a keyed single message would land), so a pack and a single event of the
  same aggregate meet on one partition;
- key: none (it holds many aggregates); headers: `event_count`, and `event_id`/`event_type` when
  it holds exactly one event.

A consumer also takes a single envelope (a JSON object): derived events (`rating.updated`) and
dead letters sent back for another try travel that way. Consumers outside the pipeline get one
event per message, with the type as routing key, from the RabbitMQ feed, not from these topics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson
from aiokafka.partitioner import murmur2

from streams.events import PoisonEvent
from streams.topics import STREAMS, dead_letter_topic, stream_topic

# ~100 events per message is where the lab's gain levels off (DESIGN.md §7); the byte cap keeps a
# pack well under the producer's batch (256 KiB) and the broker's message limit (1 MiB).
PACK_MAX_EVENTS: Final = 200
PACK_MAX_BYTES: Final = 192 * 1024


class OutboxRow(Protocol):
    """The outbox columns a pack is made of (an asyncpg Record has them)."""

    def __getitem__(self, column: str) -> Any: ...


@dataclass
class Outgoing:
    """One Kafka record to send: a pack, or a row parked on the dead-letter topic."""

    topic: str
    partition: int | None
    key: bytes | None
    headers: list[tuple[str, bytes]]
    payloads: list[bytes] = field(default_factory=list)
    packed: bool = True
    size: int = 2

    @property
    def value(self) -> bytes:
        return b"[" + b",".join(self.payloads) + b"]" if self.packed else self.payloads[0]

    @property
    def count(self) -> int:
        return len(self.payloads)


def partition_of(key: str, partitions: int) -> int:
    """The partition a message keyed `key` lands on with aiokafka's (and Java's) default
    partitioner; derived events are sent keyed and must meet their aggregate's packs."""
    return int((murmur2(key.encode()) & 0x7FFFFFFF) % partitions)


def pack_rows(
    rows: Iterable[OutboxRow],
    *,
    prefix: str,
    partitions: Mapping[str, int],
    max_events: int = PACK_MAX_EVENTS,
    max_bytes: int = PACK_MAX_BYTES,
) -> list[Outgoing]:
    """Outbox rows (oldest first) as the records that carry them, in an order that keeps every
    partition's events in row order. `partitions` gives each stream topic's partition count."""
    out: list[Outgoing] = []
    open_packs: dict[tuple[str, int], Outgoing] = {}
    for row in rows:
        stream = row["stream"]
        payload = row["payload"].encode()
        if stream not in STREAMS:
            # A row no consumer could route must not stall the outbox: park it, with the reason.
            out.append(_dead_letter(row, payload, prefix))
            continue
        topic = stream_topic(stream, prefix)
        partition = partition_of(row["key"], partitions[topic])
        pack = open_packs.get((topic, partition))
        if pack is not None and (
            pack.count >= max_events or pack.size + len(payload) + 1 > max_bytes
        ):
            pack = None
        if pack is None:
            pack = Outgoing(topic, partition, None, [])
            open_packs[(topic, partition)] = pack
            out.append(pack)
        pack.payloads.append(payload)
        pack.size += len(payload) + 1
        if pack.count == 1:
            pack.headers = [
                ("event_id", row["event_id"].encode()),
                ("event_type", row["event_type"].encode()),
            ]
    for record in out:
        if record.packed:
            if record.count != 1:
                record.headers = []
            record.headers.append(("event_count", str(record.count).encode()))
    return out


def _dead_letter(row: OutboxRow, payload: bytes, prefix: str) -> Outgoing:
    return Outgoing(
        dead_letter_topic(prefix),
        None,
        row["key"].encode(),
        [
            ("event_id", row["event_id"].encode()),
            ("event_type", row["event_type"].encode()),
            ("dead_letter_reason", f"unknown event type {row['event_type']!r}".encode()),
            ("source", b"outbox-relay"),
        ],
        [payload],
        packed=False,
    )


def unpack(value: bytes | None) -> Sequence[Any]:
    """The envelopes (as decoded JSON, unvalidated) a message carries: a pack's items, or the one
    envelope of a single event. PoisonEvent when the message is neither."""
    if value is None:
        raise PoisonEvent("empty message (no value)")
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise PoisonEvent(f"not JSON: {exc}") from exc
    if isinstance(decoded, list):
        return decoded
    if isinstance(decoded, dict):
        return [decoded]
    raise PoisonEvent(f"not an event envelope nor a pack of them: a JSON {type(decoded).__name__}")


def is_pack(value: bytes | None) -> bool:
    """Whether a message's value is a pack (a JSON array) rather than a single envelope; an event
    of a pack is dead-lettered alone, a single message as it came."""
    return value is not None and value.lstrip()[:1] == b"["


def event_headers(item: Any) -> list[tuple[str, bytes]]:
    """The headers a single event travels with, read from its envelope (for a dead letter)."""
    if not isinstance(item, dict):
        return []
    headers = []
    for name in ("event_id", "type", "sequence"):
        value = item.get(name)
        if value is not None:
            headers.append(("event_type" if name == "type" else name, str(value).encode()))
    return headers
