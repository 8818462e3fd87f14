"""PROXY-CHECKLIST 15 and 18 over TLS: certificates checked, scheme reported."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from tests.integration.conftest import GatewayFactory, Origin, site_config
from tests.integration.origin_app import OriginState, build_origin


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """The test CA as a PEM file, for a site's `origin_ca`."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def tls_origin(ca: trustme.CA) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    runner = web.AppRunner(build_origin(OriginState()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


async def test_https_origin_certificate_verified_by_name(
    make_gateway: GatewayFactory, tls_origin: int, ca_file: Path
) -> None:
    trusted = await make_gateway(
        site_config(f"https://localhost:{tls_origin}", extra_site=f'origin_ca = "{ca_file}"')
    )
    untrusted = await make_gateway(site_config(f"https://localhost:{tls_origin}"))
    async with aiohttp.ClientSession(headers={"Host": "shop.test"}) as session:
        async with session.get(trusted.url + "/echo") as response:
            assert response.status == 200
            seen = await response.json()
            assert ["Host", "shop.test"] in seen["headers"]
        async with session.get(untrusted.url + "/echo") as response:
            assert response.status == 502


async def test_https_origin_with_wrong_name_refused(
    make_gateway: GatewayFactory, tls_origin: int, ca_file: Path
) -> None:
    # The certificate names "localhost"; reaching it as 127.0.0.1 must fail.
    gw = await make_gateway(
        site_config(f"https://127.0.0.1:{tls_origin}", extra_site=f'origin_ca = "{ca_file}"')
    )
    async with (
        aiohttp.ClientSession(headers={"Host": "shop.test"}) as session,
        session.get(gw.url + "/echo") as response,
    ):
        assert response.status == 502


async def test_tls_listener_reports_https(
    make_gateway: GatewayFactory, origin: Origin, ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("shop.test")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    config = site_config(
        origin.url,
        extra_server=(
            f'tls_listen = "127.0.0.1:0"\ntls_cert = "{cert_file}"\ntls_key = "{key_file}"'
        ),
    )
    gw = await make_gateway(config)
    listening = gw.gateway.listening
    assert listening is not None and listening.tls is not None
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    connector = aiohttp.TCPConnector(ssl=client_context)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(
            f"https://127.0.0.1:{listening.tls[1]}/echo",
            headers={"Host": "shop.test"},
            server_hostname="shop.test",
        ) as response,
    ):
        seen = await response.json()
    assert ["X-Forwarded-Proto", "https"] in seen["headers"]


async def test_websocket_to_https_origin(
    make_gateway: GatewayFactory, tls_origin: int, ca_file: Path
) -> None:
    gw = await make_gateway(
        site_config(f"https://localhost:{tls_origin}", extra_site=f'origin_ca = "{ca_file}"')
    )
    async with (
        aiohttp.ClientSession(headers={"Host": "shop.test"}) as session,
        session.ws_connect(gw.url + "/ws") as socket,
    ):
        await socket.send_str("over tls")
        assert (await socket.receive()).data == "echo:over tls"
