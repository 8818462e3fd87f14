"""The admin token: every /api/ call carries it, as a bearer header or the dashboard's cookie.

Cookie-authenticated calls that change something must also be JSON: a form
on another site cannot send `Content-Type: application/json` without a CORS
preflight, so that is the CSRF defence (with SameSite=Strict on the cookie).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.edge.errors import json_error
from gateway.store.recordings import StoreError

# The dashboard keeps the token in this cookie (HttpOnly, SameSite=Strict), never in a URL.
TOKEN_COOKIE = "gateway_admin"
# Signing in and out are the calls that need no token.
_OPEN = frozenset({("POST", "/api/v1/session"), ("DELETE", "/api/v1/session")})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer(request: web.Request) -> bytes | None:
    """The bearer token of `Authorization`, as the bytes sent; None without one."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    # aiohttp keeps undecodable header bytes as surrogates: compare what was sent.
    return given.strip().encode("utf-8", "surrogateescape")


def same_token(given: bytes | None, expected: bytes) -> bool:
    """Constant-time comparison; an empty or missing token never matches."""
    return bool(given) and bool(expected) and hmac.compare_digest(given or b"", expected)


def check_token(request: web.Request, token: str) -> web.Response | None:
    """None when the request may go on; else the 401 (or 403) to answer."""
    if not token:
        return json_error(
            401,
            "unauthorized",
            "the API is closed: set server.admin_token (or GATEWAY_ADMIN_TOKEN)",
        )
    given = bearer(request)
    by_cookie = given is None
    if given is None:
        given = request.cookies.get(TOKEN_COOKIE, "").strip().encode("utf-8", "surrogateescape")
    if not same_token(given, token.encode()):
        return json_error(
            401,
            "unauthorized",
            "missing or wrong admin token (Authorization: Bearer <server.admin_token>)",
            headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
        )
    if (
        by_cookie
        and request.method not in _SAFE_METHODS
        and request.content_type != ("application/json")
    ):
        return json_error(403, "forbidden", "send Content-Type: application/json")
    return None


def admin_guard(token: Callable[[], str]) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Token on /api/; no caching of answers; StoreError is a 503, not a stack trace."""
        api = request.path.startswith("/api/")
        if api and (request.method, request.path) not in _OPEN:
            refused = check_token(request, token())
            if refused is not None:
                return refused
        try:
            response = await handler(request)
        except StoreError as exc:
            response = json_error(503, "store_unavailable", str(exc), headers={"Retry-After": "5"})
        if api:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return guard
