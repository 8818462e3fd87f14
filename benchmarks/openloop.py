"""Open-loop (constant-rate, wrk2-style) HTTP/1.1 GET load with coordinated-omission correction.

Requests are scheduled at fixed times (`start + i / rate`, kept by a small thread, more
precise than asyncio's millisecond timers) whatever the server does; each one's latency
runs from its SCHEDULED time to the end of its response, so time spent waiting for a free
connection (a slow server) is counted, not omitted.

`connections` keep-alive connections (opened before the clock starts) each carry one
request at a time: a worker per connection takes the next scheduled time from a queue.
Deliberately light on CPU (it shares the machine with the server under test): raw
asyncio streams, the request bytes built once, minimal response parsing.

Counting: `completed` is the requests answered 2xx/3xx (each with a latency); `errors`
the others (other statuses, connection or parse failures, per-request `timeout`, and
requests still unanswered `timeout` seconds after scheduling stopped, sent or not), so
`completed + errors` is the number scheduled. `sent` counts requests written to a socket.

Two implementations of these semantics: `native/openloop.c` (built with gcc into
`build/bench/openloop` on first use: epoll, a timerfd keeping the schedule to the
nanosecond, no interpreter in the measured path), and asyncio (a latency tail of its own,
several milliseconds at p99 even against nginx). `open_loop` takes the native one whenever
it can be built (its `native` argument forces either).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "OpenLoopResult",
    "build_native",
    "open_loop",
]

_SOURCE = Path(__file__).resolve().parent / "native" / "openloop.c"
_BINARY = Path(__file__).resolve().parent.parent / "build" / "bench" / "openloop"


@dataclass
class OpenLoopResult:
    rate: float  # requests per second asked
    duration: float  # seconds of scheduling
    sent: int
    completed: int
    errors: int
    latencies_ms: list[float] = field(repr=False)  # one per completed request

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, p in [0, 100]; NaN when there are none."""
        if not 0 <= p <= 100:
            raise ValueError(f"percentile {p} is not in [0, 100]")
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]


class _BadResponse(Exception):
    pass


_FAILURES = (
    OSError,
    TimeoutError,
    ValueError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    _BadResponse,
)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Reads one response (interim 1xx answers skipped); (status, connection reusable)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1."):
            raise _BadResponse(head[:40])
        status = int(head[9:12])
        if not 100 <= status < 200 or status == 101:
            break
    lower = head.lower()
    reusable = b"\r\nconnection: close" not in lower and head[7:8] == b"1"
    if status < 200 or status in (204, 304):
        return status, reusable
    if _last_coding(lower) == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return status, reusable
            await reader.readexactly(size + 2)
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        await reader.readexactly(int(lower[at + 17 : end]))
        return status, reusable
    await reader.read()  # delimited by the end of the connection
    return status, False


def _last_coding(lower_head: bytes) -> bytes:
    """The last transfer coding named (chunked must be last), b"" when there is none."""
    codings = [
        line.split(b":", 1)[1]
        for line in lower_head.split(b"\r\n")
        if line.startswith(b"transfer-encoding:")
    ]
    return b",".join(codings).rsplit(b",", 1)[-1].strip()


