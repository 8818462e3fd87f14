"""The dashboard and player pages, and the built assets they load.

Pages are static HTML (gateway/web/pages) whose `/assets/<name>` references
get `?v=<content hash>` at start, so assets can be cached for a year and a new
build is a new URL. Every page goes out with a strict CSP of its own; styles
allow 'unsafe-inline' only because rrweb's replay iframe inherits the policy
and recorded pages carry inline styles. Scripts come from 'self' only.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.edge.errors import json_error

_WEB = Path(__file__).resolve().parent.parent / "web"
PAGES_DIR = _WEB / "pages"
ASSETS_DIR = _WEB / "dist"
ASSETS = ("dashboard.js", "player.js", "app.css", "rrweb.css")
_ASSET_REF = re.compile(r"/assets/([A-Za-z0-9_.-]+)")

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob: http: https:",
        "font-src 'self' data: http: https:",
        "media-src http: https:",
        "connect-src 'self'",
        "frame-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Share links carry their token in the path: never send it on as a Referer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    digest: str
    content_type: str


class Pages:
    """Loads pages and assets once; a missing build is a clear 503, not a crash."""

    def __init__(self, pages_dir: Path = PAGES_DIR, assets_dir: Path = ASSETS_DIR) -> None:
        self._assets: dict[str, Asset] = {}
        for name in ASSETS:
            path = assets_dir / name
            if path.is_file():
                body = path.read_bytes()
                kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
                self._assets[name] = Asset(body, hashlib.sha256(body).hexdigest()[:16], kind)
        self._pages: dict[str, bytes] = {}
        for name in ("dashboard", "player"):
            path = pages_dir / f"{name}.html"
            if path.is_file():
                self._pages[name] = _ASSET_REF.sub(self._versioned, path.read_text()).encode()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.dashboard),
            web.get("/recordings/{id}", self.player),
            web.get("/share/{token}", self.player),
            web.get("/assets/{name}", self.asset),
        ]

    async def dashboard(self, request: web.Request) -> web.Response:
        return self._page("dashboard")

    async def player(self, request: web.Request) -> web.Response:
        return self._page("player")

    async def asset(self, request: web.Request) -> web.Response:
        asset = self._assets.get(request.match_info["name"])
        if asset is None:
            return json_error(404, "not_found", f"no asset {request.match_info['name']!r}")
        etag = f'"{asset.digest}"'
        headers = {"ETag": etag, "X-Content-Type-Options": "nosniff"}
        if request.query.get("v") == asset.digest:
            headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            headers["Cache-Control"] = "no-cache"
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)

    def _page(self, name: str) -> web.Response:
        body = self._pages.get(name)
        if body is None or len(self._assets) < len(ASSETS):
            return json_error(
                503, "not_built", "the dashboard is not built: run `make setup` (npm run build)"
            )
        return web.Response(
            body=body, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS
        )

    def _versioned(self, match: re.Match[str]) -> str:
        asset = self._assets.get(match.group(1))
        return match.group(0) if asset is None else f"{match.group(0)}?v={asset.digest}"
