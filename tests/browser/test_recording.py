"""The recorder in a real browser: when it records, and that secrets never leave masked."""

from __future__ import annotations

import asyncio

from aiohttp import web
from playwright.async_api import Browser, Page

from gateway.collect.schema import MetaEvent
from tests.browser.conftest import ShopFactory, new_context

EMAIL = "jane.doe@example.com"
PHONE = "+33 6 12 34 56 78"
CARD = "4111 1111 1111 1111"
PASSWORD = "hunter2-Secret!"
QUIET_SECONDS = 6  # longer than the loader's 5 s flush interval


async def fill_signup(page: Page) -> None:
    await page.mouse.move(100, 100)
    await page.mouse.move(200, 150)
    await page.click("input[name=email]")
    await page.keyboard.type(EMAIL)
    await page.click("input[name=phone]")
    await page.keyboard.type(PHONE)
    await page.click("input[name=password]")
    await page.keyboard.type(PASSWORD)


async def leave(page: Page) -> None:
    """Leaving the page fires pagehide: the loader sends what it holds."""
    await page.goto("about:blank")


async def recorder_state(page: Page) -> dict[str, object]:
    return await page.evaluate("() => window.__rec && window.__rec.state")  # type: ignore[no-any-return]


async def test_nothing_before_activity_then_masked_batches(
    browser: Browser, make_shop: ShopFactory
) -> None:
    shop = await make_shop()
    context = await new_context(browser)
    page = await context.new_page()
    await page.goto(shop.url + "/signup")
    await asyncio.sleep(QUIET_SECONDS)
    assert (await recorder_state(page))["started"] is False
    assert len(await shop.spooled()) == 0
    await fill_signup(page)
    await page.goto(shop.url + "/checkout")
    await page.mouse.move(50, 60)
    await page.click("input[autocomplete=cc-number]")
    await page.keyboard.type(CARD)
    await page.click("input[name=email]")
    await page.keyboard.type(EMAIL)
    await leave(page)
    await shop.wait_for_batches(2)
    await asyncio.sleep(1)  # let every beacon land
    stored = await shop.passed_on()
    assert b"Demo Shop" in stored  # the pages really were recorded
    for secret in (EMAIL, PHONE, CARD, PASSWORD, CARD.replace(" ", ""), "DS-1042"):
        assert secret.encode() not in stored, secret
    await context.close()


async def test_opt_in_waits_for_consent(browser: Browser, make_shop: ShopFactory) -> None:
    shop = await make_shop('consent = "opt-in"')
    context = await new_context(browser)
    page = await context.new_page()
    await page.goto(shop.url + "/signup")
    await fill_signup(page)
    await asyncio.sleep(QUIET_SECONDS)
    assert len(await shop.spooled()) == 0
    await page.evaluate('() => window.__rec("consent", true)')
    await page.mouse.move(300, 300)
    await page.click("input[name=name]")
    await page.keyboard.type("Jane")
    await leave(page)
    await shop.wait_for_batches(1)
    await context.close()


async def test_gpc_header_and_navigator_flag_stop_recording(
    browser: Browser, make_shop: ShopFactory
) -> None:
    shop = await make_shop()
    # Sec-GPC at the gateway: the tag is not even injected.
    context = await new_context(browser, extra_http_headers={"Sec-GPC": "1"})
    page = await context.new_page()
    response = await page.goto(shop.url + "/signup")
    assert response is not None
    assert "/__rec/recorder.js" not in await response.text()
    await fill_signup(page)
    await leave(page)
    await context.close()
    # navigator.globalPrivacyControl in the page: injected, but the loader stays off.
    context = await new_context(browser)
    await context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"
    )
    page = await context.new_page()
    await page.goto(shop.url + "/signup")
    await fill_signup(page)
    assert (await recorder_state(page))["started"] is False
    await leave(page)
    await asyncio.sleep(2)
    assert len(await shop.spooled()) == 0
    await context.close()


async def test_excluded_and_other_recorder_pages_send_nothing(
    browser: Browser, make_shop: ShopFactory
) -> None:
    shop = await make_shop()
    context = await new_context(browser)
    page = await context.new_page()
    for path in ("/admin/", "/partner"):
        response = await page.goto(shop.url + path)
        assert response is not None
        assert "/__rec/recorder.js" not in await response.text(), path
        assert await page.evaluate("() => typeof window.__rec") == "undefined"
        await page.mouse.move(100, 100)
        await page.mouse.click(120, 120)
    await leave(page)
    await asyncio.sleep(2)
    assert len(await shop.spooled()) == 0
    await context.close()


