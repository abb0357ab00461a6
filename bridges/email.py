"""Outgoing email over SMTP (aiosmtplib): building messages and sending them.

Failures come out as two kinds, so a caller knows whether trying again can help:
`EmailUnavailable` (connection refused, timeout, 4xx, our own login or sender refused) and
`EmailRejected` (a 5xx to this recipient or this content: the server will never accept it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Protocol

import aiosmtplib

from infrastructure.settings import Settings

# Per SMTP step (connect, each command). A healthy relay answers in milliseconds; 10 s of silence
# means it is not healthy, and the agent's retry loop takes over.
SMTP_TIMEOUT_S = 10.0


class EmailUnavailable(Exception):
    """The message was not accepted this time; sending it again later may work."""


class EmailRejected(Exception):
    """The server refused the message for good (5xx); sending it again will not help."""


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    # Derived from the event that caused the mail, so a resend is recognisably the same message.
    message_id: str
    # An HTML alternative to `text`, already escaped by its template; None sends text only.
    html: str | None = None


class Mailer(Protocol):
    async def send(self, email: OutgoingEmail) -> None: ...


def message_id_for(event_id: uuid.UUID, purpose: str, mail_from: str) -> str:
    """A Message-ID that is the same every time one event causes one kind of mail."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "tulifo.local"
    return f"<{event_id}.{purpose}@{domain}>"


def build_message(email: OutgoingEmail, *, mail_from: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message.set_content(email.text)
    if email.html is not None:
        # multipart/alternative: clients show the HTML part and fall back to the text one.
        message.add_alternative(email.html, subtype="html")
    return message


class SmtpMailer:
    """Sends one message per SMTP connection: a few mails per gig event need no pool."""

    def __init__(self, settings: Settings, *, timeout_s: float = SMTP_TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s

    async def send(self, email: OutgoingEmail) -> None:
        settings = self.settings
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        try:
            await aiosmtplib.send(
                build_message(email, mail_from=settings.mail_from),
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=password,
                start_tls=settings.smtp_starttls,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(refusal.code >= 500 for refusal in exc.recipients):
                raise EmailRejected(f"recipient refused: {exc}") from exc
            raise EmailUnavailable(f"recipient deferred: {exc}") from exc
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as exc:
            # Refusals of this recipient or this content are final when permanent (5xx). A 5xx
            # to our login or sender address is our configuration, retried until it is fixed.
            if exc.code >= 500:
                raise EmailRejected(f"{exc.code} {exc.message}") from exc
            raise EmailUnavailable(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise EmailUnavailable(f"{type(exc).__name__}: {exc}") from exc
