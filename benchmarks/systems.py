"""The systems under test, each a process on 127.0.0.1 with a port of its own.

nginx runs with one worker (as the gateway runs one process), access logs off,
keep-alive to its upstream; the sub_filter variant injects the same tag as the
Python peers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.peers import TAG
from gateway.workers import free_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    # nginx forks its worker: the process doing the work (RSS, CPU) is not the one started.
    workers: list[int] = field(default_factory=list)
    admin_port: int = 0  # the gateway's admin listener (metrics)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def busy_pids(self) -> list[int]:
        return self.workers or [self.proc.pid]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening within {within} s: {log.read_text()[-2000:]}")


def _spawn(
    name: str, argv: list[str], port: int, work: Path, env: dict[str, str] | None = None
) -> Server:
    log = work / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    wait_listening(port, proc, log)
    return Server(name, port, proc, log)


def _children(pid: int, count: int = 1) -> list[int]:
    """The worker processes of a master (nginx, `gateway serve --workers N`)."""
    import psutil

    children: list[int] = []
    for _ in range(100):
        children = [c.pid for c in psutil.Process(pid).children()]
        if len(children) >= count:
            break
        time.sleep(0.05)
    return children


def _nginx(name: str, server_block: str, work: Path, port: int, upstream: str = "") -> Server:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = work / f"{name}.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {work}/{name}-body;
    proxy_temp_path {work}/{name}-proxy;
    fastcgi_temp_path {work}/{name}-fastcgi;
    uwsgi_temp_path {work}/{name}-uwsgi;
    scgi_temp_path {work}/{name}-scgi;
    include /etc/nginx/mime.types;
    {upstream}
    server {{
        listen 127.0.0.1:{port} reuseport;
        {server_block}
    }}
}}
"""
    )
    server = _spawn(
        name, [nginx, "-c", str(conf), "-e", str(work / f"{name}.error.log")], port, work
    )
    server.workers = _children(server.proc.pid)
    return server


def nginx_origin(root: Path, work: Path) -> Server:
    """The origin: static files, gzip on the fly for clients that ask (scenario 2)."""
    block = f"""
        root {root};
        gzip on;
        gzip_types text/html;
        gzip_min_length 1000;
        gzip_comp_level 5;
        location / {{ }}
    """
    return _nginx("origin", block, work, free_port())


def nginx_proxy(origin_port: int, work: Path, *, sub_filter: bool) -> Server:
    name = "nginx-sub_filter" if sub_filter else "nginx-proxy"
    inject = ""
    if sub_filter:
        tag = TAG.decode().replace("'", "\\'")
        # sub_filter needs the origin's body uncompressed; nginx gzips its own answer again.
        inject = f"""
            proxy_set_header Accept-Encoding "";
            sub_filter '<head>' '<head>{tag}';
            sub_filter_once on;
            gzip on;
            gzip_types text/html;
            gzip_min_length 1000;
            gzip_comp_level 5;
        """
    block = f"""
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering on;
            {inject}
        }}
    """
    upstream = f"upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}"
    return _nginx(name, block, work, free_port(), upstream)


def aiohttp_ceiling(root: Path, work: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.peers", "ceiling", "--port", str(port)]
    return _spawn("aiohttp-ceiling", [*argv, "--root", str(root)], port, work)


def naive_proxy(origin_url: str, work: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.peers", "naive", "--port", str(port)]
    return _spawn("naive-aiohttp-proxy", [*argv, "--origin", origin_url], port, work)


def aiohttp_floor(origin_url: str, work: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.peers", "floor", "--port", str(port)]
    return _spawn("aiohttp-floor", [*argv, "--origin", origin_url], port, work)


def gateway(origin_url: str, work: Path, workers: int = 1) -> Server:
    """The gateway with the embedded store, limits lifted for load; `workers` processes."""
    port, admin = free_port(), free_port()
    name = "gateway" if workers == 1 else f"gateway-{workers}-workers"
    config = work / f"{name}.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
admin_token = "bench"
data_dir = "{work / (name + "-data")}"

[collect]
ip_rate = 1000000.0
ip_burst = 1000000
session_rate = 1000000.0
session_burst = 1000000
new_sessions_per_hour = 1000000000.0
new_sessions_burst = 1000000

[[sites]]
key = "bench"
hosts = ["127.0.0.1", "localhost"]
origin = "{origin_url}"
monthly_limit = 1000000000
"""
    )
    argv = [sys.executable, "-m", "gateway", "serve", "-c", str(config), "--workers", str(workers)]
    server = _spawn(name, argv, port, work)
    server.admin_port = admin
    if workers > 1:
        server.workers = _children(server.proc.pid, workers)
    return server
