"""The dashboard and the player in a real browser, end to end: a visit to the demo shop
is recorded, finalized, found with filters, played back masked, and shared."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import Shop, ShopFactory, new_context
from tests.browser.test_recording import CARD, EMAIL, PHONE, fill_signup, leave

TOKEN = "dashboard-test-token"
MASK = "********"


async def recorded_shop(make_shop: ShopFactory, site: str = "") -> Shop:
    return await make_shop(
        server=f'admin_token = "{TOKEN}"',
        upstream="batch_wait = 0.1",
        store="finalize_after = 1.0\nsweep_interval = 0.2",
        site=site,
    )


def api(shop: Shop, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        shop.admin_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        raw = answer.read()
        return json.loads(raw) if raw else None


async def visit_the_shop(browser: Browser, shop: Shop) -> None:
    context = await new_context(browser)
    page = await context.new_page()
    await page.goto(shop.url + "/signup")
    await fill_signup(page)
    await page.click("button[type=submit], input[type=submit]")
    await page.goto(shop.url + "/checkout")
    await page.mouse.move(50, 60)
    await page.click("input[autocomplete=cc-number]")
    await page.keyboard.type(CARD)
    await page.click("input[name=email]")
    await page.keyboard.type(EMAIL)
    await leave(page)
    await context.close()


async def finalized_recordings(shop: Shop, count: int = 1) -> list[dict[str, Any]]:
    for _ in range(300):
        found = await asyncio.to_thread(api, shop, "/api/v1/recordings")
        if len(found["recordings"]) >= count:
            return list(found["recordings"])
        await asyncio.sleep(0.1)
    raise AssertionError("no finalized recording within 30 s")


async def sign_in(page: Page, shop: Shop) -> None:
    await page.goto(shop.admin_url + "/")
    form = page.get_by_test_id("sign-in")
    await expect(form).to_be_visible()
    await form.locator("input[name=token]").fill(TOKEN)
    await form.locator("input[name=token]").press("Enter")
    await expect(page.locator("body[data-state=ready]")).to_be_attached()


async def test_a_visit_is_found_filtered_played_and_shared(
    browser: Browser, make_shop: ShopFactory
) -> None:
    shop = await recorded_shop(make_shop)
    await visit_the_shop(browser, shop)
    [recording] = await finalized_recordings(shop)
    assert len(recording["pages"]) >= 2

    context = await new_context(browser, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await sign_in(page, shop)
    assert TOKEN not in page.url
    rows = page.get_by_test_id("recording-row")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("/signup")
    await expect(rows.first).to_contain_text(f"+{len(recording['pages']) - 1}")  # more pages
    await expect(rows.first).to_contain_text(str(recording["events"]))
    await expect(page.get_by_test_id("usage")).to_contain_text("10")  # limit of the plan

    # Filters narrow the list and live in the URL.
    await page.locator("[name=device]").select_option("mobile")
    await expect(page.get_by_test_id("empty-state")).to_be_visible()
    assert "device=mobile" in page.url
    await page.locator("[name=device]").select_option("")
    await page.locator("[name=url]").fill("checkout")
    await page.locator("[name=url]").press("Enter")
    await expect(rows).to_have_count(1)
    assert "url=checkout" in page.url
    await page.locator("[name=url]").fill("no-such-page")
    await page.locator("[name=url]").press("Enter")
    await expect(rows).to_have_count(0)
    await page.go_back()
    await expect(rows).to_have_count(1)

    # The player: markers, masked values in the replay, play and speed.
    await rows.first.locator("a").first.click()
    await expect(page.locator("body[data-state=ready]")).to_be_attached(timeout=20_000)
    assert page.url.endswith(f"/recordings/{recording['id']}")
    clicks = page.locator("[data-testid=marker][data-kind=click]")
    assert await clicks.count() >= 3
    assert await page.locator("[data-testid=marker][data-kind=page]").count() == len(
        recording["pages"]
    )
    await page.get_by_test_id("speed-8").click()
    await page.get_by_test_id("play").click()
    await asyncio.sleep(3)
    replay = page.frame_locator("[data-testid=replay] iframe")
    html = await replay.locator("html").evaluate("e => e.outerHTML")
    assert "<form" in html
    for secret in (EMAIL, PHONE, CARD):
        assert secret not in html
    values = await replay.locator("input").evaluate_all("els => els.map(e => e.value)")
    assert MASK in values
    # The clicked element is in the replayed page, and the mouse cursor was drawn.
    assert await page.locator("[data-testid=replay] .replayer-mouse").count() == 1

    # Download: JSON lines of the events.
    href = await page.get_by_test_id("download").get_attribute("href")
    assert href == f"/api/v1/recordings/{recording['id']}/export"

    # Share: a link that opens without the token, read-only; the page says what it shares.
    await expect(page.locator("body")).to_contain_text("personal data")
    await page.get_by_test_id("share").click()
    field = page.get_by_test_id("share-url")
    # Filled in once the server answered.
    await expect(field).to_have_value(re.compile("^" + re.escape(shop.admin_url + "/share/")))
    share_url = await field.input_value()
    stranger = await new_context(browser, viewport={"width": 390, "height": 844})
    shared = await stranger.new_page()
    await shared.goto(share_url)
    await expect(shared.locator("body[data-state=ready]")).to_be_attached(timeout=20_000)
    await expect(shared.get_by_test_id("share")).to_have_count(0)
    await expect(shared.get_by_test_id("download")).to_have_count(0)
    shared_text = await shared.locator("body").inner_text()
    # Who the visitor was stays with the site owner.
    assert recording["visitor"] is None or recording["visitor"] not in shared_text

    # Revoked: the link stops working.
    await page.get_by_test_id("revoke").first.click()
    for _ in range(100):  # until the server has the revocation
        listed = await asyncio.to_thread(api, shop, f"/api/v1/recordings/{recording['id']}/shares")
        if all(share["revoked"] for share in listed["shares"]):
            break
        await asyncio.sleep(0.1)
    assert all(share["revoked"] for share in listed["shares"])
    await shared.reload()
    await expect(shared.locator("body[data-state=error]")).to_be_attached(timeout=10_000)
    await stranger.close()
    await context.close()


async def test_a_share_link_stops_working_when_it_expires(
    browser: Browser, make_shop: ShopFactory
) -> None:
    shop = await recorded_shop(make_shop)
    await visit_the_shop(browser, shop)
    [recording] = await finalized_recordings(shop)
    share = await asyncio.to_thread(
        api, shop, f"/api/v1/recordings/{recording['id']}/share", "POST", {"days": 3 / 86400}
    )
    stranger = await new_context(browser)
    page = await stranger.new_page()
    await page.goto(share["url"])
    await expect(page.locator("body[data-state=ready]")).to_be_attached(timeout=20_000)
    await asyncio.sleep(3.5)
    await page.reload()
    await expect(page.locator("body[data-state=error]")).to_be_attached(timeout=10_000)
    await stranger.close()


async def test_empty_state_then_limit_reached_on_a_phone(
    browser: Browser, make_shop: ShopFactory
) -> None:
    shop = await recorded_shop(make_shop, site="monthly_limit = 1")
    context = await new_context(browser, viewport={"width": 390, "height": 844})
    page = await context.new_page()
    await sign_in(page, shop)
    empty = page.get_by_test_id("empty-state")
    await expect(empty).to_be_visible()
    for reason in ("3 minutes", "limit", "another session recorder", "consent", "activity"):
        await expect(empty).to_contain_text(re.compile(reason, re.IGNORECASE))
    await expect(page.get_by_test_id("limit-warning")).to_be_hidden()

    await visit_the_shop(browser, shop)
    await finalized_recordings(shop)
    await page.reload()
    await expect(page.get_by_test_id("recording-row")).to_have_count(1)
    warning = page.get_by_test_id("limit-warning")
    await expect(warning).to_be_visible()
    await expect(warning).to_contain_text("1")  # no new recordings until the 1st
    # Usable on a phone: nothing wider than the screen.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390

    # The player on the phone: fits, and plays from the keyboard.
    await page.get_by_test_id("recording-row").first.locator("a").first.click()
    await expect(page.locator("body[data-state=ready]")).to_be_attached(timeout=20_000)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    before = await page.get_by_test_id("current-time").inner_text()
    await page.locator("body").press("Space")
    await expect(page.get_by_test_id("play")).to_have_text("Pause")
    await asyncio.sleep(1.5)
    assert await page.get_by_test_id("current-time").inner_text() != before
    await context.close()
