"""`gateway recordings export ID`: one recording's events as JSON lines, from the API.

It asks the running node's admin API (the one in the config, or --admin URL)
with the admin token, rather than opening the store files itself: a store in
use belongs to its process.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from gateway.config import Config, parse_listen

EXIT_FAILED = 1


def admin_base(config: Config, override: str | None) -> str:
    if override:
        return override.rstrip("/")
    host, port = parse_listen(config.server.admin_listen, "server.admin_listen")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"  # a wildcard listener is reached on loopback
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def export_recording(
    config: Config, recording_id: str, output: str | None, admin: str | None
) -> int:
    url = f"{admin_base(config, admin)}/api/v1/recordings/{recording_id}/export"
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {config.server.admin_token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            if output in (None, "-"):
                _copy(answer, sys.stdout.buffer)
            else:
                with Path(output).open("wb") as file:
                    _copy(answer, file)
    except urllib.error.HTTPError as exc:
        print(f"gateway: {url}: {exc.code} {_detail(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"gateway: cannot reach the admin API at {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _copy(source: BinaryIO, target: BinaryIO) -> None:
    while chunk := source.read(1 << 16):
        target.write(chunk)
    target.flush()


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["detail"])
    except (ValueError, KeyError, TypeError):
        return str(error.reason)
