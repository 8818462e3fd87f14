"""The body of one origin response, handed over as it arrives.

Unread bytes are bounded: past HIGH_WATER the origin socket stops being
read (TCP then slows the origin down) until the reader catches up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from gateway.edge.origin.errors import OriginTimeout

HIGH_WATER = 256 * 1024


class ReadSwitch(Protocol):
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class OriginBody:
    __slots__ = ("_chunks", "_eof", "_error", "_idle", "_paused", "_size", "_switch", "_waiter")

    def __init__(self, switch: ReadSwitch, idle: float) -> None:
        self._switch = switch
        self._idle = idle
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # Fed by the connection.

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._switch.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._eof:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Read by the proxy.

    @property
    def complete(self) -> bool:
        """The origin sent the whole body (it may not all have been read yet)."""
        return self._eof

    def is_eof(self) -> bool:
        """The whole body arrived and was read."""
        return self._eof and not self._chunks

    def take(self) -> bytes:
        """Whatever has arrived and was not read yet, without waiting (b"" if nothing)."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        if self._paused:
            self._paused = False
            self._switch.resume_reading()
        return data

    async def readany(self) -> bytes:
        """The next bytes; b"" at the end of the body. Waits at most `idle` seconds."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self._idle):
                    await waiter
            except TimeoutError:
                raise OriginTimeout(f"the origin sent nothing for {self._idle:g} s") from None
            finally:
                self._waiter = None
        return self.take()

    async def iter_any(self) -> AsyncIterator[bytes]:
        while chunk := await self.readany():
            yield chunk
