"""The SMTP sender: what it sends, and which failures it calls temporary or final."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from bridges.email import (
    EmailRejected,
    EmailUnavailable,
    OutgoingEmail,
    SmtpMailer,
    message_id_for,
)
from infrastructure.processes import free_port
from infrastructure.settings import Settings
from tests.mail import MailCapture


def an_email(to: str = "ann@example.com") -> OutgoingEmail:
    return OutgoingEmail(
        to=to, subject="Hello", text="Body text\n", message_id="<e1.welcome@tulifo.local>"
    )


def smtp_settings(port: int) -> Settings:
    return Settings(smtp_host="127.0.0.1", smtp_port=port, mail_from="Tulifo <hi@tulifo.test>")


class _RefuseRecipients:
    async def handle_RCPT(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return "550 5.1.1 no such mailbox"


@pytest.fixture
def refusing_smtp() -> Iterator[int]:
    port = free_port()
    controller = Controller(_RefuseRecipients(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def test_a_message_id_is_derived_from_the_event_and_the_sender_domain() -> None:
    event_id = uuid.uuid4()
    first = message_id_for(event_id, "welcome", "Tulifo <hi@tulifo.test>")
    assert first == f"<{event_id}.welcome@tulifo.test>"
    assert message_id_for(event_id, "welcome", "Tulifo <hi@tulifo.test>") == first
    assert message_id_for(event_id, "receipt", "Tulifo <hi@tulifo.test>") != first


async def test_a_message_reaches_the_server_with_its_headers(smtp: MailCapture) -> None:
    await SmtpMailer(smtp_settings(smtp.port)).send(an_email())

    [message] = smtp.to("ann@example.com")
    assert message["From"] == "Tulifo <hi@tulifo.test>"
    assert message["Subject"] == "Hello"
    assert message["Message-ID"] == "<e1.welcome@tulifo.local>"
    assert "Body text" in message.get_payload()


async def test_an_html_part_travels_as_the_alternative_to_the_text(smtp: MailCapture) -> None:
    email = OutgoingEmail(
        to="ann@example.com",
        subject="Héllo",
        text="Plain “text”\n",
        html="<p>Rich &amp; “text”</p>\n",
        message_id="<e2.review@tulifo.local>",
    )
    await SmtpMailer(smtp_settings(smtp.port)).send(email)

    [message] = smtp.to("ann@example.com")
    assert message.get_content_type() == "multipart/alternative"
    parts = {
        # SMTP lines end in CRLF on the wire.
        part.get_content_type(): part.get_payload(decode=True).decode().replace("\r\n", "\n")
        for part in message.get_payload()
    }
    assert parts == {"text/plain": "Plain “text”\n", "text/html": "<p>Rich &amp; “text”</p>\n"}


async def test_an_unreachable_server_is_temporary() -> None:
    with pytest.raises(EmailUnavailable):
        await SmtpMailer(smtp_settings(free_port()), timeout_s=2).send(an_email())


async def test_a_refused_recipient_is_final(refusing_smtp: int) -> None:
    with pytest.raises(EmailRejected, match="550"):
        await SmtpMailer(smtp_settings(refusing_smtp)).send(an_email())
