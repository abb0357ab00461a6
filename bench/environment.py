"""What a bench run stands on: a database of its own on the machine's PostgreSQL (created,
migrated, dropped), a Tansu broker it starts and kills, and for the stream rows a SecantusDB (the
escrow agent's `client_data`). Everything lives on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from infrastructure.embedded import start_secantus, start_tansu
from infrastructure.migrations import scratch_database
from infrastructure.settings import Settings

HOST = "127.0.0.1"
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
# A Redis database of the bench's own (the tests use 13): registration counts per IP land here,
# never in a developer's database 0, where they would throttle their own sign-ups for an hour.
REDIS_URL = f"redis://{HOST}:6379/14"
# The benchmark registers its users itself, from one address; the limit is not what it measures.
REGISTER_MAX_PER_IP = 1_000_000


@dataclass(frozen=True)
class Environment:
    run_id: str
    workdir: Path
    database_url: str | None
    kafka_bootstrap: str | None
    mongo_url: str | None = None

    def settings(self) -> Settings:
        """Settings for in-process clients (the relay); the API server gets `server_env()`."""
        return Settings(
            env="test",
            database_url=self.database_url or "postgresql://unused",
            kafka_bootstrap=self.kafka_bootstrap or f"{HOST}:1",
            mongo_url=self.mongo_url or f"mongodb://{HOST}:1",
            mongo_database=f"bench_{self.run_id}",
            redis_url=REDIS_URL,
            rabbitmq_url=None,
            register_max_per_ip=REGISTER_MAX_PER_IP,
            topic_prefix=f"bench{self.run_id}",
            # Tansu refuses InitProducerId; "auto" would find that out with an ERROR line and
            # then produce exactly like this.
            kafka_idempotence="off",
            log_json=False,
        )


@asynccontextmanager
async def environment(
    *, workdir: Path, database: bool, kafka: bool, mongo: bool = False
) -> AsyncIterator[Environment]:
    """Start what the selected benches need; tear it all down however the run ends."""
    run_id = uuid.uuid4().hex[:8]
    async with AsyncExitStack() as stack:
        database_url = None
        if database:
            database_url = await stack.enter_async_context(
                scratch_database(PG_ADMIN_URL, f"tulifo_bench_{run_id}")
            )
        bootstrap = None
        if kafka:
            proc, bootstrap = start_tansu(log_path=workdir / "tansu.log")
            # Killed, not stopped: Tansu keeps nothing, and a polite stop waits ~5 s for clients.
            stack.callback(proc.kill)
        mongo_url = None
        if mongo:
            secantus, mongo_url = start_secantus(log_path=workdir / "secantus.log")
            stack.callback(secantus.stop)
        yield Environment(run_id, workdir, database_url, bootstrap, mongo_url)


def machine_name() -> str:
    """What the numbers were taken on: `lscpu`'s model name (from /proc/cpuinfo, where lscpu
    reads it) and the CPU count, e.g. "AMD EPYC x2"."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} x{os.cpu_count()}"
