"""The server-side recording policy: every refusal, their order, sampling and consent."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from typing import Any
from urllib.parse import quote

import pytest

from gateway.collect.policy import BatchContext, Refusal, check_static, consent_given, sampled_in
from gateway.config import RecordingConfig, parse_config
from gateway.edge.sites import Site, build_site

DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def make_site(recording: dict[str, Any] | None = None) -> Site:
    """A site whose [sites.recording] table holds `recording` (dotted keys allowed)."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in (recording or {}).items()]
    text = "\n".join(
        [
            "[[sites]]",
            'key = "shop"',
            'hosts = ["shop.test"]',
            'origin = "http://127.0.0.1:8000"',
            "[sites.recording]",
            *lines,
        ]
    )
    config = parse_config(text, env={})
    return build_site(config.sites[0], prefix="/__rec/", recorder_digest="x")


def make_ctx(site: Site, **changes: Any) -> BatchContext:
    ctx = BatchContext(
        site=site,
        url_path="/",
        meta_paths=["/"],
        peer="198.51.100.7",
        user_agent=DESKTOP,
        client_hints_mobile=None,
        gpc=False,
        consent_flag=None,
        cookies={},
        visitor="v-1",
        session="s-1",
        has_activity=True,
    )
    return dataclasses.replace(ctx, **changes)


def test_the_reasons_are_the_protocol_words() -> None:
    assert [r.value for r in Refusal] == [
        "disabled",
        "consent",
        "gpc",
        "excluded",
        "quota",
        "blocked",
        "mobile",
        "bot",
        "sampled_out",
        "no_activity",
    ]
    assert json.dumps({"reason": Refusal.SAMPLED_OUT}) == '{"reason": "sampled_out"}'


def test_a_default_site_records_an_ordinary_batch() -> None:
    assert check_static(make_ctx(make_site())) is None


def test_the_reasons_come_in_order() -> None:
    # Everything is wrong at first; each step puts right the reason just reported.
    recording: dict[str, Any] = {
        "enabled": False,
        "block.ips": ["203.0.113.0/24"],
        "record_mobile": False,
        "consent": "opt-in",
        "exclude": ["/admin/*"],
        "sample_rate": 0.0,
    }
    fields: dict[str, Any] = {
        "user_agent": GOOGLEBOT + " Android",
        "peer": "203.0.113.9",
        "gpc": True,
        "url_path": "/admin/users",
    }
    steps: list[tuple[Refusal | None, dict[str, Any], dict[str, Any]]] = [
        (Refusal.DISABLED, {"enabled": True}, {}),
        (Refusal.BOT, {}, {"user_agent": PHONE}),
        (Refusal.BLOCKED, {}, {"peer": "198.51.100.7"}),
        (Refusal.MOBILE, {}, {"user_agent": DESKTOP}),
        (Refusal.GPC, {}, {"gpc": False}),
        (Refusal.CONSENT, {}, {"consent_flag": True}),
        (Refusal.EXCLUDED, {}, {"url_path": "/shop"}),
        (Refusal.SAMPLED_OUT, {"sample_rate": 1.0}, {}),
        (None, {}, {}),
    ]
    for expected, fix_recording, fix_fields in steps:
        assert check_static(make_ctx(make_site(recording), **fields)) == expected
        recording.update(fix_recording)
        fields.update(fix_fields)


def test_blocked_by_user_agent_pattern_and_by_visitor_id() -> None:
    site = make_site({"block.user_agents": ["HeadlessChrome"], "block.visitors": ["v-bad"]})
    headless = DESKTOP.replace("Chrome/", "HeadlessChrome/")
    assert check_static(make_ctx(site, user_agent=headless)) == Refusal.BLOCKED
    assert check_static(make_ctx(site, visitor="v-bad")) == Refusal.BLOCKED
    assert check_static(make_ctx(site, visitor="v-good")) is None
    assert check_static(make_ctx(site, visitor=None)) is None


@pytest.mark.parametrize(
    ("user_agent", "hint", "expected"),
    [
        (DESKTOP, True, Refusal.MOBILE),  # Sec-CH-UA-Mobile: ?1 on a desktop-looking UA
        (DESKTOP, False, None),
        (DESKTOP, None, None),
        (PHONE, None, Refusal.MOBILE),
        # Chrome on an Android tablet sends ?0; injection already treats it as mobile.
        (PHONE.replace(" Mobile", ""), False, Refusal.MOBILE),
    ],
)
def test_mobile_from_the_user_agent_or_the_client_hint(
    user_agent: str, hint: bool | None, expected: Refusal | None
) -> None:
    site = make_site({"record_mobile": False})
    ctx = make_ctx(site, user_agent=user_agent, client_hints_mobile=hint)
    assert check_static(ctx) == expected
    assert check_static(dataclasses.replace(ctx, site=make_site())) is None


