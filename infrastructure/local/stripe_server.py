"""localstripe in memory on 127.0.0.1: the child process `infrastructure.local.stripe` starts.

Why not localstripe's own `localstripe --port N --from-scratch`:

- It pickles its whole store to the fixed path /tmp/localstripe.pickle after every write. No flag
  or environment variable moves it; `--from-scratch` only skips loading it at start. So every run
  on a machine overwrites one shared file, a file another user left there makes every write fail
  (PermissionError, an HTTP 500), and a run without `--from-scratch` loads another run's payments.
  Here the store never touches the disk, so two runs cannot collide.
- It listens on `::`, every interface (and cannot start where IPv6 is off); a fake Stripe that
  confirms payments and fires signed webhooks at our API stays on 127.0.0.1.

localstripe is GPL-3.0: like SecantusDB it stays in the `local` extra, a development tool only.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any, Final

# Open connections (a webhook in flight) get this long once SIGTERM arrives; aiohttp's default
# is 60 s, longer than ManagedProcess.stop waits before SIGKILL.
SHUTDOWN_TIMEOUT_S: Final = 2.0


def _in_memory(store: Any) -> None:
    """Replaces localstripe's pickling to /tmp/localstripe.pickle (see the module docstring)."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m infrastructure.local.stripe_server",
        description="localstripe, in memory, on 127.0.0.1",
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    from aiohttp import web
    from localstripe import resources, server

    store_class = resources.Store
    if not (hasattr(store_class, "dump_to_disk") and hasattr(store_class, "try_load_from_disk")):
        raise SystemExit(
            "this localstripe no longer has Store.dump_to_disk: check where it keeps its store "
            "before running it (infrastructure/local/stripe_server.py)"
        )
    store_class.dump_to_disk = _in_memory
    store_class.try_load_from_disk = _in_memory

    # As localstripe's own script does: requests and webhook deliveries, one line each.
    access_log = logging.getLogger("aiohttp.access")
    access_log.setLevel(logging.DEBUG)
    access_log.addHandler(logging.StreamHandler())
    web.run_app(
        server.app,
        host="127.0.0.1",
        port=args.port,
        access_log=access_log,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )


if __name__ == "__main__":
    main()
