"""An embedded PostgreSQL 16 from the `pgserver` wheel, run in the foreground as our own child.

Why not `pgserver.get_server(dir)` itself: it starts the server through `pg_ctl`, which detaches
postgres into a session of its own, and stops it only from an atexit hook of the *last* process
listed in a pid file inside the data directory. A launcher killed with SIGKILL stays in that list,
and from then on no later run ever stops the server. So we take pgserver's binaries (the part that
makes it "PostgreSQL 16 in about a second") and run `postgres` ourselves under ManagedProcess: it
stops with us (on Linux even when we are SIGKILLed), its backends with it, and it listens on
127.0.0.1 on a free port, so the URL is an ordinary TCP one that every client and `urlsplit`
understands.

PostgreSQL refuses to run as root. As root we do what pgserver does: run initdb and postgres as
the system user `pgserver` (created with `useradd` when missing), make it own the data directory,
and let it traverse the directories above (o+x), naming every directory we changed in a WARNING.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg

from infrastructure.local.probes import LocalServiceError, create_database, with_database
from infrastructure.processes import ManagedProcess, free_port

log = logging.getLogger("tulifo.local.postgres")

# The system user pgserver itself runs PostgreSQL as when started by root.
USER_WHEN_ROOT = "pgserver"
# initdb takes ~0.5 s and startup ~0.1 s here; 30 s covers a cold disk on a slow laptop.
READY_DEADLINE_S = 30.0
# A leftover server from a killed run gets this long for a fast shutdown before SIGKILL.
LEFTOVER_STOP_S = 10.0


def binaries() -> Path:
    """pgserver's bin directory, found without importing pgserver (its import has side effects)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServiceError(
            "no PostgreSQL answers and pgserver is not installed: "
            "pip install 'tulifo-gig[local]', or set TULIFO_DATABASE_URL to a server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int


def _account() -> _Account | None:
    """Who postgres runs as: ourselves, or the `pgserver` system user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(USER_WHEN_ROOT)
    except KeyError:
        log.warning(
            "running as root: creating system user %r to run PostgreSQL (it refuses root)",
            USER_WHEN_ROOT,
        )
        try:
            useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            subprocess.run(  # noqa: S603 - fixed arguments
                [*useradd, USER_WHEN_ROOT],
                check=True,
                capture_output=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise LocalServiceError(
                f"running as root, and PostgreSQL refuses root; could not create the system "
                f"user {USER_WHEN_ROOT!r} ({exc}). Run as a normal user, create that user, or "
                "set TULIFO_DATABASE_URL to a running server"
            ) from exc
        entry = pwd.getpwnam(USER_WHEN_ROOT)
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _let_traverse(path: Path) -> None:
    """Give others o+x on every directory above `path` that lacks it, and say so."""
    changed = []
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)
            changed.append(str(parent))
    if changed:
        log.warning(
            "running as root: added o+x to %s so user %r can reach its data directory",
            ", ".join(changed),
            USER_WHEN_ROOT,
        )


def _initdb(data_dir: Path, account: _Account | None, log_file: IO[bytes]) -> None:
    """Initialise a sibling directory, then rename it: a Ctrl-C never leaves half a cluster."""
    staging = data_dir.with_name(data_dir.name + ".initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if account is not None:
        os.chown(staging, account.uid, account.gid)
    log.info("initialising a PostgreSQL cluster in %s", data_dir)
    options = ["--auth=trust", "-U", "postgres", "--encoding=UTF8", "--no-locale"]
    subprocess.run(  # noqa: S603 - our binary, our arguments
        [str(binaries() / "initdb"), "-D", str(staging), *options, "--no-instructions"],
        check=True,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        user=account.uid if account else None,
        group=account.gid if account else None,
        extra_groups=[] if account else None,
    )
    staging.rename(data_dir)


def _stop_leftover(data_dir: Path) -> None:
    """A server still running on this directory belongs to a launcher that was killed: stop it."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # stale file; postgres removes it itself on start
    except PermissionError:
        pass
    log.warning(
        "a PostgreSQL (pid %d) from an earlier run still serves %s; stopping it", pid, data_dir
    )
    os.kill(pid, signal.SIGINT)  # fast shutdown
    end = time.monotonic() + LEFTOVER_STOP_S
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _lock(state_dir: Path) -> IO[bytes]:
    """One launcher per data directory; the lock goes when our process does, however it ends."""
    handle = (state_dir / "postgres.lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise LocalServiceError(
            f"another tulifo launcher runs the embedded PostgreSQL in {state_dir}; stop it, "
            "or give this one its own --state-dir"
        ) from exc
    return handle


async def _wait_ready(admin_dsn: str, proc: ManagedProcess, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            conn = await asyncpg.connect(admin_dsn, timeout=2)
        except (OSError, asyncpg.CannotConnectNowError, TimeoutError):
            if not proc.alive:
                raise LocalServiceError(
                    f"embedded PostgreSQL exited with {proc.popen.returncode}; see {proc.log_path}"
                ) from None
            if time.monotonic() > end:
                raise LocalServiceError(
                    f"embedded PostgreSQL not ready within {deadline_s:.0f}s; see {proc.log_path}"
                ) from None
            await asyncio.sleep(0.05)
        else:
            await conn.close()
            return


def start_postgres(
    state_dir: Path,
    *,
    database: str,
    log_path: Path,
    register: Callable[[ManagedProcess], None],
    on_release: Callable[[Callable[[], None]], None],
) -> str:
    """Start PostgreSQL on `state_dir/postgres` and return a URL to `database` (created if new).

    `register` receives the process as soon as it exists, so a Ctrl-C during startup stops it;
    `on_release` receives a callback that drops the data-directory lock after the server stopped.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(state_dir)
    on_release(lock.close)
    data_dir = (state_dir / "postgres").resolve()
    account = _account()
    if account is not None:
        _let_traverse(data_dir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "PG_VERSION").exists():
        if data_dir.exists() and any(data_dir.iterdir()):
            raise LocalServiceError(
                f"{data_dir} is not empty and holds no PostgreSQL cluster; move it away"
            )
        if data_dir.exists():
            data_dir.rmdir()
        with log_path.open("ab") as log_file:
            _initdb(data_dir, account, log_file)
    _stop_leftover(data_dir)
    port = free_port()
    # TCP on 127.0.0.1 only; no unix socket (its path length limit bites in deep checkouts).
    listen = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
    proc = ManagedProcess.spawn(
        "postgres (pgserver)",
        [str(binaries() / "postgres"), "-D", str(data_dir), "-p", str(port), *listen],
        log_path=log_path,
        run_as=(account.uid, account.gid) if account else None,
        # Fast shutdown if we die: SIGTERM's smart shutdown would wait for every client to
        # disconnect, a developer's psql session included, and keep the port meanwhile.
        parent_death_signal=signal.SIGINT,
    )
    register(proc)
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    asyncio.run(_wait_ready(admin, proc, READY_DEADLINE_S))
    url = with_database(admin, database)
    if asyncio.run(create_database(url)):
        log.info("created database %s in the embedded PostgreSQL", database)
    return url
