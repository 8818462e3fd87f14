"""The collect endpoint against a real gateway: answers, policy, masking, quota."""

from __future__ import annotations

import asyncio
import gzip
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from multidict import CIMultiDictProxy

from gateway.app import Gateway
from tests.integration import batches as b
from tests.integration.conftest import (
    GatewayFactory,
    Origin,
    RunningGateway,
    raw_exchange,
    site_config,
)

ENDPOINT = "/__rec/v1/batch"


async def post(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    body: dict[str, Any] | bytes,
    **headers: str,
) -> tuple[int, dict[str, Any], CIMultiDictProxy[str]]:
    data = body if isinstance(body, bytes) else b.encoded(body)
    sent = {
        "Content-Type": "application/json",
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    async with client.post(gw.url + ENDPOINT, data=data, headers=sent) as response:
        return response.status, await response.json(), response.headers


async def stored(gw: RunningGateway) -> list[bytes]:
    return [msgspec.json.encode(item) for item in await gw.spooled()]


async def test_first_batch_is_stored_masked(
    gw: RunningGateway, client: aiohttp.ClientSession, origin: Origin
) -> None:
    status, answer, _ = await post(client, gw, b.first_batch())
    assert (status, answer) == (200, {"record": True})
    [item] = await stored(gw)
    for secret in (b.EMAIL, b.CARD, b.PHONE, b.PASSWORD, b.CARD.replace(" ", "")):
        assert secret.encode() not in item, secret
    assert b"Sign up" in item  # a submit button's label is not personal data
    assert origin.state.requests == []  # nothing under /__rec/ reaches the origin
    assert gw.metric("gateway_collect_batches_total", site="shop", outcome="stored") == 1
    assert gw.metric("gateway_masked_values_total", site="shop", kind="password") >= 1
    assert gw.metric("gateway_quota_used", site="shop") == 1
    assert gw.metric("gateway_quota_limit", site="shop") == 10_000


async def test_gzip_body_accepted(gw: RunningGateway, client: aiohttp.ClientSession) -> None:
    body = gzip.compress(b.encoded(b.first_batch()))
    status, answer, _ = await post(client, gw, body, Content_Encoding="gzip")
    assert (status, answer) == (200, {"record": True})
    status, answer, _ = await post(
        client, gw, gzip.compress(b.encoded(b.first_batch(seq=1))), X_Rec_Encoding="gzip"
    )
    assert (status, answer) == (200, {"record": True})
    assert len(await stored(gw)) == 2


async def test_no_activity_is_never_recorded(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    quiet = b.batch([b.meta(), b.signup_snapshot()])
    status, answer, _ = await post(client, gw, quiet)
    assert (status, answer) == (200, {"record": False, "reason": "no_activity"})
    assert await stored(gw) == []
    assert gw.metric("gateway_quota_used", site="shop") == 0
    # Once started, a batch without activity (a mutation, say) belongs to the recording.
    await post(client, gw, b.first_batch())
    status, answer, _ = await post(client, gw, b.batch([b.meta()], seq=1))
    assert answer == {"record": True}


async def test_repeated_seq_is_not_stored_twice(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for _ in range(3):
        status, answer, _ = await post(client, gw, b.first_batch())
        assert (status, answer) == (200, {"record": True})
    assert len(await stored(gw)) == 1
    assert gw.metric("gateway_collect_batches_total", site="shop", outcome="duplicate") == 2


async def test_lone_surrogates_become_replacement_characters(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    raw = b.encoded(b.first_batch()).replace(b"Welcome to", b"Welcome \\ud83d to")
    status, answer, _ = await post(client, gw, raw)
    assert (status, answer) == (200, {"record": True})
    assert "Welcome \ufffd to".encode() in (await stored(gw))[0]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda x: x.update(session="bad id!"), "session"),
        (lambda x: x.update(session="x" * 71), "session"),
        (lambda x: x.update(seq=-1), "seq"),
        (
            lambda x: x["events"].append({"type": 3, "timestamp": 1, "data": {"source": 99}}),
            "events[8].data.source",
        ),
        (lambda x: x["events"].append({"type": 42, "timestamp": 1, "data": {}}), "events[8].type"),
        (lambda x: x["events"][0]["data"].pop("href"), "events[0].data"),
        (lambda x: x.update(extra=1), "extra"),
    ],
)
async def test_malformed_batches_are_400_naming_the_field(
    gw: RunningGateway, client: aiohttp.ClientSession, mutate: Any, field: str
) -> None:
    body = b.first_batch()
    mutate(body)
    status, answer, _ = await post(client, gw, body)
    assert status == 400
    assert answer["error"] == "bad_batch"
    assert answer["detail"].startswith(field), answer
    assert await stored(gw) == []


async def test_bad_inputs_each_get_their_status(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_collect="max_body_bytes = 4096\nmax_decoded_bytes = 65536")
    body = b.encoded(b.first_batch())
    async with client.post(
        gw.url + ENDPOINT, data=body, headers={"Content-Type": "image/png"}
    ) as r:
        assert (r.status, (await r.json())["error"]) == (415, "unsupported_media_type")
    async with client.get(gw.url + ENDPOINT) as r:
        assert r.status == 405
    status, answer, _ = await post(client, gw, b"x" * 5000)
    assert (status, answer["error"]) == (413, "body_too_large")
    bomb = gzip.compress(b"[" + b" " * 1_000_000 + b"]")
    assert len(bomb) < 4096
    status, answer, _ = await post(client, gw, bomb, Content_Encoding="gzip")
    assert (status, answer["error"]) == (413, "body_too_large")
    status, answer, _ = await post(client, gw, b"not gzip at all", Content_Encoding="gzip")
    assert (status, answer["error"]) == (400, "bad_batch")
    status, answer, _ = await post(client, gw, body[:3000], Content_Encoding="br")
    assert (status, answer["error"]) == (415, "unsupported_encoding")
    status, answer, _ = await post(client, gw, b"{not json")
    assert (status, answer["error"]) == (400, "bad_batch")
    assert await stored(gw) == []


async def test_foreign_origin_is_403(gw: RunningGateway, client: aiohttp.ClientSession) -> None:
    status, answer, _ = await post(client, gw, b.first_batch(), Origin="https://evil.example")
    assert (status, answer["error"]) == (403, "forbidden_origin")
    status, answer, _ = await post(client, gw, b.first_batch(), Origin="http://shop.test")
    assert (status, answer) == (200, {"record": True})


async def test_rate_limited_per_session_with_retry_after(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_collect="session_rate = 0.5\nsession_burst = 2")
    answers = [await post(client, gw, b.first_batch(seq=seq)) for seq in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    status, answer, headers = answers[2]
    assert answer["error"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1
    # Another session is not held back by the first one's bucket.
    status, _, _ = await post(client, gw, b.first_batch(session="sess-2"))
    assert status == 200


async def test_rate_limited_per_ip(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_collect="ip_rate = 0.5\nip_burst = 3")
    statuses = [(await post(client, gw, b.first_batch(session=f"s-{n}")))[0] for n in range(4)]
    assert statuses == [200, 200, 200, 429]


REFUSALS = [
    pytest.param({"recording": "enabled = false"}, {}, {}, "disabled", id="disabled"),
    pytest.param(
        {"recording": 'consent = "opt-in"'}, {}, {}, "consent", id="opt-in-without-consent"
    ),
    pytest.param({}, {"consent": False}, {}, "consent", id="consent-withdrawn"),
    pytest.param({}, {}, {"Sec-GPC": "1"}, "gpc", id="gpc"),
    pytest.param({}, {"url": "http://shop.test/admin/users"}, {}, "excluded", id="excluded-url"),
    pytest.param(
        {"recording": 'block = { ips = ["127.0.0.0/8"] }'}, {}, {}, "blocked", id="blocked-ip"
    ),
    pytest.param(
        {"recording": 'block = { visitors = ["staff-1"] }'},
        {"visitor": "staff-1"},
        {},
        "blocked",
        id="blocked-visitor",
    ),
    pytest.param(
        {"recording": "record_mobile = false"},
        {},
        {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"},
        "mobile",
        id="mobile",
    ),
    pytest.param(
        {}, {}, {"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}, "bot", id="bot"
    ),
    pytest.param({"recording": "sample_rate = 0.0"}, {}, {}, "sampled_out", id="sampled-out"),
]


@pytest.mark.parametrize(("config", "fields", "headers", "reason"), REFUSALS)
async def test_every_policy_reason(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    config: dict[str, str],
    fields: dict[str, Any],
    headers: dict[str, str],
    reason: str,
) -> None:
    gw = await make_gateway(**config)
    body = b.first_batch(**fields)
    async with client.post(
        gw.url + ENDPOINT,
        data=b.encoded(body),
        headers={"Content-Type": "application/json", **headers},
    ) as response:
        assert response.status == 200
        assert await response.json() == {"record": False, "reason": reason}
    assert await stored(gw) == []
    assert gw.metric("gateway_collect_refusals_total", site="shop", reason=reason) == 1


async def test_opt_in_records_with_consent_flag_or_cookie(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(
        recording='consent = "opt-in"\nconsent_cookie = { name = "cookieyes-consent", values = ["analytics:yes"] }'
    )
    _, answer, _ = await post(client, gw, b.first_batch(consent=True))
    assert answer == {"record": True}
    _, answer, _ = await post(
        client,
        gw,
        b.first_batch(session="s-2"),
        Cookie="cookieyes-consent=consent:yes,analytics:yes,ads:no",
    )
    assert answer == {"record": True}


async def test_quota_stops_new_recordings_and_survives_restart(
    origin: Origin, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    def config() -> Any:
        made = site_config(origin.url, extra_site="monthly_limit = 2")
        made.server.data_dir = str(tmp_path)
        return made

    gateway = Gateway(config())
    listening = await gateway.start()
    gw = RunningGateway(gateway, f"http://127.0.0.1:{listening.edge[1]}", "", listening.edge[1])
    try:
        for session in ("a", "b"):
            assert (await post(client, gw, b.first_batch(session=session)))[1] == {"record": True}
        assert (await post(client, gw, b.first_batch(session="c")))[1] == {
            "record": False,
            "reason": "quota",
        }
        # A recording already running may finish.
        assert (await post(client, gw, b.first_batch(session="a", seq=1)))[1] == {"record": True}
    finally:
        await gateway.stop()
    gateway = Gateway(config())
    listening = await gateway.start()
    gw = RunningGateway(gateway, f"http://127.0.0.1:{listening.edge[1]}", "", listening.edge[1])
    try:
        answer = (await post(client, gw, b.first_batch(session="d")))[1]
        assert answer == {"record": False, "reason": "quota"}
        assert (await post(client, gw, b.first_batch(session="b", seq=1)))[1] == {"record": True}
    finally:
        await gateway.stop()


async def test_spool_full_is_503_with_retry_after(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_spool="max_bytes = 65536\nsegment_bytes = 16384")
    spool = gw.gateway.sink.spool if gw.gateway.sink else None
    assert spool is not None
    # Fill the spool to its bound: less room left than any batch needs. Delivery is
    # stopped first: it would set the filler records aside as fast as they come.
    assert gw.gateway.delivery is not None
    await gw.gateway.delivery.drain(time.monotonic())
    config = gw.gateway.config.spool
    assert (await post(client, gw, b.first_batch()))[0] == 200
    while spool.depth_bytes + 600 <= config.max_bytes:
        await spool.append(b"x" * 512)
    status, answer, headers = await post(client, gw, b.first_batch(seq=1))
    assert (status, answer["error"]) == (503, "busy")
    assert headers["Retry-After"] == "5"
    # Not marked as seen: once upstream confirms the backlog, the retry is stored.
    records = await spool.read(max_records=100_000, max_bytes=1 << 30)
    await spool.ack(records[-1].position)
    assert (await post(client, gw, b.first_batch(seq=1)))[1] == {"record": True}


async def test_origin_compared_by_host_behind_tls_proxy(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    # The visitor's page is https at the load balancer; the gateway listens on http.
    status, answer, _ = await post(client, gw, b.first_batch(), Origin="https://shop.test")
    assert (status, answer) == (200, {"record": True})
    status, answer, _ = await post(
        client, gw, b.first_batch(seq=1), Origin="https://shop.test.evil"
    )
    assert (status, answer["error"]) == (403, "forbidden_origin")


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "http://shop.test/#/admin/users"},
        {"url": "http://shop.test/#!/admin/users?x=1"},
    ],
)
async def test_hash_routes_are_checked_against_exclusions(
    gw: RunningGateway, client: aiohttp.ClientSession, fields: dict[str, str]
) -> None:
    _, answer, _ = await post(client, gw, b.first_batch(**fields))
    assert answer == {"record": False, "reason": "excluded"}


async def test_meta_href_hash_route_excluded(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    body = b.first_batch()
    body["events"].append(b.meta("http://shop.test/app#/admin/x"))
    _, answer, _ = await post(client, gw, body)
    assert answer == {"record": False, "reason": "excluded"}


async def test_unparsable_urls_are_400_not_unexcluded(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    status, answer, _ = await post(client, gw, b.first_batch(url="http://[shop.test/admin/x"))
    assert (status, answer["error"]) == (400, "bad_batch")
    assert answer["detail"].startswith("url:")
    body = b.first_batch()
    body["events"][0]["data"]["href"] = "http://[shop.test/admin/x"
    status, answer, _ = await post(client, gw, body)
    assert (status, answer["detail"][:20]) == (400, "events[0].data.href:")


async def test_new_sessions_per_address_are_bounded(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_collect="new_sessions_per_hour = 1.0\nnew_sessions_burst = 2")
    statuses = [(await post(client, gw, b.first_batch(session=f"s-{n}")))[0] for n in range(3)]
    assert statuses == [200, 200, 429]
    # Recordings already started go on.
    assert (await post(client, gw, b.first_batch(session="s-0", seq=1)))[1] == {"record": True}
    assert gw.metric("gateway_quota_used", site="shop") == 2


async def test_expect_continue_not_sent_for_a_batch_too_large(gw: RunningGateway) -> None:
    answer = await raw_exchange(
        gw.port,
        b"POST /__rec/v1/batch HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999\r\nExpect: 100-continue\r\n\r\n",
        read_timeout=1,
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"100 Continue" not in answer


async def test_expect_continue_sent_for_a_good_batch(gw: RunningGateway) -> None:
    body = b.encoded(b.first_batch())
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"POST /__rec/v1/batch HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert interim.startswith(b"HTTP/1.1 100")
    writer.write(body)
    final = await asyncio.wait_for(reader.read(4096), 3)
    writer.close()
    assert final.startswith(b"HTTP/1.1 200")
    assert b'{"record":true}' in final


async def test_data_after_gzip_stream_is_400(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    body = gzip.compress(b.encoded(b.first_batch())) + b"trailing junk"
    status, answer, _ = await post(client, gw, body, Content_Encoding="gzip")
    assert (status, answer["error"]) == (400, "bad_batch")


async def test_font_and_custom_element_events_are_not_stored(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    body = b.first_batch()
    body["events"] += [
        {
            "type": 3,
            "timestamp": 5,
            "data": {
                "source": 10,
                "family": "jane.doe@example.com",
                "fontSource": "x",
                "buffer": False,
            },
        },
        {"type": 3, "timestamp": 6, "data": {"source": 16, "define": {"name": "secret-el"}}},
    ]
    assert (await post(client, gw, body))[1] == {"record": True}
    [item] = await stored(gw)
    assert b'"source":10' not in item and b'"source":16' not in item


async def test_acknowledged_batch_survives_a_restart(
    origin: Origin, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # The store is down (nothing listens on port 9): the batch can only be in the spool.
    config = site_config(
        origin.url,
        extra_server="shutdown_grace = 0.5",
        upstream='url = "http://127.0.0.1:9"\nbatch_wait = 0.05',
    )
    config.server.data_dir = str(tmp_path)
    gateway = Gateway(config)
    listening = await gateway.start()
    gw = RunningGateway(gateway, f"http://127.0.0.1:{listening.edge[1]}", "", listening.edge[1])
    assert (await post(client, gw, b.first_batch()))[1] == {"record": True}
    await gateway.stop()
    again = Gateway(config)
    await again.start()
    try:
        assert again.sink is not None
        [item] = await again.sink.pending()
        assert item.batch.session == "sess-1"
        assert item.site == "shop"
        assert b.EMAIL.encode() not in msgspec.json.encode(item)
    finally:
        await again.stop()


async def test_recordings_starting_together_are_all_counted_and_shown(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    # New recordings, and more batches of each, arriving at once: every start counted once,
    # and the gauge (read once per herd, then once more) ends on the full count.
    bodies = [b.first_batch(session=f"herd-{n}") for n in range(12) for _ in range(3)]
    answers = await asyncio.gather(*(post(client, gw, body) for body in bodies))
    assert all(answer == {"record": True} for _, answer, _ in answers)
    assert await gw.metric_becomes("gateway_quota_used", 12, site="shop") == 12


async def test_batches_of_one_new_recording_arriving_together_are_one_start(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_collect="new_sessions_per_hour = 1.0\nnew_sessions_burst = 2")
    together = [b.first_batch(session="one", seq=n) for n in range(6)]
    answers = await asyncio.gather(*(post(client, gw, body) for body in together))
    assert [answer for _, answer, _ in answers] == [{"record": True}] * 6
    # One of the address's two new recordings was used, not six.
    assert (await post(client, gw, b.first_batch(session="two")))[1] == {"record": True}
    assert (await post(client, gw, b.first_batch(session="three")))[0] == 429
