"""The demo shop origin: pages, forms, SPA shell, partner recorder, 404."""

import re
from importlib import resources

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.demo.origin import build_demo_origin, demo_pages

Client = TestClient[web.Request, web.Application]

HTML_PATHS = [
    "/",
    "/signup",
    "/signup/thanks",
    "/checkout",
    "/checkout/done",
    "/app/",
    "/app/settings",
    "/app/profile",
    "/admin/",
    "/partner",
]

PASSWORD = "hunter2-very-secret"
CARD_NUMBER = "4111111111111111"


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(build_demo_origin())


async def get_html(client: Client, path: str) -> str:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    return await resp.text()


@pytest.mark.parametrize("path", HTML_PATHS)
async def test_html_page_structure(client: Client, path: str) -> None:
    html = await get_html(client, path)
    assert html.startswith('<!doctype html>\n<html lang="en">\n<head>\n')
    assert re.search(r"<head>\s*<meta charset=\"utf-8\">", html)
    assert '<meta name="viewport"' in html
    assert re.search(r"<title>[^<]+</title>", html)
    assert '<link rel="stylesheet" href="/static/site.css">' in html
    for page_path, _ in demo_pages():
        assert f'href="{page_path}"' in html


def test_pages_are_flat_and_use_no_external_resources() -> None:
    folder = resources.files("gateway.demo") / "pages"
    for item in folder.iterdir():
        assert item.is_file(), f"{item.name}: pyproject ships demo/pages/* only"
        assert "://" not in item.read_text(encoding="utf-8"), item.name


async def test_home_shows_every_product_and_the_gateway_note(client: Client) -> None:
    resp = await client.get("/api/products")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    products = await resp.json()
    assert products
    html = await get_html(client, "/")
    for product in products:
        cents = product["price_cents"]
        assert product["name"] in html
        assert f"${cents // 100}.{cents % 100:02d}" in html
    assert "view the page source to see the injected recorder tag" in html


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/site.css", "text/css"),
        ("/static/app.js", "text/javascript"),
        ("/vendor/smartlook-recorder.js", "text/javascript"),
    ],
)
async def test_assets_have_their_content_type(client: Client, path: str, content_type: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == content_type
    assert resp.charset == "utf-8"


async def test_signup_form_fields(client: Client) -> None:
    html = await get_html(client, "/signup")
    assert '<form method="post" action="/signup">' in html
    for field in (
        'name="name"',
        'type="email"',
        'type="tel"',
        'type="password"',
        'type="checkbox"',
    ):
        assert field in html


async def test_signup_post_redirects_and_never_echoes_the_password(client: Client) -> None:
    form = {
        "name": "Ada",
        "email": "ada@example.com",
        "phone": "+1 555 0100",
        "password": PASSWORD,
        "newsletter": "yes",
    }
    resp = await client.post("/signup", data=form, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/signup/thanks"
    assert PASSWORD not in await resp.text()

    resp = await client.post("/signup", data=form)
    assert resp.status == 200
    assert resp.url.path == "/signup/thanks"
    assert PASSWORD not in await resp.text()


async def test_checkout_form_fields(client: Client) -> None:
    html = await get_html(client, "/checkout")
    assert '<form method="post" action="/checkout">' in html
    assert re.search(r'<input type="hidden" name="order_id" value="[^"]+">', html)
    for field in (
        'type="email"',
        'autocomplete="cc-number" inputmode="numeric"',
        'autocomplete="cc-exp"',
        'autocomplete="cc-csc"',
        "<textarea",
    ):
        assert field in html


async def test_checkout_post_confirms_without_the_card_number(client: Client) -> None:
    form = {
        "order_id": "DS-1042",
        "email": "ada@example.com",
        "card_number": CARD_NUMBER,
        "card_expiry": "12/30",
        "card_cvc": "123",
        "shipping_address": "1 Example Street\nSpringfield",
    }
    resp = await client.post("/checkout", data=form, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/checkout/done"

    resp = await client.post("/checkout", data=form)
    assert resp.status == 200
    assert resp.url.path == "/checkout/done"
    html = await resp.text()
    assert "Order confirmed" in html
    assert CARD_NUMBER not in html


@pytest.mark.parametrize("path", ["/app/settings", "/app/profile", "/app/no/such/view"])
async def test_every_app_path_serves_the_spa_shell(client: Client, path: str) -> None:
    shell = await get_html(client, "/app/")
    assert '<script src="/static/app.js" defer></script>' in shell
    assert await get_html(client, path) == shell


async def test_app_script_switches_views_with_the_history_api(client: Client) -> None:
    resp = await client.get("/static/app.js")
    script = await resp.text()
    for needle in ("history.pushState", '"popstate"', "/app/settings", "/app/profile", "<form"):
        assert needle in script


@pytest.mark.parametrize(("path", "target"), [("/app", "/app/"), ("/admin", "/admin/")])
async def test_missing_trailing_slash_redirects(client: Client, path: str, target: str) -> None:
    resp = await client.get(path, allow_redirects=False)
    assert resp.status == 308
    assert resp.headers["Location"] == target


async def test_admin_page_says_it_is_not_recorded(client: Client) -> None:
    html = await get_html(client, "/admin/")
    assert "Admin area" in html
    assert "/admin/*" in html


async def test_partner_page_carries_the_other_vendors_recorder(client: Client) -> None:
    html = await get_html(client, "/partner")
    head = html[html.index("<head>") : html.index("</head>")]
    assert '<script src="/vendor/smartlook-recorder.js"></script>' in head

    resp = await client.get("/vendor/smartlook-recorder.js")
    assert resp.status == 200
    assert resp.content_type == "text/javascript"
    script = await resp.text()
    assert "window.smartlook = { stub: true };" in script
    assert "console." not in script


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_path_gets_the_404_page(client: Client, method: str) -> None:
    resp = await client.request(method, "/no/such/page")
    assert resp.status == 404
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    html = await resp.text()
    assert html.startswith("<!doctype html>")
    assert "Page not found" in html


async def test_demo_pages_all_answer(client: Client) -> None:
    pages = demo_pages()
    assert pages
    for path, title in pages:
        assert title
        await get_html(client, path)
