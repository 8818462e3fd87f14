"""`/__rec/recorder.js`: the bundle, content-hashed, cached for a year, revalidated by ETag."""

from __future__ import annotations

import aiohttp

from tests.integration.conftest import Origin, RunningGateway


async def test_recorder_served_with_hash_long_cache_and_etag(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin
) -> None:
    asset = gw.gateway.recorder
    async with client.get(gw.url + "/html") as response:
        page = await response.read()
    assert f"/__rec/recorder.js?v={asset.digest}".encode() in page
    async with client.get(gw.url + f"/__rec/recorder.js?v={asset.digest}") as response:
        assert response.status == 200
        assert response.content_type == "application/javascript"
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.headers["ETag"] == f'"{asset.digest}"'
        assert await response.read() == asset.body
    async with client.get(gw.url + "/__rec/recorder.js?v=old") as response:
        # Another version's URL must not be pinned for a year to this content.
        assert response.headers["Cache-Control"] == "public, max-age=300"
    async with client.get(
        gw.url + "/__rec/recorder.js", headers={"If-None-Match": f'"{asset.digest}"'}
    ) as response:
        assert response.status == 304
        assert await response.read() == b""
    async with client.post(gw.url + "/__rec/recorder.js") as response:
        assert response.status == 405
        assert (await response.json())["error"] == "method_not_allowed"
    assert [r for r in origin.state.requests if "__rec" in r["raw_path"]] == []
