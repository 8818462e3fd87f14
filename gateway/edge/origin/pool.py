"""Keep-alive connections to origins, bounded per origin, and the request API.

Like Go's http.Transport: idle connections are reused newest first, dropped
after the keep-alive time, and a request without a body that fails on a
reused connection before any answer (the origin closed it while idle) is
sent again once on a new one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

from multidict import CIMultiDict

from gateway.edge.origin.connection import OriginConnection, OriginResponse
from gateway.edge.origin.errors import (
    OriginClosed,
    OriginConnectError,
    OriginTimeout,
)

# Safe to send twice: the first attempt may have reached the origin.
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods whose requests carry a body by nature: an empty one is said so.
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class OriginAddress:
    host: str
    port: int
    tls: ssl.SSLContext | None  # None: plain HTTP


@dataclass(slots=True)
class _Slots:
    idle: deque[OriginConnection] = field(default_factory=deque)
    count: int = 0  # open or opening connections
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class OriginPool:
    def __init__(
        self, *, limit_per_origin: int, keepalive: float, connect_timeout: float, idle: float
    ) -> None:
        self._limit = limit_per_origin
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._idle = idle
        self._slots: dict[OriginAddress, _Slots] = {}
        self._homes: dict[OriginConnection, OriginAddress] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self,
        address: OriginAddress,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: AsyncIterator[bytes] | None,
    ) -> OriginResponse:
        """Send the request; its response once the headers are in (the body streams)."""
        chunked = False
        if body is not None and "Content-Length" not in headers:
            headers["Transfer-Encoding"] = "chunked"
            chunked = True
        elif body is None and method in _BODY_METHODS and "Content-Length" not in headers:
            headers["Content-Length"] = "0"
        head = _serialize(method, target, headers)
        retry = body is None and method in _IDEMPOTENT
        while True:
            connection, reused = await self._acquire(address)
            try:
                return await connection.exchange(
                    head, body, chunked=chunked, head_only=method == "HEAD"
                )
            except OriginClosed:
                connection.close()
                if not (retry and reused):
                    raise
                retry = False  # once, on a new connection
            except BaseException:
                connection.close()
                raise

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for slots in self._slots.values():
            while slots.idle:
                slots.idle.pop().close()

    # The connections.

    async def _acquire(self, address: OriginAddress) -> tuple[OriginConnection, bool]:
        slots = self._slots.get(address)
        if slots is None:
            slots = self._slots[address] = _Slots()
        loop = asyncio.get_running_loop()
        while True:
            while slots.idle:
                connection = slots.idle.pop()
                if connection.alive and loop.time() - connection.idle_since < self._keepalive:
                    return connection, True
                connection.close()
            if slots.count < self._limit:
                break
            waiter = loop.create_future()
            slots.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in slots.waiters:
                    slots.waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake(slots)  # woken, then cancelled: the turn passes to the next
                raise
        slots.count += 1
        try:
            return await self._open(address), False
        except BaseException:
            slots.count -= 1
            self._wake(slots)
            raise

    async def _open(self, address: OriginAddress) -> OriginConnection:
        loop = asyncio.get_running_loop()
        connection = OriginConnection(self._idle, self)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(
                    lambda: connection,
                    address.host,
                    address.port,
                    ssl=address.tls,
                    server_hostname=address.host if address.tls is not None else None,
                )
        except TimeoutError:
            raise OriginTimeout(
                f"no connection to the origin within {self._connect_timeout:g} s"
            ) from None
        except OSError as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise OriginConnectError(f"cannot connect to the origin: {reason}") from exc
        self._homes[connection] = address
        return connection

    def done(self, connection: OriginConnection, keep: bool) -> None:
        """A response's user is finished; keep the connection for the next request if it can."""
        address = self._homes.get(connection)
        if address is None:
            return
        if not (keep and connection.reusable and not self._closed):
            connection.close()  # lost() does the accounting
            return
        connection.ready_for_next()
        slots = self._slots[address]
        connection.idle_since = asyncio.get_running_loop().time()
        slots.idle.append(connection)
        self._wake(slots)
        if self._sweeper is None:
            self._schedule_sweep()

    def lost(self, connection: OriginConnection) -> None:
        address = self._homes.pop(connection, None)
        if address is None or not connection.counted:
            return
        connection.counted = False
        slots = self._slots[address]
        slots.count -= 1
        if connection in slots.idle:
            slots.idle.remove(connection)
        self._wake(slots)

    @staticmethod
    def _wake(slots: _Slots) -> None:
        while slots.waiters:
            waiter = slots.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(max(self._keepalive / 2, 0.5), self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for longer than the keep-alive time."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        remaining = False
        for slots in self._slots.values():
            for connection in [c for c in slots.idle if now - c.idle_since >= self._keepalive]:
                connection.close()
            remaining = remaining or bool(slots.idle)
        if remaining and not self._closed:
            self._schedule_sweep()


def _serialize(method: str, target: str, headers: CIMultiDict[str]) -> bytes:
    """The request line and headers; refuses a line break smuggled into any of them."""
    text = "".join(
        [f"{method} {target} HTTP/1.1\r\n", *[f"{n}: {v}\r\n" for n, v in headers.items()], "\r\n"]
    )
    lines = len(headers) + 2
    if text.count("\n") != lines or text.count("\r") != lines or "\x00" in text:
        raise ValueError("a line break or NUL in the request line or a header")
    return text.encode("latin-1")
