"""The recorder bundle served at ``{prefix}recorder.js``.

Loaded and hashed once at start: the hash goes into the injected tag's URL, so
the file can be cached for a year and a new bundle is a new URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

_WEB = Path(__file__).resolve().parent.parent / "web"
BUNDLE = _WEB / "dist" / "recorder.js"
PLACEHOLDER = _WEB / "recorder-placeholder.js"


@dataclass(frozen=True, slots=True)
class RecorderAsset:
    body: bytes
    digest: str

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'


def load_recorder_asset(path: Path | None = None) -> RecorderAsset:
    source = path or (BUNDLE if BUNDLE.is_file() else PLACEHOLDER)
    body = source.read_bytes()
    return RecorderAsset(body=body, digest=hashlib.sha256(body).hexdigest()[:16])
