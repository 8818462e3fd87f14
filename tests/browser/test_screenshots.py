"""`pytest -m screenshots`: pictures of the dashboard and the player for docs/ and README,
taken from a real recorded visit to the demo shop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import ShopFactory, new_context
from tests.browser.test_dashboard import (
    finalized_recordings,
    recorded_shop,
    sign_in,
    visit_the_shop,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"

pytestmark = pytest.mark.screenshots


async def test_take_screenshots(browser: Browser, make_shop: ShopFactory) -> None:
    shop = await recorded_shop(make_shop)
    for _ in range(3):
        await visit_the_shop(browser, shop)
    recordings = await finalized_recordings(shop, 3)
    context = await new_context(browser, viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await sign_in(page, shop)
    await expect(page.get_by_test_id("recording-row")).to_have_count(len(recordings))
    await page.screenshot(path=str(DOCS / "dashboard.png"))
    await page.goto(f"{shop.admin_url}/recordings/{recordings[0]['id']}")
    await expect(page.locator("body[data-state=ready]")).to_be_attached(timeout=20_000)
    await page.get_by_test_id("speed-4").click()
    await page.get_by_test_id("play").click()
    await asyncio.sleep(4)
    await page.get_by_test_id("play").click()
    await page.screenshot(path=str(DOCS / "player.png"))
    phone = await new_context(browser, viewport={"width": 390, "height": 844})
    mobile = await phone.new_page()
    await sign_in(mobile, shop)
    await mobile.screenshot(path=str(DOCS / "dashboard-phone.png"))
    await phone.close()
    await context.close()
