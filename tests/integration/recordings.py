"""Load and bookkeeping for pipeline tests: send batches, count what was acknowledged,
and read back what the store holds through its admin API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.workers import free_port
from tests.integration import batches as b
from tests.integration.conftest import BROWSER_UA

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token"
ENDPOINT = "/__rec/v1/batch"
# Base of the event timestamps (ms); each event's timestamp is unique within a run.
EPOCH_MS = 1_790_000_000_000
EVENTS_PER_BATCH = 3
# Load tests send many batches from one address: lift the per-client limits.
NO_RATE_LIMITS = """
ip_rate = 100000.0
ip_burst = 100000
session_rate = 100000.0
session_burst = 100000
new_sessions_per_hour = 1000000.0
new_sessions_burst = 100000
"""


def load_batch(session_index: int, seq: int) -> dict[str, Any]:
    """A batch whose events carry unique timestamps: (session, seq, k) -> one number."""
    base = EPOCH_MS + session_index * 10_000_000 + seq * 10
    url = f"http://shop.test/page/{seq % 3}"
    events = [b.meta(url, t=base), b.mouse_move(t=base + 1), b.click(5, t=base + 2)]
    return b.batch(events, session=f"load-{session_index}", page="p1", seq=seq, url=url)


def timestamps_of(session_index: int, seq: int) -> list[float]:
    base = EPOCH_MS + session_index * 10_000_000 + seq * 10
    return [base + k for k in range(EVENTS_PER_BATCH)]


@dataclass
class Ledger:
    """What was sent and what the gateway acknowledged (200 {"record": true})."""

    sent: set[tuple[int, int]] = field(default_factory=set)
    acked: set[tuple[int, int]] = field(default_factory=set)
    refused: dict[int, int] = field(default_factory=dict)  # status -> count
    retry_after: list[str] = field(default_factory=list)

    def expected_timestamps(self) -> list[float]:
        return sorted(t for s, q in self.acked for t in timestamps_of(s, q))


async def send_load(
    edge_url: str,
    ledger: Ledger,
    *,
    sessions: int,
    batches_per_session: int,
    concurrency: int = 8,
    first_seq: int = 0,
    pause: float = 0.0,
) -> None:
    """Each session's batches in order (one in flight per session), sessions in parallel."""
    headers = {"User-Agent": BROWSER_UA, "Host": "shop.test", "Content-Type": "application/json"}
    gate = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as client:

        async def one_session(index: int) -> None:
            for seq in range(first_seq, first_seq + batches_per_session):
                async with gate:
                    ledger.sent.add((index, seq))
                    body = json.dumps(load_batch(index, seq)).encode()
                    try:
                        async with client.post(edge_url + ENDPOINT, data=body) as response:
                            answer = await response.read()
                            if response.status == 200 and json.loads(answer).get("record"):
                                ledger.acked.add((index, seq))
                            else:
                                ledger.refused[response.status] = (
                                    ledger.refused.get(response.status, 0) + 1
                                )
                                if "Retry-After" in response.headers:
                                    ledger.retry_after.append(response.headers["Retry-After"])
                    except (TimeoutError, aiohttp.ClientError):
                        ledger.refused[0] = ledger.refused.get(0, 0) + 1  # no answer: not acked
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(one_session(i) for i in range(sessions)))