def test_gpc_counts_only_when_the_site_respects_it() -> None:
    assert check_static(make_ctx(make_site(), gpc=True)) == Refusal.GPC
    assert check_static(make_ctx(make_site({"respect_gpc": False}), gpc=True)) is None


def test_an_excluded_page_reached_by_an_spa_navigation_is_caught_by_its_meta_path() -> None:
    site = make_site({"exclude": ["/checkout/*"]})
    ctx = make_ctx(site, url_path="/cart", meta_paths=["/cart", "/checkout/pay"])
    assert check_static(ctx) == Refusal.EXCLUDED
    assert check_static(dataclasses.replace(ctx, meta_paths=["/cart"])) is None


def test_sampled_out_by_the_sample_rate() -> None:
    site = make_site({"sample_rate": 0.5})
    inside = next(s for s in (f"s-{i}" for i in range(100)) if sampled_in(s, 0.5))
    outside = next(s for s in (f"s-{i}" for i in range(100)) if not sampled_in(s, 0.5))
    assert check_static(make_ctx(site, session=inside)) is None
    assert check_static(make_ctx(site, session=outside)) == Refusal.SAMPLED_OUT


# -- sampling -----------------------------------------------------------------


@pytest.mark.parametrize("session", ["a", "s-1", "3f2c9a1e-77b0-4c3e-9d51-0a6f5e2b8c11"])
def test_sampling_follows_the_documented_rule(session: str) -> None:
    # The browser computes the same: first 8 hex of sha256(session) / 2**32 < rate.
    fraction = int(hashlib.sha256(session.encode()).hexdigest()[:8], 16) / 2**32
    assert not sampled_in(session, fraction)
    assert sampled_in(session, fraction + 1e-9)


def test_sampling_is_the_same_for_every_batch_of_a_session() -> None:
    assert all(sampled_in("s-42", 0.5) == sampled_in("s-42", 0.5) for _ in range(10))


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5, 0.9])
def test_sampling_takes_about_the_rate(rate: float) -> None:
    rng = random.Random(20261130)
    sessions = [f"{rng.getrandbits(128):032x}" for _ in range(10_000)]
    taken = sum(sampled_in(s, rate) for s in sessions) / len(sessions)
    assert abs(taken - rate) <= 0.02


def test_rate_one_takes_all_and_rate_zero_none() -> None:
    sessions = [f"s-{i}" for i in range(2000)]
    assert all(sampled_in(s, 1.0) for s in sessions)
    assert not any(sampled_in(s, 0.0) for s in sessions)


# -- consent ------------------------------------------------------------------

COOKIE = "site_consent"
ACCEPTED = "yes"
COOKIES = {"absent": {}, "accepts": {COOKIE: ACCEPTED}, "refuses": {COOKIE: "no"}}


def recording(
    consent: str, cookie: str = COOKIE, values: tuple[str, ...] = (ACCEPTED,)
) -> RecordingConfig:
    return make_site(
        {"consent": consent, "consent_cookie.name": cookie, "consent_cookie.values": list(values)}
    ).config.recording


def expected_consent(mode: str, flag: bool | None, cookie: str) -> bool:
    if flag is False:  # an explicit withdrawal, in every mode
        return False
    if mode == "none":
        return True
    if cookie == "refuses":
        return False
    if mode == "opt-out":
        return True
    return flag is True or cookie == "accepts"


@pytest.mark.parametrize("mode", ["none", "opt-in", "opt-out"])
@pytest.mark.parametrize("flag", [None, True, False])
@pytest.mark.parametrize("cookie", ["absent", "accepts", "refuses"])
def test_consent_matrix(mode: str, flag: bool | None, cookie: str) -> None:
    rec = recording(mode)
    assert consent_given(rec, flag, COOKIES[cookie]) == expected_consent(mode, flag, cookie)


def test_consent_matrix_spelled_out() -> None:
    # The cases that matter most, written out rather than derived.
    assert consent_given(recording("none"), None, {COOKIE: "no"})
    assert not consent_given(recording("none"), False, {})  # withdrawal via __rec
    assert not consent_given(recording("opt-in"), None, {})
    assert consent_given(recording("opt-in"), True, {})
    assert consent_given(recording("opt-in"), None, {COOKIE: "yes"})
    assert not consent_given(recording("opt-in"), False, {COOKIE: "yes"})  # withdrawal
    assert consent_given(recording("opt-out"), None, {})
    assert not consent_given(recording("opt-out"), None, {COOKIE: "no"})
    assert not consent_given(recording("opt-out"), True, {COOKIE: "no"})
    assert not consent_given(recording("opt-out"), False, {})


