"""A development SMTP server: keeps every message as a `.eml` file and logs one line per message.

`tulifo dev` starts it when no SMTP server answers (DESIGN.md §5), so a developer can open the
welcome email in any mail reader. Each message is also appended to `index.jsonl` in the same
directory (from, to, subject, file), one JSON object per line.

    python -m infrastructure.mailcatcher --port 1025 --dir .tulifo/mail
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import json
import logging
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from infrastructure.logging import configure_logging

log = logging.getLogger("tulifo.mailcatcher")

INDEX_FILE = "index.jsonl"
# Larger than any mail we send (a welcome email is a few kB); aiosmtpd refuses bigger messages.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class MailDirectory:
    """aiosmtpd handler: every accepted message becomes `<utc time>-<id>.eml` in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        received = datetime.now(UTC)
        path = self.directory / f"{received:%Y%m%dT%H%M%S.%f}-{uuid.uuid4().hex[:8]}.eml"
        path.write_bytes(content)
        message = email.message_from_bytes(content, policy=email.policy.default)
        entry = {
            "received_at": received.isoformat(timespec="milliseconds"),
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(message.get("subject", "")),
            "file": str(path),
        }
        with (self.directory / INDEX_FILE).open("a", encoding="utf-8") as index:
            index.write(json.dumps(entry) + "\n")
        log.info(
            "mail from %s to %s: %r saved as %s",
            entry["from"],
            ", ".join(entry["to"]),
            entry["subject"],
            path,
            extra={"from": entry["from"], "to": entry["to"], "subject": entry["subject"]},
        )
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, directory: Path) -> None:
    """Accept mail until SIGTERM or SIGINT."""
    handler = MailDirectory(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=MAX_MESSAGE_BYTES, hostname="tulifo-mailcatcher"),
        host=host,
        port=port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("capturing mail on %s:%d into %s", host, port, directory)
    async with server:
        await stop.wait()
    log.info("mail capture stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m infrastructure.mailcatcher",
        description="Accept mail over SMTP and keep each message as an .eml file.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=1025, help="SMTP port (default 1025)")
    parser.add_argument(
        "--dir", type=Path, default=Path(".tulifo/mail"), help="where the .eml files go"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--plain-logs", action="store_true", help="text log lines, not JSON")
    args = parser.parse_args(argv)
    configure_logging(
        service="tulifo-mailcatcher", level=args.log_level, json_lines=not args.plain_logs
    )
    # aiosmtpd narrates every connection at INFO; our own line per message is the useful one.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.dir.resolve()))


if __name__ == "__main__":
    main()