class Api:
    """The recordings API of an admin listener."""

    def __init__(self, admin_url: str, token: str = ADMIN_TOKEN) -> None:
        self.admin_url = admin_url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(headers=self.headers) as client,
            client.get(self.admin_url + path, params=params) as response,
        ):
            return response.status, await response.json()

    async def recordings(self, **params: str) -> list[dict[str, Any]]:
        """Every recording the list shows (all pages), with `live=1` unless told otherwise."""
        params = {"live": "1", "limit": "500", **params}
        found: list[dict[str, Any]] = []
        while True:
            status, body = await self.get("/api/v1/recordings", **params)
            assert status == 200, body
            found += body["recordings"]
            if body["next"] is None:
                return found
            params["cursor"] = body["next"]

    async def events(self, recording_id: str) -> list[dict[str, Any]]:
        status, body = await self.get(f"/api/v1/recordings/{recording_id}/events")
        assert status == 200, body
        assert isinstance(body, list)
        return body

    async def stored_timestamps(self) -> list[float]:
        """Every event timestamp the store holds, duplicates included."""
        stamps: list[float] = []
        for recording in await self.recordings():
            stamps += [event["timestamp"] for event in await self.events(recording["id"])]
        return sorted(stamps)

    async def wait_for_events(self, count: int, *, within: float = 60.0) -> int:
        """Poll until the store lists `count` events (or the time is up); the last count."""
        deadline = time.monotonic() + within
        total = -1
        while time.monotonic() < deadline:
            try:
                total = sum(r["events"] for r in await self.recordings())
            except (aiohttp.ClientError, AssertionError):
                total = -1
            if total >= count:
                return total
            await asyncio.sleep(0.2)
        return total


def store_config_text(
    port: int, admin_port: int, data_dir: Path, *, extra_store: str = "", extra_server: str = ""
) -> str:
    return f"""
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin_port}"
admin_token = "{ADMIN_TOKEN}"
data_dir = "{data_dir}"
shutdown_grace = 2.0
{extra_server}

[store]
finalize_after = 1.0
sweep_interval = 0.2
{extra_store}

[[sites]]
key = "shop"
hosts = ["shop.test"]
origin = "http://127.0.0.1:9"
"""


class StoreProcess:
    """A real `gateway store` node as a child process, on ports that survive restarts."""

    def __init__(self, tmp_path: Path, *, extra_store: str = "") -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.data_dir = tmp_path / "store-node"
        self.config = tmp_path / "store.toml"
        self.config.write_text(
            store_config_text(self.port, self.admin_port, self.data_dir, extra_store=extra_store)
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "store.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def api(self) -> Api:
        return Api(self.admin_url)

    def start(self, *, preexec: Any = None) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "store", "-c", str(self.config)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=preexec,
            )
        wait_ready(self.admin_url + "/readyz", self.proc, self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.proc = None


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready within {within} s:\n{log.read_text()}")


def assert_exactly_once(
    stored: Iterable[float], ledger: Ledger, *, unanswered_may_be_stored: bool = False
) -> None:
    """acknowledged == stored, each once. A batch that got no answer (its connection died
    with a killed gateway) may be stored or not, but once at most."""
    stored = sorted(stored)
    assert len(stored) == len(set(stored)), "an event is stored twice"
    expected = set(ledger.expected_timestamps())
    missing = sorted(expected - set(stored))
    assert not missing, f"{len(missing)} acknowledged events are not stored, e.g. {missing[:5]}"
    if unanswered_may_be_stored:
        sent = {t for s, q in ledger.sent for t in timestamps_of(s, q)}
        assert set(stored) <= sent, "the store holds events nobody sent"
    else:
        assert set(stored) == expected, "the store holds events that were never acknowledged"


class GatewayProcess:
    """A real `gateway serve` as a child process (for SIGKILL and SIGTERM), fixed ports."""

    def __init__(self, tmp_path: Path, origin_url: str, *, upstream: str, extra: str = "") -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.data_dir = tmp_path / "edge-data"
        self.config = tmp_path / "edge.toml"
        self.log = tmp_path / "edge.log"
        self.config.write_text(
            f"""
[server]
listen = "127.0.0.1:{self.port}"
admin_listen = "127.0.0.1:{self.admin_port}"
admin_token = "{ADMIN_TOKEN}"
data_dir = "{self.data_dir}"
node_name = "edge-proc"
shutdown_grace = 3.0

[collect]
{NO_RATE_LIMITS}

[upstream]
{upstream}

[store]
finalize_after = 1.0
sweep_interval = 0.2

{extra}

[[sites]]
key = "shop"
hosts = ["shop.test", "127.0.0.1"]
origin = "{origin_url}"
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, *args: str) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "-c", str(self.config), *args],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_ready(self.admin_url + "/readyz", self.proc, self.log)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