def test_opt_in_without_a_consent_cookie_needs_the_flag() -> None:
    rec = make_site({"consent": "opt-in"}).config.recording
    assert not consent_given(rec, None, {COOKIE: "yes"})
    assert consent_given(rec, True, {})


def test_the_consent_refusal_from_check_static() -> None:
    site = make_site({"consent": "opt-in"})
    assert check_static(make_ctx(site)) == Refusal.CONSENT
    assert check_static(make_ctx(site, consent_flag=True)) is None


COOKIEYES = (
    "consentid:dGVzdGNvbnNlbnQ,consent:yes,action:yes,necessary:yes,"
    "functional:yes,analytics:{analytics},performance:no,advertisement:no,other:no"
)
COOKIEBOT = (
    "{{stamp:%27xKpm0OaQ2aZxS4ua1mvYIRLg3Vb1TF5DeVd8VR6PiQ0eUuu3RKnQXg==%27%2C"
    "necessary:true%2Cpreferences:true%2Cstatistics:{statistics}%2Cmarketing:false%2C"
    "method:%27explicit%27%2Cver:1%2Cutc:1764547200000%2Cregion:%27fr%27}}"
)
ONETRUST = (
    "isGpcEnabled=0&datestamp=Mon+Nov+30+2026+23%3A59%3A00+GMT%2B0100&version=202409.1.0"
    "&browserGpcFlag=0&isIABGlobal=false&hosts=&consentId=0b3c2f3e-1d2a-4c55-9a0e-77f1c2d3e4f5"
    "&interactionCount=1&landingPath=NotLandingPage"
    "&groups={groups}&AwaitingReconsent=false"
)


@pytest.mark.parametrize(
    ("name", "values", "accepting", "refusing"),
    [
        (
            "cookieyes-consent",
            ["analytics:yes"],
            COOKIEYES.format(analytics="yes"),
            COOKIEYES.format(analytics="no"),
        ),
        (
            "CookieConsent",
            ["statistics:true", "-1"],
            COOKIEBOT.format(statistics="true"),
            COOKIEBOT.format(statistics="false"),
        ),
        # Cookiebot writes -1 where no consent is needed (outside the EU).
        ("CookieConsent", ["statistics:true", "-1"], "-1", "0"),
        (
            "OptanonConsent",
            ["C0002:1"],
            ONETRUST.format(groups=quote("C0001:1,C0002:1,C0003:0,C0004:0", safe="")),
            ONETRUST.format(groups=quote("C0001:1,C0002:0,C0003:0,C0004:0", safe="")),
        ),
        # The accepted group first: it follows `groups=` inside its item.
        (
            "OptanonConsent",
            ["C0002:1"],
            ONETRUST.format(groups=quote("C0002:1,C0003:0", safe="")),
            ONETRUST.format(groups=quote("C0002:0,C0003:1", safe="")),
        ),
        ("prefs", ["analytics=1"], "ads=0|analytics=1", "ads=1|analytics=0"),
        ("prefs", ["analytics=1"], quote("ads=0&analytics=1"), "ads=0&analytics=10"),
    ],
)
def test_consent_cookies_of_real_cmps(
    name: str, values: list[str], accepting: str, refusing: str
) -> None:
    for mode in ("opt-in", "opt-out"):
        rec = recording(mode, cookie=name, values=tuple(values))
        assert consent_given(rec, None, {name: accepting}), (mode, accepting)
        assert not consent_given(rec, None, {name: refusing}), (mode, refusing)


@pytest.mark.parametrize(
    "value",
    [
        "analytics:yesno",  # part of an item
        "xanalytics:yes",
        "consent:yes,analytics:no",
        "analytics:yes".upper(),  # compared exactly
        "groups=analytics",  # `name=rest` offers rest only when it is a key:value pair
    ],
)
def test_consent_cookie_values_that_do_not_accept(value: str) -> None:
    rec = recording("opt-in", values=("analytics:yes", "analytics"))
    assert not consent_given(rec, None, {COOKIE: value})


def test_consent_cookie_whole_value_and_items_are_decoded() -> None:
    rec = recording("opt-in", values=("analytics:yes",))
    assert consent_given(rec, None, {COOKIE: "analytics%3Ayes"})
    assert consent_given(rec, None, {COOKIE: "necessary%3Ayes%2Canalytics%3Ayes"})
    assert consent_given(rec, None, {COOKIE: '"analytics:yes"'})
