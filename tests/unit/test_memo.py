"""Remembered pure functions of short strings (gateway/memo.py)."""

from __future__ import annotations

from gateway.edge.admission import normalize_path
from gateway.edge.routing import normalize_host
from gateway.memo import remember


def test_short_inputs_are_computed_once_and_long_ones_every_time() -> None:
    calls: list[str] = []

    @remember(longest=8, maxsize=4)
    def upper(value: str) -> str:
        calls.append(value)
        return value.upper()

    assert [upper("abc"), upper("abc"), upper("abc")] == ["ABC"] * 3
    assert calls == ["abc"]
    long = "x" * 9
    assert upper(long) == long.upper() and upper(long) == long.upper()
    assert calls == ["abc", long, long]
    assert upper.cache_info().currsize == 1  # type: ignore[attr-defined]


def test_what_is_kept_stays_bounded() -> None:
    @remember(longest=16, maxsize=4)
    def same(value: str) -> str:
        return value

    for number in range(1000):
        assert same(f"path-{number}") == f"path-{number}"
    assert same.cache_info().currsize == 4  # type: ignore[attr-defined]


def test_remembered_parsers_answer_as_before_for_repeated_and_long_inputs() -> None:
    for _ in range(2):
        assert normalize_path("/a/./b/../c;jsessionid=1/") == "/a/c/"
        assert normalize_host("Shop.Example:8080") == "shop.example"
        assert normalize_host("bad host") is None
    long_path = "/x" * 400 + "/../y"
    assert normalize_path(long_path) == "/x" * 399 + "/y"
