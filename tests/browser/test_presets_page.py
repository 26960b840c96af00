"""Saved presets on the page: save the form's pipeline and options under a name, apply one to the
form (its controls come back), a taken name is refused next to the name field, and delete one."""

import json

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import shot
from tests.browser.test_page import open_page
from tests.conftest import wait_for_status

pytestmark = pytest.mark.integration


async def _checked(page: Page, name: str) -> str:
    value: str = await page.locator(f'input[name="{name}"]:checked').get_attribute("value") or ""
    return value


async def test_save_the_form_as_a_preset_apply_it_and_delete_it(site_factory, page: Page) -> None:
    async with site_factory(gpu=False) as site:
        await open_page(page, site)
        await page.get_by_text("Animated portrait", exact=True).click()
        await page.get_by_text("30 s", exact=True).click()
        await page.get_by_text("9:16", exact=True).click()
        await page.get_by_label("Burn in captions").check()
        await page.get_by_text("Karaoke", exact=True).click()
        await page.get_by_role("group", name="Position").get_by_text("Top", exact=True).click()
        await page.get_by_label("Music", exact=True).select_option("calm")
        await page.get_by_label("Music volume").fill("40")

        name = page.get_by_label("Save these settings as")
        await name.fill("Shorts")
        await page.get_by_role("button", name="Save as preset").click()
        picker = page.locator("#saved-preset")
        await expect(picker.locator("option")).to_have_text(["No preset", "Shorts"])
        await expect(name).to_have_value("")
        saved = (await site.stack.api.get("/api/presets")).json()["data"]
        assert [p["name"] for p in saved] == ["Shorts"] and saved[0]["variant"] == "sadtalker"
        options = saved[0]["options"]
        assert (options["durationSeconds"], options["aspectRatio"], options["captions"]) == (30, "9:16", True)
        assert (options["captionStyle"], options["captionPosition"], options["music"]) == ("karaoke", "top", "calm")
        assert options["musicVolume"] == 0.4

        # A taken name is refused next to the name field, and the job form is not submitted.
        await name.fill("Shorts")
        await name.press("Enter")
        error = page.locator("#err-presetName")
        await expect(error).to_contain_text("exists already")
        await expect(name).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#form-error")).to_be_hidden()
        await page.locator("#presets-group").screenshot(path=shot("form-presets"))
        await name.fill("")
        await expect(error).to_be_empty()

        # Change the form, then apply the preset: the controls are back.
        await page.get_by_text("Animated scene", exact=True).click()
        await page.get_by_text("6 s", exact=True).click()
        await page.get_by_text("16:9", exact=True).click()
        await page.get_by_label("Burn in captions").uncheck()
        await page.get_by_label("Music", exact=True).select_option("none")
        await picker.select_option("Shorts")
        assert await _checked(page, "variant") == "sadtalker"
        assert await _checked(page, "duration") == "30"
        assert await _checked(page, "aspectRatio") == "9:16"
        await expect(page.get_by_label("Burn in captions")).to_be_checked()
        assert await _checked(page, "captionStyle") == "karaoke"
        assert await _checked(page, "captionPosition") == "top"
        await expect(page.get_by_label("Music", exact=True)).to_have_value("calm")
        await expect(page.get_by_label("Music volume")).to_have_value("40")
        await expect(page.get_by_role("group", name="Caption style")).to_be_visible()

        # A submission names the preset (the server fills in what the form has no control for).
        async with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/generate")) as sent:
            await page.get_by_label("Topic").fill("Tides")
            await page.get_by_role("button", name="Create video").click()
        request = await sent.value
        body = json.loads(request.post_data or "{}")
        assert body["preset"] == "Shorts" and body["variant"] == "sadtalker"
        response = await request.response()
        assert response is not None and response.status == 202, await response.text() if response else None
        job_id = (await response.json())["jobId"]
        record = (await site.stack.api.get(f"/api/jobs/{job_id}")).json()
        assert record["preset"] == "Shorts"
        await site.stack.api.post(f"/api/jobs/{job_id}/cancel")
        await wait_for_status(site.stack.api, job_id)

        # Delete it from the list: the picker and the list are empty again.
        manage = page.locator("#presets-manage")
        await manage.locator("summary").click()
        await manage.get_by_role("button", name="Delete preset Shorts").click()
        await page.get_by_role("dialog").get_by_role("button", name="Delete preset").click()
        await expect(picker.locator("option")).to_have_text(["No preset"])
        await expect(manage).to_be_hidden()
        assert (await site.stack.api.get("/api/presets")).json()["count"] == 0
