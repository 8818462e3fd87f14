"""The recorder bundle (gateway/web): built from package-lock.json, self-contained, picked up.

`make setup` runs `npm ci && npm run build`; the fixture builds again only when
the bundle is missing or older than its sources. The loader's own unit tests
(node's test runner, gateway/web/test/) run through `npm test`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.edge import recorder_asset

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "gateway" / "web"
DIST = WEB / "dist"
BUNDLE = DIST / "recorder.js"
MAX_BYTES = 200_000

# Strings that would mean dynamic code or workers, which strict CSPs block.
FORBIDDEN = ("eval(", "new Function(", "importScripts", "new Worker", "createObjectURL")
# rrweb-snapshot leaves a page's own blob: URLs as they are when it absolutifies
# URLs (a regex and a startsWith test); no other `blob:` may be in the bundle.
BLOB_PASSTHROUGH = ("/^blob:/i", '"blob:"')


def _npm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    npm = shutil.which("npm")
    assert npm, "npm is needed to build the recorder bundle (Node 18+)"
    return subprocess.run(
        [npm, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _stale() -> bool:
    if not BUNDLE.is_file():
        return True
    built = BUNDLE.stat().st_mtime
    sources = [
        *(WEB / "src").glob("*.js"),
        *(WEB / "app").glob("*.*"),
        WEB / "build.mjs",
        ROOT / "package-lock.json",
    ]
    return any(p.stat().st_mtime > built for p in sources)


@pytest.fixture(scope="module")
def bundle() -> str:
    if _stale():
        if not (ROOT / "node_modules" / "rrweb").is_dir():
            done = _npm("ci", "--no-audit", "--no-fund")
            assert done.returncode == 0, done.stdout + done.stderr
        done = _npm("run", "build")
        assert done.returncode == 0, done.stdout + done.stderr
    return BUNDLE.read_text(encoding="utf-8")


def test_one_small_file(bundle: str) -> None:
    # The recorder plus the dashboard's own assets, nothing else (no chunks, no maps).
    assert sorted(p.name for p in DIST.iterdir()) == [
        "app.css",
        "dashboard.js",
        "player.js",
        "recorder.js",
        "rrweb.css",
    ]
    size = BUNDLE.stat().st_size
    assert 20_000 < size < MAX_BYTES, size


def test_no_dynamic_code_workers_or_imports(bundle: str) -> None:
    for needle in FORBIDDEN:
        assert needle not in bundle, needle
    rest = bundle
    for allowed in BLOB_PASSTHROUGH:
        rest = rest.replace(allowed, "")
    assert "blob:" not in rest.lower()
    assert "sourceMappingURL" not in bundle
    assert re.search(r"\bimport\s*\(|^\s*import\s|\brequire\(", bundle, re.MULTILINE) is None


def test_one_iife_that_a_browser_parses_as_a_classic_script(bundle: str) -> None:
    assert bundle.startswith("/*!")
    assert "(()=>{" in bundle[:200]
    node = shutil.which("node")
    assert node
    parse = "new (require('vm').Script)(require('fs').readFileSync(process.argv[1], 'utf8'))"
    done = subprocess.run(
        [node, "-e", parse, str(BUNDLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_loader_features_are_in(bundle: str) -> None:
    # The tag attribute, the page API, the storage and cookie names, the gzip header.
    for needle in ("data-rec-settings", "__rec", "__rec_sid", "__rec_vid", "Content-Encoding"):
        assert needle in bundle, needle


def test_asset_loader_serves_the_bundle(bundle: str) -> None:
    asset = recorder_asset.load_recorder_asset()
    assert asset.body == BUNDLE.read_bytes()
    placeholder = recorder_asset.PLACEHOLDER.read_bytes()
    assert asset.digest == hashlib.sha256(asset.body).hexdigest()[:16]
    assert asset.digest != hashlib.sha256(placeholder).hexdigest()[:16]


def test_loader_unit_tests_pass(bundle: str) -> None:
    done = _npm("test", timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
