"""Device class and browser name from real User-Agent strings."""

from __future__ import annotations

import pytest

from gateway.collect.client import describe_client

CASES = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "desktop",
        "Chrome",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        "desktop",
        "Edge",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Safari/605.1.15",
        "desktop",
        "Safari",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "desktop",
        "Firefox",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "mobile",
        "Safari",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
        "mobile",
        "Chrome",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Mobile/15E148 Safari/604.1",
        "tablet",
        "Safari",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "mobile",
        "Samsung Internet",
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "tablet",
        "Chrome",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 OPR/105.0.0.0",
        "desktop",
        "Opera",
    ),
    ("curl/8.4.0", "desktop", "Other"),
    ("", "", ""),
]


@pytest.mark.parametrize(("agent", "device", "browser"), CASES)
def test_describe_client(agent: str, device: str, browser: str) -> None:
    described = describe_client(agent)
    assert (described.device, described.browser) == (device, browser)


def test_client_hint_marks_mobile() -> None:
    agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36"
    assert describe_client(agent, mobile_hint=True).device == "mobile"
    assert describe_client(agent, mobile_hint=False).device == "desktop"


def test_answers_are_the_same_remembered_or_not() -> None:
    phone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Safari/605.1"
    first = describe_client(phone)
    assert describe_client(phone) == first == describe_client(phone, None)
    assert first.device == "mobile" and first.browser == "Safari"
    # Longer than what is remembered: computed each time, the same rules.
    padded = phone + " " + "x" * 600
    assert describe_client(padded) == first
    assert describe_client(phone, mobile_hint=False).device == "mobile"  # the UA says so
