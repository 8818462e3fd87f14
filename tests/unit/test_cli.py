"""The real command line, run as a subprocess: check-config, config errors, serve + SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[server]
listen = "{listen}"
admin_listen = "{admin_listen}"
admin_token = "change-me"
data_dir = "{data_dir}"

[[sites]]
key = "demo"
hosts = ["shop.test"]
origin = "http://127.0.0.1:9"
plan = "pro"

[sites.recording]
exclude = ["/admin/*"]
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


def gateway(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env if env is not None else clean_env(),
        cwd=cwd,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(
    tmp_path: Path, listen: str = "127.0.0.1:8080", admin: str = "127.0.0.1:9090"
) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG.format(listen=listen, admin_listen=admin, data_dir=tmp_path / "data"))
    return path


def test_check_config_prints_the_effective_config(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = gateway("check-config", "-c", str(path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["server"]["listen"] == "127.0.0.1:8080"
    assert data["server"]["admin_token"] == "***"
    assert "change-me" not in result.stdout
    # Effective: defaults filled in.
    assert data["proxy"]["connect_timeout"] == 5.0
    assert data["store"]["retention_days"] == 10
    [site] = data["sites"]
    assert site["key"] == "demo" and site["plan"] == "pro"
    assert site["recording"]["respect_gpc"] is True
    assert site["recording"]["exclude"] == ["/admin/*"]


def test_check_config_shows_env_overrides_and_hides_env_token(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    env = clean_env(GATEWAY_ADMIN_TOKEN="env-secret", GATEWAY_LISTEN="0.0.0.0:18080")
    result = gateway("check-config", "-c", str(path), env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["server"]["listen"] == "0.0.0.0:18080"
    assert data["server"]["admin_token"] == "***"
    assert "env-secret" not in result.stdout


def test_shipped_configs_check(tmp_path: Path) -> None:
    for name in ("gateway.toml", "gateway.example.toml"):
        result = gateway("check-config", "-c", str(ROOT / "config" / name))
        assert result.returncode == 0, (name, result.stderr)
        assert json.loads(result.stdout)["sites"][0]["key"] == "demo"


def test_default_config_is_config_gateway_toml() -> None:
    result = gateway("check-config")  # cwd is the project root
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sites"][0]["hosts"] == ["localhost", "127.0.0.1"]


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text() + "sample_rate = 7\n")
    result = gateway("check-config", "-c", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "gateway: config error: sites[0].recording.sample_rate: must be between 0 and 1"
    )
    assert "Traceback" not in result.stderr


def test_unknown_key_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("[server]", "[server]\nlistn = '1'"))
    result = gateway("check-config", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("gateway: config error: server.listn: unknown key")


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = gateway("check-config", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"gateway: config error: {tmp_path / 'nope.toml'}: cannot read")


def test_gateway_config_env_picks_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, listen="127.0.0.1:18181")
    result = gateway("check-config", env=clean_env(GATEWAY_CONFIG=str(path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["server"]["listen"] == "127.0.0.1:18181"


def test_gateway_config_env_loses_to_dash_c(tmp_path: Path) -> None:
    chosen = write_config(tmp_path, listen="127.0.0.1:18282")
    env = clean_env(GATEWAY_CONFIG=str(tmp_path / "absent.toml"))
    result = gateway("check-config", "-c", str(chosen), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["server"]["listen"] == "127.0.0.1:18282"


def test_gateway_config_env_naming_a_bad_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[upstream]\nurl = "ftp://store"\n')
    result = gateway("check-config", env=clean_env(GATEWAY_CONFIG=str(bad)), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("gateway: config error: upstream.url: ")


def test_serve_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, listen="127.0.0.1:notaport")
    result = gateway("serve", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("gateway: config error: server.listen: ")
    assert "edge listening" not in result.stdout


def test_serve_with_a_bad_env_listen_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = gateway("serve", "-c", str(path), env=clean_env(GATEWAY_LISTEN="nohost"))
    assert result.returncode == 2
    assert result.stderr.startswith("gateway: config error: server.listen: ")


def test_serve_on_a_busy_port_exits_1_naming_the_key(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write_config(tmp_path, listen=f"127.0.0.1:{port}", admin=f"127.0.0.1:{free_port()}")
        result = gateway("serve", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("gateway: server.listen: cannot listen on")


class Running:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in output: {self.output}")


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[Running, int, int]]:
    edge_port, admin_port = free_port(), free_port()
    while admin_port == edge_port:
        admin_port = free_port()
    path = write_config(tmp_path, f"127.0.0.1:{edge_port}", f"127.0.0.1:{admin_port}")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(PYTHONUNBUFFERED="1"),
        cwd=tmp_path,
    )
    try:
        yield Running(process), edge_port, admin_port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_serve_answers_and_stops_on_sigterm(serving: tuple[Running, int, int]) -> None:
    running, edge_port, admin_port = serving
    line = running.wait_for("edge listening on")
    assert line.strip() == f"edge listening on http://127.0.0.1:{edge_port}"
    running.wait_for(f"admin listening on http://127.0.0.1:{admin_port}")
    admin = f"http://127.0.0.1:{admin_port}"

    assert get(f"{admin}/healthz") == (200, json.dumps({"status": "ok"}))
    status, body = get(f"{admin}/readyz")
    assert status == 200 and json.loads(body) == {"status": "ready"}

    # The edge refuses a host it has no site for (never an open proxy).
    status, body = get(f"http://127.0.0.1:{edge_port}/", {"Host": "elsewhere.test"})
    assert status == 421 and json.loads(body)["error"] == "unknown_host"

    status, metrics = get(f"{admin}/metrics")
    assert status == 200
    samples = [line for line in metrics.splitlines() if line and not line.startswith("#")]
    names = {line.split("{")[0].split()[0] for line in samples}
    assert names and all(name.startswith("gateway_") for name in names), names
    assert 'gateway_rejected_requests_total{reason="unknown_host"} 1.0' in samples

    started = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(10) == 0
    assert time.monotonic() - started < 10
    assert running.process.stderr is not None
    assert "Traceback" not in running.process.stderr.read()
