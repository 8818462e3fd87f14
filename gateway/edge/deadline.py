"""Deadlines for the per-request hot path, kept by one sweep per event loop.

`asyncio.timeout` arms and cancels a timer handle each time it is used (5-10 µs; a
proxied request used two, about 5% of its CPU). A deadline here is an entry in a
set; one sweep every RESOLUTION seconds cancels the tasks whose deadline passed, so
a deadline fires up to RESOLUTION late: fine for timeouts configured in seconds.

    with within(seconds):
        await something()   # TimeoutError once `seconds` have passed

The cancellation works as asyncio.timeout's does: the task is cancelled, and the
CancelledError becomes TimeoutError at the end of the block unless the task was
also cancelled from elsewhere (then the CancelledError stands).
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType

RESOLUTION = 0.05


class Deadline:
    __slots__ = ("_cancelling", "_fired", "_loop", "_task", "_watch", "when")

    def __init__(self, watch: _Watch, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._watch = watch
        self._loop = loop
        self.when = when
        self._fired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs to run inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._watch.add(self, self._loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._watch.active.discard(self)
        if self._fired:
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def fire(self) -> None:
        self._fired = True
        assert self._task is not None
        self._task.cancel()


class _NoDeadline:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NONE = _NoDeadline()


class _Watch:
    """The deadlines of one event loop and the timer that sweeps them.

    Held weakly (per loop, in a weak dictionary): it lives while a sweep is pending or
    a block is inside a deadline, so a closed loop is never kept alive through it.
    """

    __slots__ = ("__weakref__", "_sweeping", "active")

    def __init__(self) -> None:
        self.active: set[Deadline] = set()
        self._sweeping = False

    def add(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        self.active.add(deadline)
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(RESOLUTION, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        expired = [deadline for deadline in self.active if deadline.when <= now]
        try:
            for deadline in expired:
                self.active.discard(deadline)
                try:
                    deadline.fire()
                except Exception as exc:  # one bad task must not stop every other deadline
                    loop.call_exception_handler({"message": "deadline failed", "exception": exc})
        finally:
            # Stops while nothing is watched: an idle gateway is not woken for nothing.
            self._sweeping = bool(self.active)
            if self._sweeping:
                loop.call_later(RESOLUTION, self._sweep, loop)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.ref[_Watch]] = (
    weakref.WeakKeyDictionary()
)
# The last loop asked for and its watch: a weak dictionary lookup costs a microsecond.
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], weakref.ref[_Watch]] | None = None


def _watch_of(loop: asyncio.AbstractEventLoop) -> _Watch:
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        watch = last[1]()
        if watch is not None:
            return watch
    held = _watches.get(loop)
    watch = held() if held is not None else None
    if watch is None:
        watch = _Watch()
        _watches[loop] = weakref.ref(watch)
    _last = (weakref.ref(loop), weakref.ref(watch))
    return watch


def within(seconds: float | None) -> Deadline | _NoDeadline:
    """A `with` block that raises TimeoutError once `seconds` have passed (None: never)."""
    if seconds is None:
        return _NONE
    loop = asyncio.get_running_loop()
    return Deadline(_watch_of(loop), loop, loop.time() + seconds)
