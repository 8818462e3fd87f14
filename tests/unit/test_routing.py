"""Host normalisation and Host -> site routing."""

from __future__ import annotations

import pytest

from gateway.edge.routing import HostRouter, normalize_host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("shop.test", "shop.test"),
        ("Shop.TEST", "shop.test"),
        ("  shop.test  ", "shop.test"),
        ("shop.test:8080", "shop.test"),
        ("shop.test:80", "shop.test"),
        ("shop.test.", "shop.test"),
        ("shop.test.:8443", "shop.test"),
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::1]:8080", "::1"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("[2001:db8:0:0:0:0:0:1]", "2001:db8::1"),
        ("localhost", "localhost"),
    ],
)
def test_normalize_host(value: str, expected: str) -> None:
    assert normalize_host(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        ".",
        ":8080",
        "shop.test:",
        "shop.test:http",
        "shop.test:80:80",
        "shop.test:-1",
        "user@shop.test",
        "shop.test/path",
        "shop.test?q",
        "shop.test#f",
        "shop test",
        "shop\t.test",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[::1]:port",
        "[]",
        "[shop.test]",
        "[127.0.0.1]",
        "::1",
    ],
)
def test_normalize_host_refuses_junk(value: str) -> None:
    assert normalize_host(value) is None


def router() -> HostRouter[str]:
    return HostRouter(
        [
            (["shop.test", "www.shop.test"], "shop"),
            (["*.shop.test"], "shop-wild"),
            (["*.eu.shop.test"], "eu-wild"),
            (["Admin.EU.Shop.Test."], "eu-admin"),
            (["*.other.test", "other.test"], "other"),
            (["127.0.0.1", "[::1]"], "loopback"),
        ]
    )


@pytest.mark.parametrize(
    ("host", "site"),
    [
        ("shop.test", "shop"),
        ("www.shop.test", "shop"),  # exact beats the wildcard that also matches
        ("img.shop.test", "shop-wild"),
        ("a.b.shop.test", "shop-wild"),  # a wildcard covers every level below it
        ("fr.eu.shop.test", "eu-wild"),  # the longest wildcard wins
        ("x.y.eu.shop.test", "eu-wild"),
        ("eu.shop.test", "shop-wild"),  # *.eu.shop.test does not match eu.shop.test
        ("admin.eu.shop.test", "eu-admin"),  # configured names are lowercased, dot dropped
        ("other.test", "other"),
        ("x.other.test", "other"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),  # a bracketed configured address matches normalize_host's form
    ],
)
def test_router_resolves(host: str, site: str) -> None:
    assert router().resolve(host) == site


@pytest.mark.parametrize(
    "host",
    [
        "evil.test",
        "shop.test.evil",
        "evilshop.test",  # the suffix match is on a dot boundary
        ".shop.test",
        "shop",
        "test",
        "127.0.0.2",
        "",
    ],
)
def test_router_refuses_unknown_hosts(host: str) -> None:
    assert router().resolve(host) is None


def test_wildcard_does_not_match_its_bare_domain() -> None:
    only_wild = HostRouter([(["*.shop.test"], "wild")])
    assert only_wild.resolve("shop.test") is None
    assert only_wild.resolve("a.shop.test") == "wild"


def test_longest_wildcard_wins_whatever_the_order() -> None:
    for entries in (
        [(["*.test"], "short"), (["*.a.test"], "long")],
        [(["*.a.test"], "long"), (["*.test"], "short")],
    ):
        wild = HostRouter(entries)
        assert wild.resolve("x.a.test") == "long"
        assert wild.resolve("x.b.test") == "short"


def test_exact_beats_wildcard_whatever_the_order() -> None:
    for entries in (
        [(["*.shop.test"], "wild"), (["www.shop.test"], "exact")],
        [(["www.shop.test"], "exact"), (["*.shop.test"], "wild")],
    ):
        assert HostRouter(entries).resolve("www.shop.test") == "exact"


def test_normalized_client_hosts_route() -> None:
    table = router()
    for raw, site in (
        ("WWW.Shop.Test:8080", "shop"),
        ("img.shop.test.", "shop-wild"),
        ("[::1]:8080", "loopback"),
        ("[0:0::1]", "loopback"),
    ):
        host = normalize_host(raw)
        assert host is not None and table.resolve(host) == site, raw


def test_empty_router() -> None:
    assert HostRouter[str]([]).resolve("shop.test") is None
