"""CPU accounting from Linux /proc: who used the machine's cores while a load ran.

On a shared 2-core machine a latency figure means little without it: the same server meets
its target on an idle machine and misses it while a test suite runs next to it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    return _stat(Path(f"/proc/{pid}/stat"))[1]


def main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of a process's first thread: the event loop's, in the API server (bcrypt
    hashes on other threads, so the two together say whether a login storm took the loop's
    core or a core of its own)."""
    return _stat(Path(f"/proc/{pid}/task/{pid}/stat"))[1]


def all_processes_cpu_s() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds) of every process that can be read."""
    found = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            found[int(path.parent.name)] = _stat(path)
        except (OSError, ValueError, IndexError):
            continue  # gone since the listing
    return found


def _stat(path: Path) -> tuple[str, float]:
    text = path.read_text()
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return name, (utime + stime) * _TICK_S


def machine_busy_s() -> float:
    """CPU seconds all cores have spent on anything but idle and iowait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = sum(values[:3]) + sum(values[5:8])
    return busy * _TICK_S


@dataclass
class CpuWindow:
    """Cores used between `start()` and `stop()`: by the server, by us (the client), by the
    whole machine, and by the busiest other commands (PostgreSQL, or a neighbour's tests)."""

    server_pid: int
    server_s: float = 0.0
    # The part of server_s spent on the server's event-loop thread.
    server_loop_s: float = 0.0
    client_s: float = 0.0
    machine_s: float = 0.0
    wall_s: float = 0.0
    others_s: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._processes = all_processes_cpu_s()
        self._loop_mark = main_thread_cpu_s(self.server_pid)
        self._marks = (
            process_cpu_s(self.server_pid),
            time.process_time(),
            machine_busy_s(),
            time.monotonic(),
        )

    def stop(self) -> None:
        server, client, machine, wall = self._marks
        self.server_s = process_cpu_s(self.server_pid) - server
        self.server_loop_s = main_thread_cpu_s(self.server_pid) - self._loop_mark
        self.client_s = time.process_time() - client
        self.machine_s = machine_busy_s() - machine
        self.wall_s = time.monotonic() - wall
        ours = {self.server_pid, os.getpid()}
        by_name: dict[str, float] = {}
        for pid, (name, cpu_s) in all_processes_cpu_s().items():
            if pid in ours:
                continue
            # A pid new since start() was started during the window: all its time counts.
            before = self._processes.get(pid)
            used = cpu_s - before[1] if before is not None else cpu_s
            # Kernel workers rename themselves after their current queue: group them.
            name = name.split("-", 1)[0] if name.startswith("kworker") else name
            by_name[name] = by_name.get(name, 0.0) + used
        top = sorted(by_name.items(), key=lambda item: -item[1])[:4]
        self.others_s = {name: round(cpu_s, 2) for name, cpu_s in top if cpu_s >= 0.05}

    @classmethod
    def joined(cls, parts: list[CpuWindow]) -> CpuWindow:
        """Windows of one server, one after another, as one: their CPU and wall time summed."""
        joined = cls(parts[0].server_pid)
        for part in parts:
            joined.server_s += part.server_s
            joined.server_loop_s += part.server_loop_s
            joined.client_s += part.client_s
            joined.machine_s += part.machine_s
            joined.wall_s += part.wall_s
            for name, cpu_s in part.others_s.items():
                joined.others_s[name] = round(joined.others_s.get(name, 0.0) + cpu_s, 2)
        return joined

    def busiest_others(self) -> str:
        """E.g. "postgres 0.31, pytest 0.62" (cores)."""
        shown = [(name, self.cores(s)) for name, s in self.others_s.items()]
        return ", ".join(f"{name} {cores:.2f}" for name, cores in shown if cores >= 0.01) or "none"

    def cores(self, cpu_s: float) -> float:
        return cpu_s / self.wall_s if self.wall_s else 0.0
