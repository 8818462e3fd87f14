"""The embedded store behind a real gateway: batches become recordings the API lists,
filters, replays and erases; the API wants the admin token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import lz4.frame
import pytest

from tests.integration import batches as b
from tests.integration.conftest import (
    FORWARDING,
    GatewayFactory,
    Origin,
    RunningGateway,
    site_config,
)
from tests.integration.recordings import ADMIN_TOKEN, ENDPOINT, NO_RATE_LIMITS, Api

PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
T0 = 1_790_000_000_000  # ms


@pytest.fixture
async def store_gw(origin: Origin, make_gateway: GatewayFactory) -> RunningGateway:
    config = site_config(
        origin.url,
        extra_server=f'admin_token = "{ADMIN_TOKEN}"',
        extra_collect=NO_RATE_LIMITS,
        upstream=FORWARDING,
        extra_store="finalize_after = 0.5\nsweep_interval = 0.1",
    )
    return await make_gateway(config)


async def post(gw: RunningGateway, body: dict[str, Any], ua: str = DESKTOP_UA) -> dict[str, Any]:
    headers = {"User-Agent": ua, "Host": "shop.test", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as client,
        client.post(gw.url + ENDPOINT, data=json.dumps(body), headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        assert answer == {"record": True}
        return answer


def visit(
    session: str,
    *,
    start: float,
    pages: list[str],
    visitor: str | None = None,
    identify: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One batch per page: meta, a full snapshot on the first, a move and a click each."""
    out = []
    for seq, url in enumerate(pages):
        t = start + seq * 5000
        events = [b.meta(url, t=t)]
        if seq == 0:
            events.append(b.signup_snapshot(t=t + 1))
        events += [b.mouse_move(t=t + 2), b.click(11, t=t + 3)]
        if identify and seq == len(pages) - 1:
            events.append(
                {"type": 5, "timestamp": t + 4, "data": {"tag": "identify", "payload": identify}}
            )
        extra = {"visitor": visitor} if visitor else {}
        out.append(b.batch(events, session=session, page=f"p{seq}", seq=0, url=url, **extra))
    return out