class _Connection:
    """One keep-alive connection, (re)opened on demand, one request at a time."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.sent = 0

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.reader, self.writer = reader, writer
        return reader, writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self) -> int:
        """Sends the request, reads the whole response; its status."""
        if self.reader is not None and self.reader.at_eof():
            self.close()  # the server closed it while idle
        for attempt in (0, 1):
            fresh = self.reader is None or self.writer is None
            if self.reader is None or self.writer is None:
                reader, writer = await self.open()
            else:
                reader, writer = self.reader, self.writer
            writer.write(self.request)
            self.sent += attempt == 0
            try:
                status, reusable = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                # A kept-alive connection the server closed as the request went: once more,
                # on a new one, unless something of an answer came.
                self.close()
                answered = isinstance(error, asyncio.IncompleteReadError) and error.partial
                if fresh or attempt or answered:
                    raise
                continue
            if not reusable:
                self.close()
            return status
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Load:
    """What one open-loop run sends, checked once for either generator."""

    host: str
    port: int
    rate: float
    duration: float
    connections: int
    timeout: float
    request: bytes  # the bytes of the GET sent again and again

    @classmethod
    def of(
        cls,
        host: str,
        port: int,
        path: str,
        *,
        rate: float,
        duration: float,
        connections: int,
        headers: dict[str, str] | None,
        timeout: float,
    ) -> _Load:
        if not (rate > 0 and duration > 0 and connections >= 1 and timeout > 0):
            raise ValueError("rate, duration, connections and timeout must be positive")
        fields = dict(headers or {})
        if not any(name.lower() == "host" for name in fields):
            fields = {"Host": host if port == 80 else f"{host}:{port}", **fields}
        request = (
            f"GET {path} HTTP/1.1\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in fields.items())
            + "\r\n"
        ).encode("latin-1")
        return cls(host, port, rate, duration, connections, timeout, request)


async def open_loop(
    host: str,
    port: int,
    path: str,
    *,
    rate: float,
    duration: float,
    connections: int = 16,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
    native: bool | None = None,
) -> OpenLoopResult:
    """GET `path` at `rate` per second for `duration` seconds; see the module docstring.

    `native`: None for the C generator when gcc builds it, else the Python one (with a
    warning); True for the C one (RuntimeError when it cannot be built); False for Python.
    """
    load = _Load.of(
        host,
        port,
        path,
        rate=rate,
        duration=duration,
        connections=connections,
        headers=headers,
        timeout=timeout,
    )
    binary = await asyncio.to_thread(build_native) if native is not False else None
    if native and binary is None:
        raise RuntimeError(f"could not build {_SOURCE}")
    return await (_run_python(load) if binary is None else _run_native(load, binary))


def build_native() -> Path | None:
    """`build/bench/openloop`, (re)built from `native/openloop.c` when missing or older than it;
    None (with a warning carrying the compiler's message) when gcc is missing or fails."""
    try:
        if _BINARY.stat().st_mtime >= _SOURCE.stat().st_mtime:
            return _BINARY
    except FileNotFoundError:
        pass
    compiler = shutil.which("gcc")
    if compiler is None:
        warnings.warn("gcc not found: open loop falls back to Python", stacklevel=2)
        return None
    _BINARY.parent.mkdir(parents=True, exist_ok=True)
    partial = _BINARY.with_name(f"{_BINARY.name}.{os.getpid()}.tmp")
    try:
        built = subprocess.run(
            [compiler, "-O2", "-Wall", "-Wextra", "-std=gnu11", "-o", str(partial), str(_SOURCE)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as error:
        warnings.warn(f"building {_SOURCE.name} failed: {error}", stacklevel=2)
        return None
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        warnings.warn(
            f"building {_SOURCE.name} failed (falling back to Python):\n{built.stderr}",
            stacklevel=2,
        )
        return None
    os.replace(partial, _BINARY)  # atomic: a concurrent run sees the old or the new binary
    return _BINARY


async def _run_native(load: _Load, binary: Path) -> OpenLoopResult:
    """The run by the C program; RuntimeError when it fails."""
    process = await asyncio.create_subprocess_exec(
        str(binary),
        load.host,
        str(load.port),
        repr(float(load.rate)),
        repr(float(load.duration)),
        str(load.connections),
        repr(float(load.timeout)),
        "-",  # the request on stdin
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await process.communicate(load.request)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(
            f"{binary.name} exited with {process.returncode}: {err.decode(errors='replace')}"
        )
    lines = out.split(b"\n")
    sent, completed, errors = (int(value) for value in lines[0].split())
    latencies = [float(line) / 1000 for line in lines[1 : 1 + completed]]
    if len(latencies) != completed:
        raise RuntimeError(f"{binary.name}: {completed} completed but {len(latencies)} latencies")
    return OpenLoopResult(load.rate, load.duration, sent, completed, errors, latencies)


async def _run_python(load: _Load) -> OpenLoopResult:
    """The run in asyncio (a few milliseconds of latency tail of its own)."""
    rate, duration, timeout = load.rate, load.duration, load.timeout
    pool = [_Connection(load.host, load.port, load.request) for _ in range(load.connections)]
    queue: asyncio.Queue[float] = asyncio.Queue()
    latencies: list[float] = []

    async def warm(connection: _Connection) -> None:
        with contextlib.suppress(*_FAILURES):
            async with asyncio.timeout(timeout):
                await connection.open()

    async def work(connection: _Connection) -> None:
        try:
            while True:
                scheduled = await queue.get()
                try:
                    # The timeout runs from the scheduled time, queueing included (as in C).
                    left = timeout - (time.perf_counter() - scheduled)
                    if left <= 0:
                        continue  # too late already: an error, never sent
                    async with asyncio.timeout(left):
                        status = await connection.exchange()
                    if 200 <= status < 400:
                        latencies.append((time.perf_counter() - scheduled) * 1000)
                except _FAILURES:
                    connection.close()  # counted as an error: no latency
                finally:
                    queue.task_done()
        finally:
            connection.close()

    await asyncio.gather(*(warm(connection) for connection in pool))
    workers = [asyncio.create_task(work(connection)) for connection in pool]
    total = math.ceil(rate * duration - 1e-9)  # due times i / rate < duration
    loop = asyncio.get_running_loop()
    all_queued = asyncio.Event()
    stop = threading.Event()

    def tick(start: float) -> None:
        # A thread keeps the clock: asyncio's timers wake up to a millisecond late (epoll's
        # resolution), which would show up in every latency; a thread sleeps to ~0.1 ms.
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0 and stop.wait(delay):
                return
            loop.call_soon_threadsafe(queue.put_nowait, due)
        loop.call_soon_threadsafe(all_queued.set)

    ticker = threading.Thread(target=tick, args=(time.perf_counter(),), daemon=True)
    ticker.start()
    try:
        await all_queued.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.join(), timeout)
    finally:
        stop.set()
        ticker.join()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    # Not answered 2xx/3xx, including what was still queued or in flight at the end.
    errors = total - len(latencies)
    sent = sum(connection.sent for connection in pool)
    return OpenLoopResult(rate, duration, sent, len(latencies), errors, latencies)
