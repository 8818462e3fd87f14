"""The admin bearer token: every /api/v1 call carries it (header or the dashboard's cookie)."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.edge.errors import json_error

# The dashboard keeps the token in this cookie (HttpOnly, SameSite=Strict), never in a URL.
TOKEN_COOKIE = "gateway_admin"


def check_token(request: web.Request, token: str) -> web.Response | None:
    """None when the request may go on; else the 401 to answer."""
    if not token:
        return json_error(
            401,
            "unauthorized",
            "the API is closed: set server.admin_token (or GATEWAY_ADMIN_TOKEN)",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = request.cookies.get(TOKEN_COOKIE, "")
    # The header's bytes as sent (aiohttp keeps undecodable ones as surrogates).
    if given and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode()
    ):
        return None
    return json_error(
        401,
        "unauthorized",
        "missing or wrong admin token (Authorization: Bearer <server.admin_token>)",
        headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
    )