async def until(predicate_coro: Any, within: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await predicate_coro()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_a_visit_becomes_one_finalized_recording(store_gw: RunningGateway) -> None:
    pages = ["http://shop.test/signup", "http://shop.test/checkout", "http://shop.test/thanks"]
    for body in visit(
        "visit-1",
        start=T0,
        pages=pages,
        visitor="v-1",
        identify={"name": "Jane Doe", "email": b.EMAIL},
    ):
        await post(store_gw, body)
    api = Api(store_gw.admin_url)

    async def finalized() -> list[dict[str, Any]]:
        return await api.recordings(live="0")

    found = await until(finalized)
    assert len(found) == 1
    rec = found[0]
    assert rec["site"] == "shop"
    assert rec["visitor"] == "v-1"
    assert rec["pages"] == pages
    assert rec["device"] == "desktop" and rec["browser"] == "Firefox"
    assert rec["finalized"] is True
    assert rec["identity"]["name"] == "Jane Doe"
    assert rec["started_at"] == "2026-09-21T14:13:20.000Z"
    assert rec["duration_ms"] == 2 * 5000 + 4
    # 3 pages x (meta, move, click) + the snapshot + identify
    assert rec["events"] == 3 * 3 + 2
    status, one = await api.get(f"/api/v1/recordings/{rec['id']}")
    assert status == 200 and one == rec

    events = await api.events(rec["id"])
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert len(events) == rec["events"]
    assert events[0]["type"] == 4 and events[1]["type"] == 2
    assert "initialOffset" in events[1]["data"]
    # Masked before it was stored: the typed-in values of the snapshot never reach the store.
    text = json.dumps(events)
    for secret in (b.PHONE, b.PASSWORD, b.CARD):
        assert secret not in text
    assert store_gw.metric("gateway_recordings_finalized_total", site="shop") == 1
    assert store_gw.metric("gateway_recordings_started_total", site="shop") == 1
    assert store_gw.metric("gateway_store_events_total", site="shop") == rec["events"]
    assert store_gw.metric("gateway_spool_fsync_seconds_count") >= 1  # grouped fsync
    assert store_gw.metric("gateway_store_ingest_total", outcome="stored") >= 1
    assert store_gw.metric("gateway_exports_total", exporter="local", outcome="ok") >= 1
    assert await store_gw.spooled() == []  # confirmed by the store, acknowledged in the spool


async def test_running_recordings_show_only_with_live(
    origin: Origin, make_gateway: GatewayFactory
) -> None:
    config = site_config(
        origin.url,
        extra_server=f'admin_token = "{ADMIN_TOKEN}"',
        upstream=FORWARDING,
        extra_store="finalize_after = 3600\nsweep_interval = 0.1",
    )
    gw = await make_gateway(config)
    for body in visit("running", start=T0, pages=["http://shop.test/"]):
        await post(gw, body)
    api = Api(gw.admin_url)

    async def live() -> list[dict[str, Any]]:
        return await api.recordings(live="1")

    running = await until(live)
    assert len(running) == 1 and running[0]["finalized"] is False
    assert await api.recordings(live="0") == []


async def test_filters_and_paging(store_gw: RunningGateway) -> None:
    visits = [
        ("s-a", T0, ["http://shop.test/", "http://shop.test/checkout"], DESKTOP_UA, "alice", None),
        (
            "s-b",
            T0 + 60_000,
            ["http://shop.test/"],
            PHONE_UA,
            "bob",
            {"name": "Bob Stone", "email": "bob@shop.example"},
        ),
        (
            "s-c",
            T0 + 120_000,
            ["http://shop.test/blog", "http://shop.test/blog/2", "http://shop.test/x"],
            DESKTOP_UA,
            "carol",
            None,
        ),
    ]
    for session, start, pages, ua, visitor, identify in visits:
        for body in visit(session, start=start, pages=pages, visitor=visitor, identify=identify):
            await post(store_gw, body, ua=ua)
    api = Api(store_gw.admin_url)

    async def three() -> bool:
        return len(await api.recordings(live="0")) == 3

    assert await until(three)

    async def visitors(**params: str) -> list[str]:
        return [r["visitor"] for r in await api.recordings(live="0", **params)]

    assert await visitors() == ["carol", "bob", "alice"]  # newest first
    assert await visitors(device="mobile") == ["bob"]
    assert await visitors(browser="firefox") == ["carol", "alice"]
    assert await visitors(url="checkout") == ["alice"]
    assert await visitors(min_duration="6") == ["carol"]  # seconds
    assert await visitors(visitor="bob stone") == ["bob"]  # identified name
    assert await visitors(visitor="alice") == ["alice"]
    assert await visitors(**{"from": "2026-09-21T14:14:10Z"}) == ["carol", "bob"]
    assert await visitors(to="2026-09-21T14:14:10Z") == ["alice"]
    assert await visitors(site="shop") == ["carol", "bob", "alice"]
    # Paging: one at a time, in order, no repeats.
    seen: list[str] = []
    params = {"limit": "1", "live": "0"}
    for _ in range(4):
        status, body = await api.get("/api/v1/recordings", **params)
        assert status == 200
        seen += [r["visitor"] for r in body["recordings"]]
        if body["next"] is None:
            break
        params["cursor"] = body["next"]
    assert seen == ["carol", "bob", "alice"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"min_duration": "-1"}, "min_duration"),
        ({"min_duration": "abc"}, "min_duration"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"live": "maybe"}, "live"),
        ({"site": "nope"}, "site"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    store_gw: RunningGateway, params: dict[str, str], named: str
) -> None:
    status, body = await Api(store_gw.admin_url).get("/api/v1/recordings", **params)
    assert status == 400
    assert body["error"] == "bad_request"
    assert body["detail"].startswith(f"{named}:")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/recordings",
        "/api/v1/recordings/0123",
        "/api/v1/recordings/0123/events",
        "/api/v1/sites/shop/usage",
    ],
)
async def test_the_api_wants_the_admin_token(store_gw: RunningGateway, path: str) -> None:
    async with aiohttp.ClientSession() as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
            async with client.get(store_gw.admin_url + path, headers=headers) as response:
                assert response.status == 401
                assert (await response.json())["error"] == "unauthorized"
        async with client.get(
            store_gw.admin_url + path, cookies={"gateway_admin": ADMIN_TOKEN}
        ) as response:
            assert response.status in (200, 404)
        async with client.delete(store_gw.admin_url + "/api/v1/visitors/x") as response:
            assert response.status == 401
    # Metrics and health stay open to the scraper.
    async with aiohttp.ClientSession() as client, client.get(store_gw.admin_url + "/metrics") as r:
        assert r.status == 200


