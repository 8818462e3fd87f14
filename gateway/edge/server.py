"""aiohttp's low-level server with JSON error answers for unparsable requests.

aiohttp answers a request its parser rejects (smuggling attempts, bare LF,
oversized lines) with a text page and logs a traceback at ERROR level. At
the edge these are routine: answer with the same JSON shape as every other
gateway error, close the connection, and log one line.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from gateway.edge.errors import json_error

log = logging.getLogger("gateway.edge")


class _JsonErrorHandler(RequestHandler):
    def __init__(self, manager: web.Server, *, line_limit: int, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._line_limit = line_limit

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        if isinstance(exc, LineTooLong):
            # The parser enforces our limits; its limit says which line was too long.
            too_long_line = exc.args[1] == self._line_limit
            response = (
                json_error(414, "uri_too_long", "request line too long")
                if too_long_line
                else json_error(431, "headers_too_large", "a request header is too long")
            )
        elif status >= 500:
            log.error("error handling request from %s", request.remote, exc_info=exc)
            response = json_error(status, "internal_error", "the gateway failed to answer")
        else:
            detail = (message or str(exc) or "malformed request").strip().splitlines()[0]
            log.info("rejected malformed request from %s: %s", request.remote, detail)
            response = json_error(status, "bad_request", detail)
        response.force_close()
        return response


class EdgeServer(web.Server):
    """`line_limit` must be the parser's max_line_size (and differ from max_field_size)."""

    def __init__(self, handler: Any, *, line_limit: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._line_limit = line_limit

    def __call__(self) -> RequestHandler:
        kwargs: dict[str, Any] = self._kwargs
        return _JsonErrorHandler(self, loop=self._loop, line_limit=self._line_limit, **kwargs)
