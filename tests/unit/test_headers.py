"""Header rewriting of proxied requests and responses."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gateway.edge.headers import (
    HOP_BY_HOP,
    TrustedProxies,
    append_via,
    connection_tokens,
    decode_response_headers,
    has_token,
    request_headers,
    response_headers,
    via_mentions,
)

VIA = "1.1 gw-test"


def raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


def forward(
    *pairs: tuple[str, str],
    trusted: bool = False,
    keep_upgrade: bool = False,
    scheme: str = "http",
) -> CIMultiDict[str]:
    return request_headers(
        raw(*pairs),
        host="origin.internal:8000",
        client_host="shop.test",
        peer="203.0.113.9",
        scheme=scheme,
        trusted=trusted,
        via=VIA,
        keep_upgrade=keep_upgrade,
    )


# --- request_headers ---------------------------------------------------------------------


def test_request_sets_host_and_forwarding_headers() -> None:
    out = forward(("Host", "shop.test"), ("Accept", "text/html"))
    assert list(out.items()) == [
        ("Host", "origin.internal:8000"),
        ("Accept", "text/html"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "shop.test"),
        ("Via", VIA),
    ]


def test_request_host_is_replaced_not_added() -> None:
    out = forward(("host", "shop.test"), ("HOST", "evil.test"))
    assert out.getall("Host") == ["origin.internal:8000"]


def test_request_scheme_follows_the_listener() -> None:
    assert forward(scheme="https")["X-Forwarded-Proto"] == "https"


@pytest.mark.parametrize(
    "name",
    [
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Expect",
    ],
)
def test_request_drops_hop_by_hop_and_framing(name: str) -> None:
    out = forward((name, "x"), ("X-Keep", "1"))
    assert name not in out
    assert out["X-Keep"] == "1"


def test_hop_by_hop_set_is_rfc_9110() -> None:
    assert {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    } <= HOP_BY_HOP
    assert "content-type" not in HOP_BY_HOP


def test_request_drops_headers_named_by_connection() -> None:
    out = forward(
        ("Connection", "keep-alive, X-Secret"),
        ("connection", " x-other ,"),
        ("X-Secret", "1"),
        ("X-OTHER", "2"),
        ("X-Kept", "3"),
    )
    assert "X-Secret" not in out and "X-Other" not in out
    assert out["X-Kept"] == "3"
    assert "Connection" not in out


def test_request_keeps_repeated_headers_in_order() -> None:
    out = forward(("X-Rep", "1"), ("Cookie", "a=1"), ("X-Rep", "2"), ("Cookie", "b=2"))
    assert out.getall("X-Rep") == ["1", "2"]
    assert out.getall("Cookie") == ["a=1", "b=2"]


def test_request_keeps_latin1_values_byte_for_byte() -> None:
    out = request_headers(
        [(b"X-Name", b"caf\xe9")],
        host="h",
        client_host="h",
        peer="1.2.3.4",
        scheme="http",
        trusted=False,
        via=VIA,
    )
    assert out["X-Name"].encode("latin-1") == b"caf\xe9"


@pytest.mark.parametrize(
    ("te", "expected"),
    [
        ("trailers", "trailers"),
        ("Trailers", "trailers"),
        ("gzip, trailers", "trailers"),
        ("gzip", None),
        ("deflate;q=0.5", None),
    ],
)
def test_request_te_keeps_only_trailers(te: str, expected: str | None) -> None:
    assert forward(("TE", te)).get("TE") == expected


def test_request_untrusted_peer_forwarding_headers_are_replaced() -> None:
    out = forward(
        ("X-Forwarded-For", "10.9.9.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.test"),
        ("Forwarded", "for=10.9.9.9"),
        ("X-Real-IP", "10.9.9.9"),
    )
    assert out.getall("X-Forwarded-For") == ["203.0.113.9"]
    assert out.getall("X-Forwarded-Proto") == ["http"]
    assert out.getall("X-Forwarded-Host") == ["shop.test"]
    assert "Forwarded" not in out
    assert "X-Real-IP" not in out
    assert "10.9.9.9" not in repr(out)


def test_request_trusted_peer_forwarding_headers_are_extended() -> None:
    out = forward(
        ("X-Forwarded-For", "198.51.100.1, 10.0.0.2"),
        ("X-Forwarded-For", "10.0.0.3"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "www.shop.test"),
        ("Forwarded", "for=198.51.100.1;proto=https"),
        ("X-Real-IP", "198.51.100.1"),
        trusted=True,
    )
    assert out.getall("X-Forwarded-For") == ["198.51.100.1, 10.0.0.2, 10.0.0.3, 203.0.113.9"]
    assert out.getall("X-Forwarded-Proto") == ["https"]
    assert out.getall("X-Forwarded-Host") == ["www.shop.test"]
    assert out["Forwarded"] == "for=198.51.100.1;proto=https"
    assert out["X-Real-IP"] == "198.51.100.1"


def test_request_trusted_peer_without_forwarding_headers() -> None:
    out = forward(trusted=True)
    assert out["X-Forwarded-For"] == "203.0.113.9"
    assert out["X-Forwarded-Proto"] == "http"
    assert out["X-Forwarded-Host"] == "shop.test"


def test_request_via_is_appended() -> None:
    out = forward(("Via", "1.0 fred"), ("Via", "1.1 cdn (edge)"))
    assert out.getall("Via") == ["1.0 fred, 1.1 cdn (edge), 1.1 gw-test"]


def test_request_upgrade_dropped_unless_kept() -> None:
    pairs = (
        ("Connection", "keep-alive, Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    )
    plain = forward(*pairs)
    assert "Connection" not in plain and "Upgrade" not in plain
    kept = forward(*pairs, keep_upgrade=True)
    assert kept.getall("Connection") == ["Upgrade"]
    assert kept.getall("Upgrade") == ["websocket"]
    assert kept["Sec-WebSocket-Key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert "keep-alive" not in kept.values()


# --- response_headers --------------------------------------------------------------------


def test_response_drops_hop_by_hop_length_and_connection_named() -> None:
    out = response_headers(
        raw(
            ("Content-Type", "text/html"),
            ("Content-Length", "10"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive, X-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("X-Hop", "1"),
            ("Trailer", "X-Sum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authenticate", "Basic"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
            ("Content-Encoding", "gzip"),
        ),
        via=VIA,
    )
    assert list(out.items()) == [
        ("Content-Type", "text/html"),
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
        ("Content-Encoding", "gzip"),
        ("Via", VIA),
    ]


def test_response_fields_decoded_once_give_the_same_headers() -> None:
    head = [
        (b"Content-Type", b"text/html"),
        ("X-Caf\u00e9".encode(), b"1"),
        (b"Connection", "close, X-Caf\u00e9".encode()),
        (b"X-Name", "na\u00efve".encode()),
        (b"Key", b"kept"),
        (b"Connection", "\u212aey".encode()),  # the Kelvin sign is not a "k"
    ]
    plain = response_headers(head, via=VIA)
    fields = decode_response_headers(head)
    assert list(response_headers(head, via=VIA, fields=fields).items()) == list(plain.items())
    assert list(plain.items()) == [
        ("Content-Type", "text/html"),
        ("X-Name", "na\u00efve"),
        ("Key", "kept"),
        ("Via", VIA),
    ]


def test_response_via_is_appended() -> None:
    out = response_headers(raw(("Via", "1.1 origin-lb")), via=VIA)
    assert out.getall("Via") == ["1.1 origin-lb, 1.1 gw-test"]


def test_append_via() -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    append_via(headers, VIA)
    assert headers.getall("Via") == [VIA]
    append_via(headers, "1.1 next")
    assert headers.getall("Via") == [f"{VIA}, 1.1 next"]


# --- small helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "token", "expected"),
    [
        ("Upgrade", "upgrade", True),
        ("keep-alive, Upgrade", "upgrade", True),
        ("keep-alive ,  UPGRADE  ", "Upgrade", True),
        ("upgrades", "upgrade", False),
        ("no-upgrade", "upgrade", False),
        ("keep-alive", "upgrade", False),
        ("", "upgrade", False),
        (None, "upgrade", False),
        ('"abc", W/"def"', 'W/"def"', True),
    ],
)
def test_has_token(value: str | None, token: str, expected: bool) -> None:
    assert has_token(value, token) is expected


@pytest.mark.parametrize(
    ("vias", "expected"),
    [
        (["1.1 gw-test"], True),
        (["1.0 fred, 1.1 GW-TEST"], True),
        (["1.0 fred", "HTTP/1.1 gw-test (recording gateway)"], True),
        (["1.1 gw-test-2"], False),
        (["1.1 other (gw-test)"], False),
        (["gw-test"], False),
        ([], False),
    ],
)
def test_via_mentions(vias: list[str], expected: bool) -> None:
    headers = raw(("Host", "shop.test"), *(("Via", v) for v in vias))
    assert via_mentions(headers, "gw-test") is expected


def test_via_mentions_ignores_other_headers() -> None:
    assert not via_mentions(raw(("X-Via", "1.1 gw-test")), "gw-test")


def test_connection_tokens() -> None:
    tokens = connection_tokens(raw(("Connection", "Close, X-A"), ("CONNECTION", "x-b,,")))
    assert tokens == {"close", "x-a", "x-b"}
    assert connection_tokens(raw(("X-Connection", "x-a"))) == frozenset()


def test_trusted_proxies() -> None:
    trusted = TrustedProxies(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
    assert "10.1.2.3" in trusted
    assert "192.0.2.7" in trusted
    assert "2001:db8::5" in trusted
    assert "192.0.2.8" not in trusted
    assert "11.0.0.1" not in trusted
    assert "not-an-ip" not in trusted
    assert None not in trusted
    assert "" not in trusted
    assert "10.0.0.1" not in TrustedProxies([])