STRICT_CSP_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Strict</title>
<script nonce="r4nd0m">window.pageScript = true;</script></head>
<body><h1>Strict CSP page</h1><input name="q"></body></html>"""


def strict_csp_origin() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text=STRICT_CSP_PAGE,
            content_type="text/html",
            headers={
                "Content-Security-Policy": "script-src 'nonce-r4nd0m' 'strict-dynamic'; "
                "object-src 'none'; base-uri 'none'; connect-src 'self'"
            },
        )

    app = web.Application()
    app.router.add_get("/", page)
    return app


async def test_strict_nonce_csp_page_records(browser: Browser, make_shop: ShopFactory) -> None:
    shop = await make_shop(origin_app=strict_csp_origin())
    context = await new_context(browser)
    page = await context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    await page.goto(shop.url + "/")
    assert await page.evaluate("() => window.pageScript") is True
    assert await page.evaluate("() => typeof window.__rec") == "function"
    await page.mouse.move(100, 100)
    await page.click("input[name=q]")
    await page.keyboard.type("hello")
    await leave(page)
    await shop.wait_for_batches(1)
    assert not [v for v in violations if "Content Security Policy" in v], violations
    await context.close()


async def test_spa_route_into_excluded_path_pauses_and_resumes(
    browser: Browser, make_shop: ShopFactory
) -> None:
    shop = await make_shop(exclude=("/admin/*", "/app/settings"))
    context = await new_context(browser)
    page = await context.new_page()
    await page.goto(shop.url + "/app/")
    await page.mouse.move(100, 100)
    await page.mouse.move(150, 120)
    await page.click("nav a[href='/app/settings']")
    await page.wait_for_selector("input[name=display_name]")
    await page.click("input[name=display_name]")
    await page.keyboard.type(" and more")
    await page.mouse.move(200, 200)
    await page.click("nav a[href='/app/profile']")
    await page.mouse.move(250, 250)
    await asyncio.sleep(0.5)
    await leave(page)
    await shop.wait_for_batches(1)
    await asyncio.sleep(1)
    stored = await shop.passed_on()
    assert b"/app/profile" in stored  # recording resumed after the excluded route
    assert b"Display name" not in stored  # nothing of the excluded view
    hrefs = [
        event.data.href
        for item in await shop.spooled()
        for event in item.batch.events
        if isinstance(event, MetaEvent)
    ]
    assert any(href.endswith("/app/profile") for href in hrefs), hrefs
    assert not any(href.endswith("/app/settings") for href in hrefs), hrefs
    await context.close()


async def test_page_api_identify_exclude_stop(browser: Browser, make_shop: ShopFactory) -> None:
    shop = await make_shop()
    context = await new_context(browser)
    page = await context.new_page()
    # identify: attached to the recording as the site owner asked (id, name, email only).
    await page.goto(shop.url + "/")
    await page.evaluate(
        """() => window.__rec("identify", {id: "cust-42", name: "Jane", email: "jane@shop.test",
                                            card: "4111 1111 1111 1111"})"""
    )
    await page.mouse.move(100, 100)
    await page.mouse.click(10, 10)
    await leave(page)
    await shop.wait_for_batches(1)
    await asyncio.sleep(1)
    stored = await shop.passed_on()
    assert b'"tag":"identify"' in stored and b'"id":"cust-42"' in stored
    assert b"4111" not in stored  # only id, name and email are kept
    count = len(await shop.spooled())
    # exclude: this page view is never recorded.
    await page.goto(shop.url + "/signup")
    await page.evaluate('() => window.__rec("exclude")')
    await fill_signup(page)
    await leave(page)
    # stop: nothing more is sent from this page.
    await page.goto(shop.url + "/checkout")
    await page.evaluate('() => window.__rec("stop")')
    await page.mouse.move(100, 100)
    await page.click("input[name=email]")
    await page.keyboard.type(EMAIL)
    state = await recorder_state(page)
    assert state["started"] is False
    await leave(page)
    await asyncio.sleep(2)
    assert len(await shop.spooled()) == count
    await context.close()
