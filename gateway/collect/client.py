"""What a recording shows of the visitor's browser: a device class and a browser name.

Only these two words are kept with a recording, never the User-Agent itself
(it is a fingerprinting aid). The order of the browser rules matters: Edge,
Opera and Samsung Internet say "Chrome" too, and Chrome says "Safari".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_TABLET = re.compile(r"iPad|Tablet|PlayBook|Silk/|Kindle|Android(?!.*Mobile)", re.IGNORECASE)
_MOBILE = re.compile(r"Mobi|iPhone|iPod|Windows Phone|BlackBerry|Opera Mini", re.IGNORECASE)
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("Edge", r"Edg(e|A|iOS)?/"),
        ("Opera", r"OPR/|Opera"),
        ("Samsung Internet", r"SamsungBrowser/"),
        ("Firefox", r"Firefox/|FxiOS/"),
        ("Chrome", r"Chrome/|CriOS/|Chromium/"),
        ("Safari", r"Version/[\d.]+.*Safari/"),
    )
)


@dataclass(frozen=True, slots=True)
class ClientDescription:
    device: str  # "desktop" | "mobile" | "tablet" | "" when there is no User-Agent
    browser: str  # a name from _BROWSERS, "Other", or "" when there is no User-Agent


def describe_client(user_agent: str, mobile_hint: bool | None = None) -> ClientDescription:
    """Device class and browser name; `mobile_hint` is Sec-CH-UA-Mobile when sent."""
    if len(user_agent) <= _REMEMBERED_LENGTH:
        return _remembered(user_agent, mobile_hint)
    return _describe(user_agent, mobile_hint)


# A visitor's batches all carry the same User-Agent: remember the answers (bounded).
_REMEMBERED_LENGTH = 512


@functools.lru_cache(maxsize=1024)
def _remembered(user_agent: str, mobile_hint: bool | None) -> ClientDescription:
    return _describe(user_agent, mobile_hint)


def _describe(user_agent: str, mobile_hint: bool | None) -> ClientDescription:
    if not user_agent.strip():
        return ClientDescription(device="", browser="")
    if mobile_hint or _MOBILE.search(user_agent):
        device = "tablet" if "iPad" in user_agent else "mobile"
    elif _TABLET.search(user_agent):
        device = "tablet"
    else:
        device = "desktop"
    browser = next((name for name, rule in _BROWSERS if rule.search(user_agent)), "Other")
    return ClientDescription(device=device, browser=browser)
