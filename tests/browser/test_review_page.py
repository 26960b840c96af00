"""Script review on the page: the card shows the waiting script with its spoken length as the person
types, an edit is saved, Approve releases the render, and Reject cancels with the reason shown."""

import json

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import shot
from tests.browser.test_page import open_page
from tests.conftest import wait_for_status

pytestmark = pytest.mark.integration

EDIT = "Harbour lights shimmer on the rising water while the moon pulls the sea."


async def submit_reviewed(page: Page, topic: str) -> str:
    await page.get_by_label("Topic").fill(topic)
    await page.get_by_text("Animated portrait", exact=True).click()
    await page.get_by_text("6 s", exact=True).click()
    await page.get_by_label("Review the script first").check()
    async with page.expect_response(lambda r: r.url.endswith("/api/generate")) as answered:
        await page.get_by_role("button", name="Create video").click()
    response = await answered.value
    body = json.loads(response.request.post_data or "{}")
    assert body["options"]["review"] is True
    return str((await response.json())["jobId"])


async def test_edit_then_approve_from_the_card(site, page: Page) -> None:
    await open_page(page, site)
    job_id = await submit_reviewed(page, "Tides")
    card = page.locator(f'article[data-job-id="{job_id}"]')
    panel = card.get_by_role("region", name="Review the script")
    await expect(panel).to_be_visible()
    await expect(card.locator('.node[data-node="review"]')).to_have_attribute("data-state", "waiting")
    await expect(card.locator(".overall-text")).to_have_text("Waiting for your review of the script")
    narration = panel.get_by_label("Narration")
    view = (await site.stack.api.get(f"/api/jobs/{job_id}/script")).json()
    await expect(narration).to_have_value(view["narrative"])

    # The length shown as the person types is the server's estimate.
    estimate = panel.locator(".review-estimate")
    await expect(estimate).to_contain_text(f"About {view['estimatedSeconds']:.1f} s spoken")
    await narration.fill("Short.")
    await expect(estimate).to_have_attribute("data-fits", "false")
    await expect(estimate).to_contain_text("too short")
    await panel.get_by_role("button", name="Save edit").click()
    await expect(card.locator(".job-notice")).to_contain_text("too little")
    await narration.fill(EDIT)
    await expect(estimate).to_have_attribute("data-fits", "true")
    await panel.screenshot(path=shot("card-review"))
    await panel.get_by_role("button", name="Save edit").click()
    await expect(card.locator(".job-notice")).to_contain_text("Edit saved")
    saved = (await site.stack.api.get(f"/api/jobs/{job_id}/script")).json()
    assert saved["narrative"] == EDIT and saved["edited"] and saved["state"] == "waiting"
    # The same estimate, each side rounding it to one decimal its own way (4.25 → 4.2 or 4.3).
    assert abs(saved["estimatedSeconds"] - float((await estimate.text_content() or "").split()[1])) < 0.11

    await panel.get_by_role("button", name="Approve and render").click()
    await expect(panel).to_be_hidden()
    await expect(card).to_have_attribute("data-status", "completed", timeout=120_000)
    await expect(card.locator(".script-summary")).to_contain_text("Harbour lights")


async def test_reject_from_the_card_cancels_with_the_reason(site_factory, page: Page) -> None:
    async with site_factory(gpu=False) as site:
        await open_page(page, site)
        job_id = await submit_reviewed(page, "Tides")
        card = page.locator(f'article[data-job-id="{job_id}"]')
        panel = card.get_by_role("region", name="Review the script")
        await panel.get_by_label("Reason to reject").fill("wrong tone")
        await panel.get_by_role("button", name="Reject").click()
        await expect(card).to_have_attribute("data-status", "cancelled")
        await expect(card.locator(".job-error")).to_contain_text("rejected: wrong tone")
        await expect(panel).to_be_hidden()
        status = await wait_for_status(site.stack.api, job_id)
        assert status["error"] == {"stage": "review", "message": "rejected: wrong tone"}
