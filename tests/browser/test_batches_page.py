"""Batches on the page: several topics (one per line) × the ticked pipelines go out as one batch, and
its job cards appear grouped under the batch, queued ones included, until the batch is cancelled."""

import json

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import shot
from tests.browser.test_page import open_page
from tests.conftest import wait_for_status

pytestmark = pytest.mark.integration


async def test_three_topics_in_two_pipelines_make_one_group_of_six_cards(site_factory, page: Page) -> None:
    # No GPU worker: the jobs never render, so the batch keeps two of its six jobs queued (cap 4).
    async with site_factory(gpu=False) as site:
        await open_page(page, site)
        await page.get_by_label("Make a batch").check()
        await expect(page.get_by_role("group", name="Pipeline", exact=True)).to_be_hidden()
        await page.get_by_label("Topic").fill("Tides\nMoss\n\nFerns")
        await page.get_by_role("checkbox", name="Animated portraits").check()
        await page.get_by_text("6 s", exact=True).click()
        await expect(page.locator("#batch-count")).to_have_text("6 videos in this batch.")
        await page.locator("#job-form").screenshot(path=shot("form-batch"))

        async with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/batches")) as sent:
            await page.get_by_role("button", name="Create videos").click()
        request = await sent.value
        body = json.loads(request.post_data or "{}")
        assert body["topics"] == ["Tides", "Moss", "Ferns"]
        assert body["variants"] == ["svd", "sadtalker"] and body["aspectRatios"] == ["16:9"]
        assert "topic" not in body["common"] and "aspectRatio" not in body["common"]["options"]
        assert body["common"]["options"]["durationSeconds"] == 6
        response = await request.response()
        assert response is not None and response.status == 202
        accepted = await response.json()
        job_ids = accepted["jobIds"]

        group = page.locator(f'section.batch[data-batch-id="{accepted["batchId"]}"]')
        await expect(group.get_by_role("heading", name="Batch of 6 videos")).to_be_visible()
        cards = group.locator("article.job")
        await expect(cards).to_have_count(6)
        assert [await c.get_attribute("data-job-id") for c in await cards.all()] == job_ids
        await expect(cards.locator(".job-topic")).to_have_text(["Tides", "Tides", "Moss", "Moss", "Ferns", "Ferns"])
        # Four run (the per-user cap); the last two wait for a slot and say so.
        for job_id in job_ids[4:]:
            await expect(group.locator(f'article.job[data-job-id="{job_id}"]')).to_have_attribute(
                "data-status", "queued"
            )
        await expect(group.locator(".batch-summary")).to_have_text("4 running · 2 queued")
        await group.screenshot(path=shot("batch-group"))

        # Cancelling one running job frees a slot: the fifth job starts, and its card follows it live.
        await group.locator(f'article.job[data-job-id="{job_ids[0]}"]').get_by_role("button", name="Cancel").click()
        fifth = group.locator(f'article.job[data-job-id="{job_ids[4]}"]')
        await expect(fifth).to_have_attribute("data-status", "running")
        await expect(group.locator(".batch-summary")).to_have_text("4 running · 1 queued · 1 cancelled")

        await group.get_by_role("button", name="Cancel batch").click()
        for job_id in job_ids:
            assert (await wait_for_status(site.stack.api, job_id, timeout=30))["status"] == "cancelled"
        await expect(group.locator(".batch-summary")).to_have_text("6 cancelled")
        await expect(group.get_by_role("button", name="Cancel batch")).to_be_hidden()


async def test_a_refused_batch_shows_the_error_next_to_the_field(site_factory, page: Page) -> None:
    async with site_factory(gpu=False) as site:
        await open_page(page, site)
        await page.get_by_label("Make a batch").check()
        await page.get_by_label("Topic").fill("Tides")
        await page.get_by_role("checkbox", name="Animated scenes").uncheck()
        await page.get_by_role("button", name="Create videos").click()
        await expect(page.locator("#err-variants")).to_have_text("Tick at least one pipeline.")
        await expect(page.locator("#batch-variant-svd")).to_have_attribute("aria-invalid", "true")
        assert (await site.stack.api.get("/api/batches")).json()["count"] == 0
