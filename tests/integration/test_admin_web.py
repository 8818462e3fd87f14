"""The admin listener's web side: pages and assets, signing in, share links, export."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from gateway import cli
from tests.integration.conftest import (
    FORWARDING,
    GatewayFactory,
    Origin,
    RunningGateway,
    site_config,
)
from tests.integration.recordings import ADMIN_TOKEN, Api
from tests.integration.test_store_api import T0, post, visit

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def admin_gw(origin: Origin, make_gateway: GatewayFactory) -> RunningGateway:
    config = site_config(
        origin.url,
        extra_server=f'admin_token = "{ADMIN_TOKEN}"',
        upstream=FORWARDING,
        extra_store="finalize_after = 3600\nsweep_interval = 0.1\nretention_days = 2",
    )
    return await make_gateway(config)


async def one_recording(gw: RunningGateway, visitor: str = "v-share") -> dict[str, Any]:
    for body in visit(
        "web-1",
        start=T0,
        pages=["http://shop.test/a", "http://shop.test/b"],
        visitor=visitor,
        identify={"name": "Jane Doe", "email": "jane@shop.example"},
    ):
        await post(gw, body)
    api = Api(gw.admin_url)
    for _ in range(200):
        found = await api.recordings()
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no recording")


async def fetch(
    url: str, method: str = "GET", **kwargs: Any
) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as client, client.request(method, url, **kwargs) as r:
        return r.status, CIMultiDict(r.headers), await r.read()


async def test_pages_carry_a_strict_csp_and_versioned_assets(admin_gw: RunningGateway) -> None:
    for path in ("/", "/recordings/abc", "/share/abc.def"):
        status, headers, body = await fetch(admin_gw.admin_url + path)
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["Referrer-Policy"] == "no-referrer"
        assert b"<script" in body and b"?v=" in body
    _, _, page = await fetch(admin_gw.admin_url + "/")
    asset = page.split(b'src="', 1)[1].split(b'"', 1)[0].decode()
    assert asset.startswith("/assets/dashboard.js?v=")
    status, headers, body = await fetch(admin_gw.admin_url + asset)
    assert status == 200 and "immutable" in headers["Cache-Control"]
    assert headers["Content-Type"].startswith(("application/javascript", "text/javascript"))
    status, headers, _ = await fetch(
        admin_gw.admin_url + asset, headers={"If-None-Match": headers["ETag"]}
    )
    assert status == 304
    status, headers, _ = await fetch(admin_gw.admin_url + "/assets/dashboard.js")
    assert status == 200 and headers["Cache-Control"] == "no-cache"
    status, _, _ = await fetch(admin_gw.admin_url + "/assets/..%2Fpages%2Fdashboard.html")
    assert status == 404


async def test_sign_in_sets_a_strict_cookie_and_sign_out_clears_it(
    admin_gw: RunningGateway,
) -> None:
    url = admin_gw.admin_url + "/api/v1/session"
    # unsafe: keep cookies of an IP-address host (the admin listener is 127.0.0.1 here).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(url) as r:
            assert r.status == 401
        async with client.post(url, json={"token": "wrong"}) as r:
            assert r.status == 401
        async with client.post(url, data=b"not json") as r:
            assert r.status == 400
        async with client.post(url, json={"token": ADMIN_TOKEN}) as r:
            assert r.status == 204
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        async with client.get(url) as r:
            assert r.status == 200
            body = await r.json()
            assert [s["key"] for s in body["sites"]] == ["shop"]
            assert body["sites"][0]["limit"] == 10_000
            assert r.headers["Cache-Control"] == "no-store"
        async with client.delete(url, json={}) as r:
            assert r.status == 204
        async with client.get(url) as r:
            assert r.status == 401


async def test_cookie_calls_that_change_something_must_be_json(admin_gw: RunningGateway) -> None:
    """A form on another site cannot delete recordings with the admin's cookie."""
    cookies = {"gateway_admin": ADMIN_TOKEN}
    target = admin_gw.admin_url + "/api/v1/visitors/someone"
    status, _, body = await fetch(
        target, "DELETE", cookies=cookies, data=b"", headers={"Content-Type": "text/plain"}
    )
    assert status == 403 and json.loads(body)["error"] == "forbidden"
    status, _, _ = await fetch(target, "DELETE", cookies=cookies, json={})
    assert status == 200
    status, _, _ = await fetch(target, "DELETE", headers=BEARER)  # a bearer token is no cookie
    assert status == 200


