"""PROXY-CHECKLIST 14, 15, 18, 22, 31, 33: what headers and targets the peers see."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.integration.conftest import (
    GatewayFactory,
    Origin,
    RawOrigin,
    RunningGateway,
    raw_exchange,
    site_config,
)


def _headers(seen: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in seen["headers"]]


def _get(seen: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in _headers(seen) if k == name.lower()]


async def test_hop_by_hop_request_headers_removed(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.get(
        gw.url + "/echo",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Proxy-Connection": "keep-alive",
            "TE": "gzip",
            "X-End-To-End": "kept",
        },
    ) as response:
        seen = await response.json()
    names = {k for k, _ in _headers(seen)}
    for hop in ("x-secret-hop", "keep-alive", "proxy-authorization", "proxy-connection", "te"):
        assert hop not in names, hop
    assert _get(seen, "x-end-to-end") == ["kept"]


async def test_te_trailers_forwarded_only_when_sent(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.get(gw.url + "/echo", headers={"TE": "trailers"}) as response:
        seen = await response.json()
    assert _get(seen, "te") == ["trailers"]


async def test_hop_by_hop_response_headers_removed(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.get(gw.url + "/hop") as response:
        assert response.headers.get("X-Public") == "yes"
        assert "X-Private" not in response.headers
        assert "Keep-Alive" not in response.headers
        assert "1.1 gw-test" in response.headers["Via"]


async def test_forwarded_headers_set_and_spoofing_ignored(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.get(
        gw.url + "/echo",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "Forwarded": "for=6.6.6.6",
            "X-Forwarded-Host": "evil",
        },
    ) as response:
        seen = await response.json()
    assert _get(seen, "x-forwarded-for") == ["127.0.0.1"]
    assert _get(seen, "x-forwarded-proto") == ["http"]
    assert _get(seen, "x-forwarded-host") == ["shop.test"]
    assert _get(seen, "forwarded") == []
    assert _get(seen, "via") == ["1.1 gw-test"]


async def test_forwarded_for_appended_behind_trusted_proxy(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_server='trusted_proxies = ["127.0.0.0/8"]')
    async with client.get(
        gw.url + "/echo", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    ) as response:
        seen = await response.json()
    assert _get(seen, "x-forwarded-for") == ["203.0.113.7, 127.0.0.1"]
    assert _get(seen, "x-forwarded-proto") == ["https"]


async def test_client_host_passed_on(gw: RunningGateway, client: aiohttp.ClientSession) -> None:
    async with client.get(gw.url + "/echo", headers={"Host": "www.shop.test"}) as response:
        seen = await response.json()
    assert _get(seen, "host") == ["www.shop.test"]


async def test_origin_host_when_configured(
    make_gateway: GatewayFactory, origin: Origin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_site="preserve_host = false")
    async with client.get(gw.url + "/echo") as response:
        seen = await response.json()
    assert _get(seen, "host") == [f"127.0.0.1:{origin.port}"]
    assert _get(seen, "x-forwarded-host") == ["shop.test"]


async def test_set_cookie_and_repeated_headers_kept_in_order(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.get(gw.url + "/cookies") as response:
        raw = [(k.decode().lower(), v.decode()) for k, v in response.raw_headers]
    cookies = [v for k, v in raw if k == "set-cookie"]
    assert cookies == [
        "a=1; Path=/; HttpOnly",
        "b=2, with comma; Expires=Wed, 21 Oct 2026 07:28:00 GMT",
    ]
    assert [v for k, v in raw if k == "x-multi"] == ["one", "two"]


async def test_repeated_request_headers_kept(gw: RunningGateway) -> None:
    answer = await raw_exchange(
        gw.port,
        b"GET /echo HTTP/1.1\r\nHost: shop.test\r\nX-Rep: 1\r\nX-Rep: 2\r\nConnection: close\r\n\r\n",
    )
    assert b'["X-Rep","1"],["X-Rep","2"]' in answer.replace(b" ", b"")


async def test_location_pointing_at_origin_rewritten(
    gw: RunningGateway, origin: Origin, client: aiohttp.ClientSession
) -> None:
    for target, expected in (
        (f"http://127.0.0.1:{origin.port}/next?a=1", "http://shop.test/next?a=1"),
        ("https://elsewhere.example/x", "https://elsewhere.example/x"),
        ("/relative", "/relative"),
        (
            f"http://127.0.0.1:{origin.port}0/not-the-origin",
            f"http://127.0.0.1:{origin.port}0/not-the-origin",
        ),
    ):
        async with client.get(
            gw.url + "/redirect", params={"to": target}, allow_redirects=False
        ) as response:
            assert response.status == 302
            assert response.headers["Location"] == expected


async def test_location_untouched_when_rewrite_off(
    make_gateway: GatewayFactory, origin: Origin, client: aiohttp.ClientSession
) -> None:
    gw = await make_gateway(extra_site="rewrite_location = false")
    target = f"http://127.0.0.1:{origin.port}/next"
    async with client.get(gw.url + "/redirect", params={"to": target}, allow_redirects=False) as r:
        assert r.headers["Location"] == target


async def test_path_and_query_forwarded_exactly(gw: RunningGateway, origin: Origin) -> None:
    target = b"/echo/a%2Fb/../c//d;p=1?x=%20&y=+&z=%zz&&w"
    answer = await raw_exchange(
        gw.port, b"GET " + target + b" HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert origin.state.requests[-1]["raw_path"] == target.decode()


async def test_metrics_count_requests_and_bytes(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    async with client.post(gw.url + "/upload", data=b"x" * 1000) as response:
        body = await response.read()
    assert gw.metric("gateway_proxy_request_bytes_total", site="shop") == 1000
    assert gw.metric("gateway_proxy_response_bytes_total", site="shop") == len(body)
    assert (
        gw.metric("gateway_proxy_requests_total", site="shop", method="POST", status_class="2xx")
        == 1
    )
    assert gw.metric("gateway_origin_latency_seconds_count", site="shop") == 1
    async with client.get(gw.admin_url + "/metrics") as response:
        text = await response.text()
    assert 'gateway_proxy_requests_total{method="POST",site="shop",status_class="2xx"} 1.0' in text
    async with client.get(gw.admin_url + "/readyz") as response:
        assert response.status == 200


async def test_non_ascii_header_bytes_pass_through(
    make_gateway: GatewayFactory, raw_origin: RawOrigin
) -> None:
    # UTF-8 in a response header (a filename, an IRI) reaches the client byte for byte;
    # a byte that is not UTF-8 (old ISO-8859-1) does not break the answer.
    url = await raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
        b'Content-Disposition: inline; filename="\xc3\xa9t\xc3\xa9.txt"\r\n'
        b"X-Old: caf\xe9\r\n"
        b"Content-Security-Policy: script-src 'self'; report-uri /r\xe9port\r\n\r\nok"
    )
    gw = await make_gateway(site_config(url))
    answer = await raw_exchange(
        gw.port, b"GET /x HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert b'filename="\xc3\xa9t\xc3\xa9.txt"\r\n' in answer
    assert b"\r\nX-Old: caf" in answer
    assert b"report-uri /r" in answer  # a policy with such a byte is still relayed
    assert answer.endswith(b"\r\n\r\nok")


async def test_non_ascii_request_header_bytes_reach_the_origin_as_sent(
    gw: RunningGateway, origin: Origin
) -> None:
    await raw_exchange(
        gw.port,
        b"GET /echo HTTP/1.1\r\nHost: shop.test\r\nX-Name: Ren\xc3\xa9e\r\nConnection: close\r\n\r\n",
    )
    seen = {name.lower(): value for name, value in origin.state.requests[-1]["headers"]}
    assert seen["x-name"].encode("latin-1") == b"Ren\xc3\xa9e"


async def test_injected_page_whose_policy_holds_a_non_utf8_byte_is_served(
    make_gateway: GatewayFactory, raw_origin: RawOrigin
) -> None:
    body = b"<html><head></head><body>hi</body></html>"
    url = await raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
        b"Content-Security-Policy: script-src 'self'; report-uri /r\xe9port\r\n\r\n"
        % len(body)
        + body
    )
    gw = await make_gateway(site_config(url))
    answer = await raw_exchange(
        gw.port,
        b"GET /x HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: Mozilla/5.0 Chrome/130.0\r\n"
        b"Accept: text/html\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"recorder.js" in answer  # injected, its policy rewritten to allow the tag
