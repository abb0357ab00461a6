"""What every `tulifo` command shares: the error a user can fix, and logging named by role.

Its own module rather than infrastructure/cli.py: `python -m infrastructure.cli` runs cli.py as
`__main__`, so a command module importing `infrastructure.cli` would load a second copy with a
second CommandError class, one that `main()` does not catch.
"""

from __future__ import annotations

from infrastructure.logging import configure_logging
from infrastructure.settings import Settings


class CommandError(Exception):
    """A failure the user can fix; printed without a traceback."""


def configure_command_logging(settings: Settings, role: str) -> None:
    configure_logging(
        service=f"{settings.service_name}-{role}",
        level=settings.log_level,
        json_lines=settings.log_json,
    )
