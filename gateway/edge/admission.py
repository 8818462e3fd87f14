"""Checks a request must pass before anything is sent to an origin.

Decides the site from Host (or the authority of an absolute-form target),
refuses what would make the gateway an open proxy, enforces size limits with
the right status codes, detects loops, and spots the reserved prefix however
the path is spelled (an origin would decode and normalise it).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from aiohttp import web

from gateway.edge.errors import json_error
from gateway.edge.headers import via_mentions
from gateway.edge.routing import HostRouter, normalize_host
from gateway.edge.sites import Site
from gateway.memo import remember

_ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


@dataclass(frozen=True, slots=True)
class Admitted:
    site: Site
    # Host as the client named it (Host header or absolute-form authority).
    client_host: str
    # Request target in origin-form, exactly as received: forwarded byte for byte.
    target: str
    # Decoded, normalised path, for exclusion rules.
    path: str
    reserved: bool


@dataclass(frozen=True, slots=True)
class Limits:
    request_line: int
    headers: int
    body: int


@remember(longest=512, maxsize=4096)
def normalize_path(raw_path: str) -> str:
    """The path as an origin may end up resolving it.

    Percent-decoded, backslashes as slashes, `;parameters` dropped from every
    segment (Java servers ignore them), empty and dot segments resolved.
    """
    decoded = unquote(raw_path).replace("\\", "/")
    segments = [segment.split(";", 1)[0] for segment in decoded.split("/")]
    joined = "/".join(segment for segment in segments if segment)
    normal = posixpath.normpath("/" + joined)
    if decoded.endswith("/") and normal != "/":
        normal += "/"
    return normal


def _is_reserved(raw_path: str, path: str, prefix: str) -> bool:
    lowered = prefix.lower()
    return raw_path.lower().startswith(lowered) or (path.lower() + "/").startswith(lowered)


def admit(
    request: web.BaseRequest,
    router: HostRouter[Site],
    *,
    limits: Limits,
    prefix: str,
    pseudonym: str,
) -> Admitted | web.Response:
    if request.method == "CONNECT":
        return json_error(
            405, "method_not_allowed", "CONNECT is not supported: this is not a forward proxy"
        )
    raw_target = request.raw_path
    request_line = len(request.method) + len(raw_target) + 10
    if request_line > limits.request_line:
        return json_error(
            414, "uri_too_long", f"request line longer than {limits.request_line} bytes"
        )
    header_bytes = sum(len(n) + len(v) + 4 for n, v in request.raw_headers)
    if header_bytes > limits.headers:
        return json_error(
            431, "headers_too_large", f"request headers larger than {limits.headers} bytes"
        )
    length = request.content_length
    if length is not None and length > limits.body:
        return json_error(413, "body_too_large", f"request body larger than {limits.body} bytes")
    if not raw_target.startswith("/") and "://" in raw_target.split("?", 1)[0]:
        parts = urlsplit(raw_target)
        authority = parts.netloc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    elif raw_target.startswith("/"):
        authority = request.headers.get("Host", "")
        target = raw_target
    elif raw_target == "*" and request.method == "OPTIONS":
        # About the server itself: answered here, there is nothing to forward.
        return web.Response(status=204, headers={"Allow": _ALLOW})
    else:
        return json_error(400, "bad_target", "request target must be origin-form or absolute-form")
    if not authority:
        return json_error(400, "missing_host", "the request has no Host")
    host = normalize_host(authority)
    if host is None:
        return json_error(400, "bad_host", f"not a valid host: {authority[:100]!r}")
    site = router.resolve(host)
    if site is None:
        return json_error(421, "unknown_host", f"no site is configured for host {authority!r}")
    if via_mentions(request.raw_headers, pseudonym):
        return json_error(
            508, "loop_detected", "the request has already passed through this gateway"
        )
    raw_path = target.split("?", 1)[0]
    path = normalize_path(raw_path)
    return Admitted(
        site=site,
        client_host=authority,
        target=target,
        path=path,
        reserved=_is_reserved(raw_path, path, prefix),
    )