async def raw_status(url: str, request: bytes) -> int:
    """The status line's code of a request sent as these exact bytes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return int((await reader.readline()).split()[1])
    finally:
        writer.close()


@pytest.mark.parametrize(
    "credentials",
    [b"Authorization: Bearer \xff\xfe", b"Cookie: gateway_admin=\xff\xfe"],
)
async def test_a_token_that_is_not_utf8_is_401_not_500(
    store_gw: RunningGateway, credentials: bytes
) -> None:
    request = b"GET /api/v1/recordings HTTP/1.1\r\nHost: admin\r\n" + credentials
    assert await raw_status(store_gw.admin_url, request + b"\r\nConnection: close\r\n\r\n") == 401


async def test_no_token_configured_keeps_the_api_closed(
    origin: Origin, make_gateway: GatewayFactory
) -> None:
    gw = await make_gateway(site_config(origin.url, upstream=FORWARDING))
    status, body = await Api(gw.admin_url, token="").get("/api/v1/recordings")
    assert status == 401
    assert "server.admin_token" in body["detail"]


async def test_unknown_recording_is_404(store_gw: RunningGateway) -> None:
    api = Api(store_gw.admin_url)
    for path in ("/api/v1/recordings/ffff", "/api/v1/recordings/ffff/events"):
        status, body = await api.get(path)
        assert status == 404 and body["error"] == "not_found"
    status, body = await api.get("/api/v1/sites/nope/usage")
    assert status == 404


async def test_usage_counts_the_month_and_what_is_stored(store_gw: RunningGateway) -> None:
    for i in range(3):
        for body in visit(f"u-{i}", start=T0 + i * 60_000, pages=["http://shop.test/"]):
            await post(store_gw, body)
    api = Api(store_gw.admin_url)

    async def stored() -> bool:
        status, body = await api.get("/api/v1/sites/shop/usage")
        return status == 200 and body["stored"] == 3

    assert await until(stored)
    _, usage = await api.get("/api/v1/sites/shop/usage")
    assert usage["used"] == 3
    assert usage["limit"] == 10_000 and usage["remaining"] == 9_997
    assert usage["plan"] == "standard"
    assert len(usage["month"]) == 7


async def test_erasing_a_visitor_removes_recordings_and_files(
    store_gw: RunningGateway, tmp_path: Path
) -> None:
    for session, visitor in (("e-1", "erase-me"), ("e-2", "erase-me"), ("e-3", "keep-me")):
        for body in visit(session, start=T0, pages=["http://shop.test/"], visitor=visitor):
            await post(store_gw, body)
    api = Api(store_gw.admin_url)

    async def three() -> bool:
        return len(await api.recordings()) == 3

    assert await until(three)
    store_dir = Path(store_gw.gateway.config.server.data_dir) / "store"
    segments_before = list(store_dir.rglob("*.seg"))
    assert len(segments_before) == 3
    async with (
        aiohttp.ClientSession(headers=api.headers) as client,
        client.delete(store_gw.admin_url + "/api/v1/visitors/erase-me") as response,
    ):
        assert response.status == 200
        assert await response.json() == {"visitor": "erase-me", "deleted": 2}
    assert [r["visitor"] for r in await api.recordings()] == ["keep-me"]
    assert len(list(store_dir.rglob("*.seg"))) == 1
    _, usage = await api.get("/api/v1/sites/shop/usage")
    assert usage["stored"] == 1 and usage["used"] == 3  # erasure gives no quota back
    assert store_gw.metric("gateway_recordings_erased_total", site="shop") == 2


async def test_an_event_time_past_year_9999_does_not_break_the_api(
    store_gw: RunningGateway,
) -> None:
    # Event times are the browser's: one absurd timestamp must not make every list that
    # would show its recording a 500.
    url = "http://shop.test/"
    events = [b.meta(url, t=T0), b.mouse_move(t=T0 + 2), b.click(11, t=1e18), b.click(t=-1e18)]
    await post(store_gw, b.batch(events, session="far-future", page="p0", seq=0, url=url))
    api = Api(store_gw.admin_url)

    async def listed() -> list[dict[str, Any]]:
        return await api.recordings(live="1")

    [rec] = await until(listed)
    assert rec["started_at"] == "2026-09-21T14:13:20.000Z"
    assert (rec["duration_ms"], rec["events"]) == (2, 2)
    status, one = await api.get(f"/api/v1/recordings/{rec['id']}")
    assert status == 200 and one["id"] == rec["id"]


async def test_a_url_that_masking_lengthens_is_still_stored(store_gw: RunningGateway) -> None:
    # Masking turns each short query value into a longer mask: this URL (within the
    # schema's 8192 characters as sent) would be past it once masked; the gateway
    # shortens it, so the acknowledged batch stays valid and is stored.
    url = "http://shop.test/?" + "&".join(["a=1"] * 2000)
    assert len(url) < 8192
    events = [b.meta(url, t=T0), b.mouse_move(t=T0 + 2), b.click(11, t=T0 + 3)]
    await post(store_gw, b.batch(events, session="long-url", page="p0", seq=0, url=url))
    api = Api(store_gw.admin_url)

    async def stored() -> list[dict[str, Any]]:
        return await api.recordings()

    [recording] = await until(stored)
    assert recording["events"] == 3
    assert store_gw.metric("gateway_dead_letters_total", exporter="local") == 0


async def test_an_acknowledged_record_that_cannot_be_batched_is_set_aside(
    store_gw: RunningGateway,
) -> None:
    # A record in the spool that does not decode (damage, or a schema change across an
    # upgrade) was acknowledged: it must end up in the dead-letter folder, never nowhere.
    assert store_gw.gateway.sink is not None
    await store_gw.gateway.sink.spool.append(b"\x93not a masked batch: long-url")
    folder = Path(store_gw.gateway.config.server.data_dir) / "dead-letter"

    async def set_aside() -> list[Path]:
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    [info_path] = await until(set_aside)
    info = json.loads(info_path.read_text())
    assert info["records"] == 1 and "undecodable" in info["reason"]
    assert b"long-url" in lz4.frame.decompress(info_path.with_suffix(".lz4").read_bytes())
    assert await store_gw.spooled() == []
    assert store_gw.metric("gateway_dead_letters_total", exporter="local") == 1
