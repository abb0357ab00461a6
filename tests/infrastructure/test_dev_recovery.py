"""`tulifo dev` loses no event and sends no email twice when one of its processes or embedded
services is killed, or when it is itself stopped and started again.

Each test drives the real command: the machine's PostgreSQL, Redis and RabbitMQ, and the embedded
Tansu, SecantusDB, mail capture and localstripe. Users register through the API; their welcome
emails are counted as the .eml files the mail capture writes. "Nothing more will arrive" is the
worker's consumer group having committed every partition up to its end: after that no event can
be delivered again, so a duplicate would already be on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import functools
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import psutil
import pymongo
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridges.kafka import event_topics
from infrastructure.processes import free_port, port_open
from infrastructure.settings import Settings
from tests.infrastructure.conftest import (
    MACHINE_RABBITMQ_URL,
    MACHINE_REDIS_URL,
    StartTulifo,
    Tulifo,
    clean_env,
    descendants,
    gone,
)

# Faust gives a killed worker's partitions to its successor after broker_session_timeout (10 s);
# an agent's retries while MongoDB or SMTP restart last up to ~35 s. Deadlines only bound failures.
DEADLINE_S = 120.0
# faust_app_id's default: the worker's consumer group.
GROUP = Settings.model_fields["faust_app_id"].default
MONGO_DATABASE = Settings.model_fields["mongo_database"].default


def wait_for(condition: Callable[[], object], what: str, tulifo: Tulifo) -> None:
    end = time.monotonic() + DEADLINE_S
    while not condition():
        if tulifo.popen.poll() is not None:
            raise AssertionError(f"tulifo dev exited while waiting for {what}{tulifo.context()}")
        if time.monotonic() > end:
            raise AssertionError(
                f"timed out after {DEADLINE_S}s waiting for {what}{tulifo.context()}"
            )
        time.sleep(0.1)


def closed() -> str:
    return f"127.0.0.1:{free_port()}"


def recovery_env(database_url: str) -> dict[str, str]:
    return clean_env(
        TULIFO_DATABASE_URL=database_url,
        TULIFO_REDIS_URL=MACHINE_REDIS_URL,
        TULIFO_RABBITMQ_URL=MACHINE_RABBITMQ_URL,
        TULIFO_KAFKA_BOOTSTRAP=closed(),
        TULIFO_MONGO_URL=f"mongodb://{closed()}",
        TULIFO_SMTP_PORT=str(free_port()),
        TULIFO_TOPIC_PREFIX=f"rec{uuid.uuid4().hex[:8]}",
        TULIFO_BCRYPT_ROUNDS="4",
        TULIFO_REGISTER_MAX_PER_IP="1000",
    )


class Dev:
    """One `tulifo dev` run and what its banner says about where things are."""

    def __init__(self, run_tulifo: StartTulifo, env: dict[str, str], state: Path) -> None:
        self.env = env
        self.state = state
        self.port = free_port()
        self.tulifo = run_tulifo(["dev", "--port", str(self.port), "--state-dir", str(state)], env)
        self.tulifo.wait_for_line("Ctrl-C stops everything")
        banner = "\n".join(self.tulifo.lines)
        self.kafka = self._find(r"kafka\s+embedded\s+(127\.0\.0\.1:\d+)", banner)
        self.mongo_url = self._find(r"mongodb\s+embedded\s+(mongodb://\S+)", banner)
        self.smtp_port = int(self._find(r"SMTP smtp://127\.0\.0\.1:(\d+)", banner))
        self.stripe_port = int(self._find(r"localstripe at http://127\.0\.0\.1:(\d+)", banner))

    @staticmethod
    def _find(pattern: str, banner: str) -> str:
        found = re.search(pattern, banner)
        assert found, f"{pattern!r} not in the banner:\n{banner}"
        return found.group(1)

    @property
    def log(self) -> str:
        return self.tulifo.stderr_path.read_text(errors="replace")

    def register(self, address: str) -> None:
        response = httpx.post(
            f"http://127.0.0.1:{self.port}/api/auth/register",
            json={
                "email": address,
                "password": "correct horse battery",
                "name": "Ann",
                "role": "client",
            },
            trust_env=False,
            timeout=30,
        )
        assert response.status_code == 201, response.text

    def process(self, needle: str) -> psutil.Process | None:
        """The live descendant whose command line contains `needle`."""
        for pid in descendants(self.tulifo.popen.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                if needle in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                    return proc
        return None

    def emails_sent(self) -> int:
        """Welcome emails the ledger records as sent."""
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.mongo_url, serverSelectionTimeoutMS=2000
        )
        try:
            return client[MONGO_DATABASE]["email_log"].count_documents({"status": "sent"})
        except pymongo.errors.PyMongoError:
            return -1
        finally:
            client.close()

    def caught_up(self) -> bool:
        return asyncio.run(_caught_up(self.kafka, self.env["TULIFO_TOPIC_PREFIX"]))

    def stop(self) -> None:
        tree = descendants(self.tulifo.popen.pid)
        self.tulifo.signal(signal.SIGINT)
        assert self.tulifo.wait() == 0, self.tulifo.context()
        assert gone(tree) == []


async def _caught_up(bootstrap: str, prefix: str) -> bool:
    """Whether the worker's group has committed every partition that holds events to its end."""
    # In the group but never subscribed, so it joins nothing: it only reads the group's offsets.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False
    )
    try:
        await consumer.start()
        await consumer.topics()
        partitions = [
            TopicPartition(topic, partition)
            for topic in event_topics(prefix)
            for partition in consumer.partitions_for_topic(topic) or ()
        ]
        ends = await consumer.end_offsets(partitions)
        for tp, end in ends.items():
            if end and ((await consumer.committed(tp)) or 0) < end:
                return False
    except Exception:  # the broker restarting, say: not caught up yet
        return False
    finally:
        await consumer.stop()
    return any(ends.values())


