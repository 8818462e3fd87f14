"""Runs wrk (closed loop, keep-alive) and reads its numbers from a Lua `done` hook."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"errors\":%d,"
    .. "\"status_errors\":%d,\"p50_us\":%d,\"p99_us\":%d,\"max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""

# POSTs of a JSON body whose "__SESSION__" and "__SEQ__" are filled per request: every
# __PER_SESSION__ requests start a new recording (sequence numbers 0, 1, ... within it),
# so nothing is refused as a duplicate.
_POST = r"""
local counter = 0
local thread_id = 0
local template = [==[__BODY__]==]
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local prefix = ""
init = function(args)
  thread_id = tid or 0
  -- Unique across wrk runs too: a session id seen before would be a duplicate.
  math.randomseed(os.time() + thread_id)
  prefix = string.format("%x%06x", os.time(), math.random(0, 0xffffff))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"
end
request = function()
  counter = counter + 1
  local session = prefix .. "-" .. thread_id .. "-" .. math.floor((counter - 1) / __PER_SESSION__)
  local seq = tostring((counter - 1) % __PER_SESSION__)
  local body = template:gsub("__SESSION__", session, 1):gsub('"__SEQ__"', seq, 1)
  return wrk.format(nil, "__PATH__", nil, body)
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: int  # socket errors and timeouts
    status_errors: int  # answers that were not 2xx/3xx
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.seconds


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: `apt-get install wrk` (the harness does it)")
    return found


def post_script(work: Path, name: str, path: str, body: str, per_session: int = 1) -> Path:
    """A Lua script that POSTs `body` to `path`, "__SESSION__" and "__SEQ__" filled in
    per request, `per_session` batches to a recording."""
    if "]==]" in body:
        raise ValueError("body cannot hold the Lua long-string terminator")
    script = work / f"{name}.lua"
    lua = _POST.replace("__PER_SESSION__", str(per_session)).replace("__PATH__", path)
    script.write_text(lua.replace("__BODY__", body) + _DONE)
    return script


def get_script(work: Path, headers: dict[str, str]) -> Path:
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script = work / f"get-{abs(hash(tuple(headers.items())))}.lua"
    script.write_text("\n".join(lines) + "\n" + _DONE)
    return script


def run_wrk(
    url: str, script: Path, *, connections: int, seconds: float, threads: int = 1
) -> WrkResult:
    argv = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            raw = json.loads(line[len("WRKJSON ") :])
            return WrkResult(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                bytes=raw["bytes"],
                errors=raw["errors"],
                status_errors=raw["status_errors"],
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
            )
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr or done.stdout}")
