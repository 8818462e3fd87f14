"""Signing in to the dashboard: the admin token goes into an HttpOnly cookie.

The page posts the token once; from then on the browser sends the cookie
(HttpOnly: page scripts never read it; SameSite=Strict: other sites cannot
make the browser send it). The token never appears in a URL.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import msgspec
from aiohttp import web

from gateway.admin.auth import TOKEN_COOKIE
from gateway.config import SiteConfig
from gateway.edge.errors import json_error

SESSION_PATH = "/api/v1/session"
# Signed in for a working day; then the token is asked again.
COOKIE_MAX_AGE = 12 * 3600

_encoder = msgspec.json.Encoder()


class SiteSummary(msgspec.Struct):
    key: str
    plan: str
    limit: int
    hosts: list[str]


class SessionApi:
    def __init__(self, token: Callable[[], str], sites: list[SiteConfig]) -> None:
        self._token = token
        self._sites = [SiteSummary(s.key, s.plan, s.limit, list(s.hosts)) for s in sites]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(SESSION_PATH, self.whoami),
            web.post(SESSION_PATH, self.sign_in),
            web.delete(SESSION_PATH, self.sign_out),
        ]

    async def whoami(self, request: web.Request) -> web.Response:
        """Reached only with a valid token (the guard checked it): the sites to show."""
        return web.Response(
            body=_encoder.encode({"sites": self._sites}), content_type="application/json"
        )

    async def sign_in(self, request: web.Request) -> web.Response:
        try:
            given = msgspec.json.decode(await request.read(), type=dict[str, str]).get("token", "")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return json_error(400, "bad_request", 'body: expected {"token": "..."}')
        token = self._token()
        if not token:
            return json_error(401, "unauthorized", "the API is closed: set server.admin_token")
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return json_error(401, "unauthorized", "wrong admin token")
        response = web.Response(status=204)
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            max_age=COOKIE_MAX_AGE,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        return response

    async def sign_out(self, request: web.Request) -> web.Response:
        response = web.Response(status=204)
        response.del_cookie(TOKEN_COOKIE, path="/")
        return response