async def test_share_links_open_without_the_token_until_revoked(
    admin_gw: RunningGateway,
) -> None:
    recording = await one_recording(admin_gw)
    base = admin_gw.admin_url
    status, _, body = await fetch(
        f"{base}/api/v1/recordings/{recording['id']}/share", "POST", headers=BEARER, json={}
    )
    assert status == 201
    share = json.loads(body)
    # 7 days asked by default, but the recording is deleted after 2: the link ends then.
    assert share["expires_at"] == recording["expires_at"]
    token = share["url"].rsplit("/share/", 1)[1]
    assert share["url"] == f"{base}/share/{token}"

    status, headers, body = await fetch(f"{base}/share/{token}/api/recording")
    assert status == 200 and headers["Cache-Control"] == "private, no-store"
    shared = json.loads(body)
    assert shared["id"] == recording["id"] and shared["events"] == recording["events"]
    assert shared["visitor"] is None and shared["identity"] == {}
    assert b"Jane" not in body and b"v-share" not in body
    assert shared["share"]["expires_at"] == share["expires_at"]
    status, _, events = await fetch(f"{base}/share/{token}/api/events")
    assert status == 200 and len(json.loads(events)) == recording["events"]
    # The shared link is no key to the admin API.
    status, _, _ = await fetch(f"{base}/api/v1/recordings/{recording['id']}")
    assert status == 401

    status, _, body = await fetch(
        f"{base}/api/v1/recordings/{recording['id']}/shares", headers=BEARER
    )
    assert [s["id"] for s in json.loads(body)["shares"]] == [share["id"]]
    status, _, _ = await fetch(f"{base}/api/v1/shares/{share['id']}", "DELETE", headers=BEARER)
    assert status == 204
    status, _, body = await fetch(f"{base}/share/{token}/api/recording")
    assert status == 410 and json.loads(body)["error"] == "revoked"
    status, _, body = await fetch(f"{base}/share/{token[:-2]}xx/api/recording")
    assert status == 404
    status, _, _ = await fetch(f"{base}/api/v1/shares/{'0' * 32}", "DELETE", headers=BEARER)
    assert status == 404


async def test_a_short_share_expires(admin_gw: RunningGateway) -> None:
    recording = await one_recording(admin_gw)
    status, _, body = await fetch(
        f"{admin_gw.admin_url}/api/v1/recordings/{recording['id']}/share",
        "POST",
        headers=BEARER,
        json={"days": 3 / 86400},
    )
    assert status == 201
    url = json.loads(body)["url"]
    assert (await fetch(url + "/api/recording"))[0] == 200
    await asyncio.sleep(3.2)
    status, _, body = await fetch(url + "/api/recording")
    assert status == 410 and json.loads(body)["error"] == "expired"


@pytest.mark.parametrize("days", [0, -1, 366, "7", True, None])
async def test_bad_share_lengths_are_400(admin_gw: RunningGateway, days: object) -> None:
    recording = await one_recording(admin_gw)
    status, _, body = await fetch(
        f"{admin_gw.admin_url}/api/v1/recordings/{recording['id']}/share",
        "POST",
        headers=BEARER,
        json={"days": days},
    )
    assert status == 400 and json.loads(body)["detail"].startswith("days:")


async def test_share_of_an_unknown_recording_is_404(admin_gw: RunningGateway) -> None:
    status, _, _ = await fetch(
        f"{admin_gw.admin_url}/api/v1/recordings/{'f' * 32}/share", "POST", headers=BEARER, json={}
    )
    assert status == 404


async def test_export_is_json_lines_and_the_cli_writes_it(
    admin_gw: RunningGateway, tmp_path: Path
) -> None:
    recording = await one_recording(admin_gw)
    status, headers, body = await fetch(
        f"{admin_gw.admin_url}/api/v1/recordings/{recording['id']}/export", headers=BEARER
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/x-ndjson")
    assert headers["Content-Disposition"] == (
        f'attachment; filename="recording-{recording["id"]}.jsonl"'
    )
    lines = body.decode().splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == recording["events"]
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)

    config = tmp_path / "cli.toml"
    port = admin_gw.admin_url.rsplit(":", 1)[1]
    config.write_text(
        f'[server]\nadmin_listen = "127.0.0.1:{port}"\nadmin_token = "{ADMIN_TOKEN}"\n'
    )
    out = tmp_path / "export.jsonl"
    code = await asyncio.to_thread(
        cli.main, ["recordings", "export", recording["id"], "-o", str(out), "-c", str(config)]
    )
    assert code == 0
    assert out.read_bytes() == body
    missing = await asyncio.to_thread(
        cli.main, ["recordings", "export", "f" * 32, "-o", str(out), "-c", str(config)]
    )
    assert missing == 1


async def test_an_edge_with_a_remote_store_has_no_api(
    origin: Origin, make_gateway: GatewayFactory
) -> None:
    gw = await make_gateway(
        site_config(
            origin.url,
            extra_server=f'admin_token = "{ADMIN_TOKEN}"',
            upstream='url = "http://127.0.0.1:9"',
        )
    )
    status, _, body = await fetch(gw.admin_url + "/api/v1/recordings", headers=BEARER)
    assert status == 404 and json.loads(body)["error"] == "no_store"
    assert (await fetch(gw.admin_url + "/favicon.ico"))[0] == 204