def welcomes(state: Path) -> Counter[str]:
    """How many welcome emails each address received, from the mail capture's .eml files."""
    received: Counter[str] = Counter()
    for path in (state / "mail").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["Subject"] == "Welcome to Tulifo Gig":
            received[str(message["To"])] += 1
    return received


def addresses(count: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"user{n}-{run}@example.com" for n in range(count)]


def published(dev: Dev, count: int) -> bool:
    """Whether `count` registrations are marked published in the outbox (acked by Kafka)."""
    return asyncio.run(_published(dev.env["TULIFO_DATABASE_URL"])) >= count


async def _published(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(_PUBLISHED_REGISTRATIONS))
    finally:
        await conn.close()


_PUBLISHED_REGISTRATIONS = """
    SELECT count(*) FROM outbox WHERE published_at IS NOT NULL AND event_type = 'user.registered'"""


def test_a_worker_killed_in_the_middle_of_registrations_welcomes_every_user_once(
    run_tulifo: StartTulifo, tmp_path: Path, fresh_database_url: str
) -> None:
    dev = Dev(run_tulifo, recovery_env(fresh_database_url), tmp_path / "state")
    users = addresses(8)
    for address in users[:4]:
        dev.register(address)
    # Killed once the emails so far are recorded as sent, between two of them: the ledger, not
    # luck, must keep the redelivered (uncommitted) events from mailing anyone twice.
    wait_for(lambda: dev.emails_sent() == 4, "the first four welcome emails", dev.tulifo)
    worker = dev.process("infrastructure.cli worker")
    assert worker is not None
    worker.kill()
    for address in users[4:]:
        dev.register(address)  # while the worker is down: these wait in the broker

    wait_for(
        lambda: (again := dev.process("infrastructure.cli worker")) and again.pid != worker.pid,
        "the worker to be started again",
        dev.tulifo,
    )
    assert "worker exited with code -9 (SIGKILL); starting it again" in dev.log
    wait_for(
        lambda: set(welcomes(dev.state)) == set(users) and dev.caught_up(),
        "every user's welcome and the worker to commit every event",
        dev.tulifo,
    )
    assert welcomes(dev.state) == Counter({address: 1 for address in users})
    dev.stop()


def test_killed_embedded_services_come_back_on_their_ports_and_nothing_is_lost_or_sent_twice(
    run_tulifo: StartTulifo, tmp_path: Path, fresh_database_url: str
) -> None:
    dev = Dev(run_tulifo, recovery_env(fresh_database_url), tmp_path / "state")
    users = addresses(4)
    for address in users[:2]:
        dev.register(address)
    wait_for(
        lambda: dev.emails_sent() == 2 and dev.caught_up(),
        "the first two welcomes, committed",
        dev.tulifo,
    )
    stand_ins = {
        "kafka (tansu)": ("tansu", int(dev.kafka.rsplit(":", 1)[1])),
        "mongodb (secantus)": ("secantusd-py", int(dev.mongo_url.split(":")[2].split("/")[0])),
        "smtp (mailcatcher)": ("infrastructure.mailcatcher", dev.smtp_port),
        "stripe (localstripe)": ("infrastructure.local.stripe_server", dev.stripe_port),
    }
    killed = {}
    for name, (needle, _) in stand_ins.items():
        proc = dev.process(needle)
        assert proc is not None, name
        killed[name] = proc
        proc.kill()  # SIGKILL: no chance to flush or say goodbye

    def back(name: str) -> bool:
        needle, port = stand_ins[name]
        proc = dev.process(needle)
        return (
            proc is not None
            and proc.pid != killed[name].pid
            and port_open("127.0.0.1", port)
            and f"{name} is back on port {port}" in dev.log
        )

    for name in stand_ins:
        wait_for(functools.partial(back, name), f"{name} on its port again", dev.tulifo)
    # The in-memory broker came back empty: the worker and the relay were stopped with it and
    # started after it, and the relay published the outbox again from its first event.
    wait_for(
        lambda: "publishing the outbox again from its first event" in dev.log,
        "the relay to republish the outbox",
        dev.tulifo,
    )
    for address in users[2:]:
        dev.register(address)
    wait_for(
        lambda: set(welcomes(dev.state)) == set(users) and dev.caught_up(),
        "every user's welcome and the new broker's events all committed",
        dev.tulifo,
    )
    assert welcomes(dev.state) == Counter({address: 1 for address in users})
    dev.stop()


def test_dev_stopped_with_events_unconsumed_and_started_again_welcomes_each_user_once(
    run_tulifo: StartTulifo, tmp_path: Path, fresh_database_url: str
) -> None:
    env = recovery_env(fresh_database_url)
    state = tmp_path / "state"
    users = addresses(4)

    first = Dev(run_tulifo, env, state)
    for address in users[:2]:
        first.register(address)
    wait_for(lambda: first.emails_sent() == 2, "the first two welcomes", first.tulifo)
    worker = first.process("infrastructure.cli worker")
    assert worker is not None
    worker.kill()
    # Published to the in-memory broker and acked, so marked published in the outbox, but no
    # worker has read it when everything stops: the broker's copy is gone with it.
    first.register(users[2])
    wait_for(lambda: published(first, 3), "the third registration published", first.tulifo)
    first.stop()

    second = Dev(run_tulifo, env, state)
    second.register(users[3])
    wait_for(
        lambda: set(welcomes(state)) == set(users) and second.caught_up(),
        "every user's welcome after the restart, all events committed",
        second.tulifo,
    )
    assert welcomes(state) == Counter({address: 1 for address in users})
    second.stop()
