"""Child processes that must never outlive us: embedded brokers and databases, app processes.

Run as a script (`python -I -S processes.py PARENT SIGNAL ACCOUNT ARGV...`), this module is the
small wrapper that ties a child to the life of its parent before becoming that child (see
`_parent_death_argv`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

# prctl(2)'s option number, from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1
# What the wrapper exits with when it cannot run the program, as a shell does.
_EXIT_CANNOT_RUN = 127


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.25) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, *, deadline_s: float, proc: ManagedProcess | None = None
) -> None:
    """Block until host:port accepts connections; fail loudly at the deadline or if proc dies."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if port_open(host, port):
            return
        if proc is not None and proc.popen.poll() is not None:
            where = f"see {proc.log_path}" if proc.log_path else "see its output above"
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; {where}")
        time.sleep(0.02)
    raise TimeoutError(f"nothing listened on {host}:{port} within {deadline_s:.0f}s")


@dataclass
class ManagedProcess:
    """A child in its own process group, so stopping it also stops whatever it spawned.

    It is also sent `parent_death_signal` by the kernel if we die without stopping it (SIGKILL,
    the OOM killer), on Linux: see `_parent_death_argv`.
    """

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        echo: bool = False,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        run_as: tuple[int, int] | None = None,
        parent_death_signal: int = signal.SIGTERM,
    ) -> ManagedProcess:
        """Output goes to `log_path`; without one, to our own stdout/stderr if `echo`, else
        nowhere. `run_as` is a (uid, gid) to run under instead of ours, with no extra groups.

        SIGTERM on our death lets each child stop what it started itself; a server whose
        SIGTERM waits for its clients (PostgreSQL's smart shutdown) should be given another.
        """
        log: IO[bytes] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("ab")
        if log is not None:
            stdout: IO[bytes] | int | None = log
            stderr: int | None = subprocess.STDOUT
        elif echo:
            stdout = stderr = None
        else:
            stdout = stderr = subprocess.DEVNULL
        tied = _parent_death_argv(argv, parent_death_signal, run_as)
        # The wrapper takes on `run_as` itself; without it, Popen does.
        account = run_as if tied is None else None
        popen = subprocess.Popen(  # noqa: S603 - argv is ours, never user input
            tied if tied is not None else list(argv),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            user=account[0] if account else None,
            group=account[1] if account else None,
            extra_groups=[] if account else None,
        )
        return cls(name=name, popen=popen, log_path=log_path, _log=log)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL it if it has not gone within `timeout`."""
        if self.alive:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive:
            self._signal_group(signal.SIGKILL)
            self.popen.wait(5)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


# --- dying with the parent --------------------------------------------------------------------


def _parent_death_argv(
    argv: Sequence[str], signum: int, run_as: tuple[int, int] | None
) -> list[str] | None:
    """`argv` behind the wrapper below, so the kernel sends the child `signum` when we die.

    Our own cleanup (stop(), atexit, the signal handlers of `tulifo dev`) cannot run after a
    SIGKILL or the OOM killer, and every child runs in a session of its own, so without this it
    would keep running and keep its port. A small wrapper rather than `preexec_fn`: the latter
    runs Python between fork and exec, which is unsafe once the parent has threads.

    None (no wrapper) where it cannot work:
    - off Linux: PR_SET_PDEATHSIG exists only there. Elsewhere this is a no-op, and children
      still outlive a launcher that is killed outright;
    - off the main thread: the kernel ties the signal to the *thread* that forked the child, so
      a child forked by a worker thread (`asyncio.to_thread`) would be killed as soon as that
      thread ends. The main thread lives as long as the process.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    account = f"{run_as[0]}:{run_as[1]}" if run_as is not None else "-"
    # -I: no PYTHON* variables, and this file's directory (which holds a `logging.py`) not on
    # sys.path; -S: no site-packages. The wrapper needs only the standard library.
    wrapper = [sys.executable, "-I", "-S", str(Path(__file__).resolve())]
    return [*wrapper, str(os.getpid()), str(int(signum)), account, *argv]


def _become_child_of(parent: int, signum: int, account: str, argv: list[str]) -> NoReturn:
    """The wrapper: take on the account, ask for `signum` on the parent's death, exec `argv`."""
    import ctypes

    if account != "-":
        # Before the prctl: a change of credentials clears the parent-death signal.
        uid, gid = (int(part) for part in account.split(":"))
        os.setgroups([])
        os.setregid(gid, gid)
        os.setreuid(uid, uid)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    # The parent may have died between our fork and the prctl; then no signal will ever come
    # and we have been handed to init (or a subreaper). Start nothing.
    if os.getppid() != parent:
        sys.exit(f"parent {parent} exited before {argv[0]} started; not starting it")
    # The interpreter ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across
    # exec: give the program the defaults Popen(restore_signals=True) gave us.
    for ignored in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(ignored, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - the argv our parent gave us
    except OSError as exc:
        print(f"cannot run {argv[0]}: {exc}", file=sys.stderr, flush=True)
        os._exit(_EXIT_CANNOT_RUN)


if __name__ == "__main__":
    _parent, _signum, _account, *_argv = sys.argv[1:]
    _become_child_of(int(_parent), int(_signum), _account, _argv)
