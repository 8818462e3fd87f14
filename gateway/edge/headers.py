"""Header rewriting for both directions of a proxied exchange.

Follows RFC 9110 7.6.1 and Go's httputil.ReverseProxy: hop-by-hop headers and
every header the Connection header names are dropped; framing is never copied
(aiohttp frames each message anew); X-Forwarded-* and Via are set here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from multidict import CIMultiDict

RawHeaders = Sequence[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never copied as received: framing is redone, Host and the forwarding headers are set here.
_REQUEST_DROP = HOP_BY_HOP | {"content-length", "host", "expect"}
_FORWARDING = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip"}
)
_RESPONSE_DROP = HOP_BY_HOP | {"content-length"}


def connection_tokens(raw: RawHeaders) -> frozenset[str]:
    """Header names listed in every Connection header (they are hop-by-hop too)."""
    names: set[str] = set()
    for name, value in raw:
        if name.lower() == b"connection":
            names.update(t.strip().lower() for t in value.decode("latin-1").split(",") if t.strip())
    return frozenset(names)


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)

    def __contains__(self, peer: str | None) -> bool:
        if not self._networks or not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def request_headers(
    raw: RawHeaders,
    *,
    host: str,
    client_host: str,
    peer: str,
    scheme: str,
    trusted: bool,
    via: str,
    keep_upgrade: bool = False,
) -> CIMultiDict[str]:
    """Headers to send to the origin for a request that arrived with `raw`.

    `host` is the Host the origin must see; `client_host` the one the client used.
    `keep_upgrade` keeps Connection/Upgrade for a WebSocket handshake.
    """
    named = connection_tokens(raw)
    out: CIMultiDict[str] = CIMultiDict()
    out["Host"] = host
    prior_for: list[str] = []
    prior: dict[str, str] = {}
    wants_trailers = False
    for name_b, value_b in raw:
        name = name_b.decode("latin-1")
        lower = name.lower()
        value = value_b.decode("latin-1")
        if lower in _FORWARDING:
            if trusted:
                if lower == "x-forwarded-for":
                    prior_for.append(value)
                elif lower in ("x-forwarded-proto", "x-forwarded-host"):
                    prior.setdefault(lower, value)
                else:
                    out.add(name, value)
            continue
        if lower == "te":
            wants_trailers = wants_trailers or "trailers" in value.lower()
            continue
        if lower in _REQUEST_DROP or lower in named:
            continue
        out.add(name, value)
    if wants_trailers:
        out["TE"] = "trailers"
    out["X-Forwarded-For"] = ", ".join([*prior_for, peer]) if prior_for else peer
    out["X-Forwarded-Proto"] = prior.get("x-forwarded-proto", scheme)
    out["X-Forwarded-Host"] = prior.get("x-forwarded-host", client_host)
    append_via(out, via)
    if keep_upgrade:
        out["Connection"] = "Upgrade"
        upgrade = [v.decode("latin-1") for n, v in raw if n.lower() == b"upgrade"]
        if upgrade:
            out["Upgrade"] = ", ".join(upgrade)
    return out


def decode_response_headers(raw: RawHeaders) -> list[tuple[str, str]]:
    """An origin's header fields as text, in order (values as `header_text` makes them)."""
    return [(name.decode("latin-1"), header_text(value)) for name, value in raw]


def response_headers(
    raw: RawHeaders, *, via: str, fields: Sequence[tuple[str, str]] | None = None
) -> CIMultiDict[str]:
    """Origin response headers to relay, in order, repeated ones kept apart.

    `fields`: `raw` already decoded by decode_response_headers (not decoded twice).
    """
    named = connection_tokens(raw)  # from the bytes: names are compared as Latin-1
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in decode_response_headers(raw) if fields is None else fields:
        lower = name.lower()
        if lower in _RESPONSE_DROP or lower in named:
            continue
        out.add(name, value)
    append_via(out, via)
    return out


def header_text(value: bytes) -> str:
    """A response header value as text aiohttp will write back as the same bytes.

    aiohttp encodes header text as UTF-8: UTF-8 bytes come back byte for byte.
    Bytes that are not UTF-8 (old ISO-8859-1) cannot, and are kept readable.
    """
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def append_via(headers: CIMultiDict[str], via: str) -> None:
    existing = headers.getall("Via", [])
    if existing:
        del headers["Via"]
        headers["Via"] = ", ".join([*existing, via])
    else:
        headers["Via"] = via


def has_token(value: str | None, token: str) -> bool:
    """True when a comma-separated header value lists `token` (case-insensitive)."""
    if not value:
        return False
    token = token.lower()
    return any(part.strip().lower() == token for part in value.split(","))


def via_mentions(raw: RawHeaders, pseudonym: str) -> bool:
    """True when a Via header names this node: the request went round in a loop."""
    needle = pseudonym.lower().encode("latin-1")
    for name, value in raw:
        if name.lower() == b"via":
            for hop in value.lower().split(b","):
                parts = hop.split()
                if len(parts) >= 2 and parts[1] == needle:
                    return True
    return False


def client_address(raw: RawHeaders, peer: str, trusted: TrustedProxies) -> str:
    """The visitor's address: the peer, or behind trusted proxies the nearest
    X-Forwarded-For hop that is not itself a trusted proxy."""
    if peer not in trusted:
        return peer
    hops = [
        hop.strip()
        for name, value in raw
        if name.lower() == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer
