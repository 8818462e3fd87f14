"""`gateway serve --workers N`: N edge processes on one port (SO_REUSEPORT).

The supervisor (this module's `supervise`) starts the workers as child
processes and tells each its role through GATEWAY_WORKER (JSON):

- worker 0 binds the admin listener and, with `upstream.url = "local"`, owns
  the embedded store; it takes the other workers' batches on an internal
  ingest listener (127.0.0.1, a per-run secret as bearer token), so one
  process writes the store;
- every worker has its own spool directory (`spool`, `spool-w1`, ...) and
  shares the quota database (SQLite, safe across processes);
- workers 1..N-1 serve their metrics on an internal listener; worker 0's
  /metrics merges them (admin/aggregate.py).

SIGTERM/SIGINT stop workers 1..N-1 first (their spools drain to worker 0),
then worker 0. A worker that dies is started again.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

WORKER_ENV = "GATEWAY_WORKER"
# A worker that died is restarted after this pause (no tight crash loop).
RESTART_PAUSE = 1.0


@dataclass(frozen=True)
class WorkerRole:
    index: int
    count: int
    ingest_port: int  # worker 0's internal ingest listener
    metrics_ports: tuple[int, ...]  # internal metrics listener of each worker (0: unused)
    secret: str  # bearer token of both internal listeners

    @property
    def primary(self) -> bool:
        return self.index == 0

    def spool_dir(self, data_dir: Path) -> Path:
        return data_dir / ("spool" if self.index == 0 else f"spool-w{self.index}")

    @classmethod
    def from_env(cls) -> WorkerRole | None:
        raw = os.environ.get(WORKER_ENV)
        if not raw:
            return None
        data = json.loads(raw)
        return cls(
            index=int(data["index"]),
            count=int(data["count"]),
            ingest_port=int(data["ingest_port"]),
            metrics_ports=tuple(int(p) for p in data["metrics_ports"]),
            secret=str(data["secret"]),
        )


def free_port() -> int:
    """A TCP port free on loopback now (a small race with others is accepted)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def supervise(argv: list[str], count: int, grace: float) -> int:
    """Run `count` workers of `gateway <argv>` until SIGTERM/SIGINT; their worst exit code."""
    secret = secrets.token_hex(16)
    ingest_port = free_port()
    metrics_ports = tuple(free_port() for _ in range(count))
    roles = [WorkerRole(i, count, ingest_port, metrics_ports, secret) for i in range(count)]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def spawn(role: WorkerRole) -> subprocess.Popen[bytes]:
        env = {**os.environ, WORKER_ENV: json.dumps(asdict(role))}
        return subprocess.Popen([sys.executable, "-m", "gateway", *argv], env=env)

    children = [spawn(role) for role in roles]
    codes = [0] * count
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(children):
            if child.poll() is not None and not stopping:
                print(f"gateway: worker {i} exited with {child.returncode}; restarting", flush=True)
                time.sleep(RESTART_PAUSE)
                children[i] = spawn(roles[i])
    # Secondary workers first: what their spools hold goes to worker 0's store.
    for group in (children[1:], children[:1]):
        for child in group:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 10
        for child in group:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    for i, child in enumerate(children):
        codes[i] = child.returncode or 0
    return max(codes, key=abs)
