"""The creator workflow from the page alone: a batch of three topics with review on and the person's
own pictures as scenes; one script edited, all three approved, three videos made from those pictures."""

import json

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Site, shot
from tests.browser.test_media_page import _photo
from tests.browser.test_options_page import is_post
from tests.browser.test_page import open_page

pytestmark = pytest.mark.integration

EDIT = "Moss drinks the morning fog and keeps the forest floor cool and green."


async def test_a_reviewed_batch_with_own_pictures(site: Site, page: Page) -> None:
    await open_page(page, site)
    await page.get_by_label("Make a batch").check()
    await page.get_by_label("Topic").fill("Tides\nMoss\nFerns")
    await page.get_by_text("6 s", exact=True).click()
    await page.get_by_label("Review the script first").check()
    await page.get_by_label("Scenes from your photos and clips").set_input_files([
        {"name": "sea.png", "mimeType": "image/png", "buffer": _photo("steelblue", (320, 200))},
        {"name": "forest.png", "mimeType": "image/png", "buffer": _photo("forestgreen", (320, 200))},
        {"name": "sand.png", "mimeType": "image/png", "buffer": _photo("khaki", (200, 320))},
    ])  # fmt: skip
    await expect(page.locator('#media-list .file[data-state="done"]')).to_have_count(3)

    async with page.expect_request(is_post("/api/batches")) as sent:
        await page.get_by_role("button", name="Create videos").click()
    body = json.loads((await sent.value).post_data or "{}")
    assert body["topics"] == ["Tides", "Moss", "Ferns"] and body["variants"] == ["svd"]
    options = body["common"]["options"]
    assert options["review"] is True and len(options["media"]) == 3

    cards = page.locator("section.batch article.job")
    await expect(cards).to_have_count(3)
    panels = cards.get_by_role("region", name="Review the script")
    await expect(panels).to_have_count(3)
    for i in range(3):
        await expect(panels.nth(i)).to_be_visible(timeout=60_000)
    moss = cards.filter(has_text="Moss")
    await moss.get_by_label("Narration").fill(EDIT)
    await moss.get_by_role("button", name="Approve and render").click()
    for topic in ("Tides", "Ferns"):
        await cards.filter(has_text=topic).get_by_role("button", name="Approve and render").click()

    for i in range(3):
        await expect(cards.nth(i)).to_have_attribute("data-status", "completed", timeout=240_000)
    await page.locator("section.batch").screenshot(path=shot("batch-reviewed-own-pictures"))
    for card in await cards.all():
        ran = card.get_by_role("group", name="What ran")
        await expect(ran.locator('[data-stage="scene"] dd')).to_have_text("your photos and clips")
    await expect(moss.locator(".script-summary")).to_contain_text("Moss drinks the morning fog")
    job_id = await moss.get_attribute("data-job-id")
    record = (await site.stack.api.get(f"/api/jobs/{job_id}")).json()
    assert record["scriptEdited"] and record["rendering"]["scene"] == "uploaded-media"
