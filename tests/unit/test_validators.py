"""Validators, conditional and range requests around injected pages."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gateway.edge.validators import (
    add_vary,
    injected_etag,
    is_navigation,
    mark_injected,
    strip_range_for_navigation,
    translate_if_none_match,
)

# Snippet versions are 10 hex digits (Site.snippet_version).
V = "0123abcdef"
OLD = "fedcba9876"


def headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


# --- injected_etag -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ('"abc"', f'W/"abc-rec{V}"'),
        ('W/"abc"', f'W/"abc-rec{V}"'),
        (' "abc" ', f'W/"abc-rec{V}"'),
        ('""', f'W/"-rec{V}"'),
        (
            '"33a64df551425fcc55e4d42a148795d9f25f89d4"',
            f'W/"33a64df551425fcc55e4d42a148795d9f25f89d4-rec{V}"',
        ),
    ],
)
def test_injected_etag_is_weak_and_versioned(origin: str, expected: str) -> None:
    assert injected_etag(origin, V) == expected


@pytest.mark.parametrize(
    "origin",
    ["abc", '"abc', 'abc"', '"a"b"', '"a", "b"', "", "W/abc", 'w/"abc"', 'X/"abc"'],
)
def test_injected_etag_refuses_garbage(origin: str) -> None:
    assert injected_etag(origin, V) is None


def test_injected_etag_changes_with_the_version() -> None:
    assert injected_etag('"abc"', V) != injected_etag('"abc"', OLD)


# --- translate_if_none_match ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A tag of the current injected page: the origin is asked about its own tag.
        (f'W/"abc-rec{V}"', ('W/"abc"', True)),
        (f'"abc-rec{V}"', ('W/"abc"', True)),
        # A tag of an older snippet: dropped, so the origin answers 200 and we inject anew.
        (f'W/"abc-rec{OLD}"', (None, False)),
        # Foreign tags (the origin's own, e.g. from a non-injected response) pass unchanged.
        ('"abc"', ('"abc"', False)),
        ('W/"abc"', ('W/"abc"', False)),
        ('"abc-recent"', ('"abc-recent"', False)),
        # Lists: each tag on its own merits, in order.
        (f'W/"abc-rec{OLD}", "xyz"', ('"xyz"', False)),
        (f'"x", W/"abc-rec{V}" , W/"def-rec{OLD}"', ('"x", W/"abc"', True)),
        (f'W/"a-rec{OLD}", W/"b-rec{OLD}"', (None, False)),
        ('"a",', ('"a"', False)),
        # "*" and what is not a list of entity tags are left to the origin.
        ("*", ("*", False)),
        ("abc", ("abc", False)),
        ('"abc" junk', ('"abc" junk', False)),
    ],
)
def test_translate_if_none_match(value: str, expected: tuple[str | None, bool]) -> None:
    assert translate_if_none_match(value, V) == expected


def test_translate_round_trips_injected_etag() -> None:
    for origin in ('"abc"', 'W/"abc"'):
        tag = injected_etag(origin, V)
        assert tag is not None
        assert translate_if_none_match(tag, V) == ('W/"abc"', True)
        # The same page after the snippet changed: the old tag is forgotten.
        assert translate_if_none_match(tag, OLD) == (None, False)


# --- is_navigation / strip_range_for_navigation ---------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("Sec-Fetch-Dest", "document")], True),
        ([("Sec-Fetch-Dest", "Document")], True),
        ([("Sec-Fetch-Dest", "iframe")], True),
        ([("Sec-Fetch-Dest", "frame")], True),
        ([("Sec-Fetch-Dest", "video"), ("Accept", "text/html")], False),
        ([("Sec-Fetch-Dest", "empty"), ("Accept", "text/html,*/*")], False),
        ([("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")], True),
        ([("Accept", "*/*")], False),
        ([("Accept", "video/webm,video/*;q=0.9")], False),
        ([], False),
    ],
)
def test_is_navigation(pairs: list[tuple[str, str]], expected: bool) -> None:
    assert is_navigation(headers(*pairs)) is expected


def test_range_of_a_navigation_is_dropped() -> None:
    h = headers(
        ("Sec-Fetch-Dest", "document"),
        ("Range", "bytes=100-"),
        ("If-Range", '"abc"'),
        ("Accept-Language", "en"),
    )
    strip_range_for_navigation(h)
    assert "Range" not in h and "If-Range" not in h
    assert h["Accept-Language"] == "en"


def test_range_of_other_requests_is_kept() -> None:
    h = headers(("Sec-Fetch-Dest", "video"), ("Range", "bytes=0-99"), ("If-Range", '"abc"'))
    strip_range_for_navigation(h)
    assert h["Range"] == "bytes=0-99"
    assert h["If-Range"] == '"abc"'
    untouched = headers(("Accept", "*/*"), ("Range", "bytes=5-"))
    strip_range_for_navigation(untouched)
    assert untouched["Range"] == "bytes=5-"


def test_navigation_without_range_is_unchanged() -> None:
    h = headers(("Accept", "text/html"), ("If-Range", '"abc"'))
    strip_range_for_navigation(h)
    assert list(h.items()) == [("Accept", "text/html"), ("If-Range", '"abc"')]


# --- mark_injected ---------------------------------------------------------------------------


def test_mark_injected_weakens_etag_and_drops_validators() -> None:
    h = headers(
        ("Content-Type", "text/html"),
        ("ETag", '"abc"'),
        ("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ("Content-MD5", "Q2hlY2sgSW50ZWdyaXR5IQ=="),
        ("Accept-Ranges", "bytes"),
        ("Cache-Control", "max-age=60"),
    )
    mark_injected(h, V)
    assert h.getall("ETag") == [f'W/"abc-rec{V}"']
    assert "Last-Modified" not in h
    assert "Content-MD5" not in h
    assert h.getall("Accept-Ranges") == ["none"]
    assert h["Content-Type"] == "text/html"
    assert h["Cache-Control"] == "max-age=60"


def test_mark_injected_drops_digests_of_the_origin_bytes() -> None:
    h = headers(
        ("Digest", "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="),
        ("Content-Digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
        ("Repr-Digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
        ("Content-Type", "text/html"),
    )
    mark_injected(h, V)
    assert list(h.items()) == [("Content-Type", "text/html"), ("Accept-Ranges", "none")]


def test_mark_injected_drops_an_unusable_etag() -> None:
    h = headers(("ETag", "not-quoted"))
    mark_injected(h, V)
    assert "ETag" not in h
    assert h["Accept-Ranges"] == "none"


def test_mark_injected_adds_no_etag() -> None:
    h = headers(("Content-Type", "text/html"))
    mark_injected(h, V)
    assert "ETag" not in h
    assert h["Accept-Ranges"] == "none"


# --- add_vary --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        ([], ["Sec-GPC"]),
        (["Accept-Encoding"], ["Accept-Encoding, Sec-GPC"]),
        (["Accept-Encoding", "Cookie"], ["Accept-Encoding, Cookie, Sec-GPC"]),
        (["Accept-Encoding, Cookie"], ["Accept-Encoding, Cookie, Sec-GPC"]),
        (["sec-gpc"], ["sec-gpc"]),
        (["Accept-Encoding", "Cookie, SEC-GPC"], ["Accept-Encoding", "Cookie, SEC-GPC"]),
        (["*"], ["*"]),
        (["Accept-Encoding, *"], ["Accept-Encoding, *"]),
        ([""], ["Sec-GPC"]),
        (["Sec-GPC-Extra"], ["Sec-GPC-Extra, Sec-GPC"]),
    ],
)
def test_add_vary(vary: list[str], expected: list[str]) -> None:
    h = headers(("Content-Type", "text/html"), *(("Vary", v) for v in vary))
    add_vary(h, "Sec-GPC")
    assert h.getall("Vary") == expected
    assert h["Content-Type"] == "text/html"


def test_add_vary_twice_adds_once() -> None:
    h: CIMultiDict[str] = CIMultiDict()
    add_vary(h, "Accept-Encoding")
    add_vary(h, "Sec-GPC")
    add_vary(h, "accept-encoding")
    assert h.getall("Vary") == ["Accept-Encoding, Sec-GPC"]
