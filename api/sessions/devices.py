"""What device a session was opened on, read from its User-Agent header.

Enough to let a person recognise their own sessions ("Firefox 126 on Windows", "Safari on iOS
17"), not a full user-agent database: the raw header is kept beside the reading of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

# Longer headers are cut before parsing and storing: real browsers send ~100-250 characters, and
# the header is the caller's to make as long as the server allows.
MAX_USER_AGENT_CHARS = 512

DeviceKind = Literal["desktop", "mobile", "tablet", "bot", "other"]

# First match wins, so a browser built on another comes before it: Edge and Opera say "Chrome"
# too, and Chrome says "Safari".
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"\bOPR/(\d+)")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"\bVersion/(\d+)[^ ]* (?:Mobile/\S+ )?Safari/")),
    ("curl", re.compile(r"^curl/(\d+)")),
    ("HTTPX", re.compile(r"^python-httpx/(\d+)")),
    ("Python Requests", re.compile(r"^python-requests/(\d+)")),
    ("OkHttp", re.compile(r"\bokhttp/(\d+)")),
    ("Postman", re.compile(r"^PostmanRuntime/(\d+)")),
)
_BOT = re.compile(r"bot\b|crawler|spider|slurp", re.IGNORECASE)
_IOS = re.compile(r"\b(iPhone|iPad|iPod)\b.*? OS (\d+)")
_ANDROID = re.compile(r"\bAndroid (\d+)")
_MAC = re.compile(r"\bMac OS X\b")
_WINDOWS = re.compile(r"\bWindows NT\b")
_CHROME_OS = re.compile(r"\bCrOS\b")
_LINUX = re.compile(r"\bLinux\b")


@dataclass(frozen=True)
class Device:
    browser: str | None
    os: str | None
    kind: DeviceKind
    user_agent: str

    @property
    def label(self) -> str:
        """A short name for the device, as a person would put it."""
        if self.browser and self.os:
            return f"{self.browser} on {self.os}"
        return self.browser or self.os or "Unknown device"

    def as_document(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "browser": self.browser,
            "os": self.os,
            "kind": self.kind,
            "userAgent": self.user_agent,
        }


def parse_user_agent(header: str | None) -> Device:
    """Read browser, operating system and kind of device from a User-Agent header."""
    ua = (header or "").strip()[:MAX_USER_AGENT_CHARS]
    browser = _browser(ua)
    os_name, kind = _os_and_kind(ua)
    if _BOT.search(ua):
        kind = "bot"
    elif kind == "other" and browser is not None and os_name is not None:
        kind = "desktop"
    return Device(browser=browser, os=os_name, kind=kind, user_agent=ua)


def _browser(ua: str) -> str | None:
    for name, pattern in _BROWSERS:
        found = pattern.search(ua)
        if found:
            return f"{name} {found.group(1)}"
    return None


def _os_and_kind(ua: str) -> tuple[str | None, DeviceKind]:
    ios = _IOS.search(ua)
    if ios:
        if ios.group(1) == "iPad":
            return f"iPadOS {ios.group(2)}", "tablet"
        return f"iOS {ios.group(2)}", "mobile"
    android = _ANDROID.search(ua)
    if android:
        # Android tablets leave "Mobile" out of the header; phones put it in.
        return f"Android {android.group(1)}", "mobile" if "Mobile" in ua else "tablet"
    if _WINDOWS.search(ua):
        return "Windows", "other"
    if _MAC.search(ua):
        return "macOS", "other"
    if _CHROME_OS.search(ua):
        return "ChromeOS", "other"
    if _LINUX.search(ua):
        return "Linux", "other"
    return None, "other"
