"""The mail catcher keeps every message as an .eml file and logs one JSON line per message."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

from infrastructure.processes import free_port, wait_for_port


def test_each_message_becomes_an_eml_file_and_one_json_log_line(tmp_path: Path) -> None:
    port = free_port()
    mail_dir = tmp_path / "mail"
    log_path = tmp_path / "mailcatcher.log"
    address = ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infrastructure.mailcatcher", *address, "--dir", str(mail_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, deadline_s=30)
        message = EmailMessage()
        message["From"] = "Tulifo Gig <no-reply@tulifo.local>"
        message["To"] = "bob@example.com"
        message["Subject"] = "Welcome, Bob — confirm your email"
        message.set_content("Hi Bob")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(message, to_addrs=["bob@example.com", "audit@example.com"])

        end = time.monotonic() + 20
        while not list(mail_dir.glob("*.eml")):
            assert time.monotonic() < end, "no .eml file appeared"
            time.sleep(0.05)
        [eml] = list(mail_dir.glob("*.eml"))
        assert "Hi Bob" in eml.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    [captured] = [line for line in lines if "subject" in line]
    assert captured["from"] == "no-reply@tulifo.local"
    assert captured["to"] == ["bob@example.com", "audit@example.com"]
    assert captured["subject"] == "Welcome, Bob — confirm your email"
