"""Training through the page: uploads with previews, a live training card, then the new profile in the picker."""

import pytest
from playwright.async_api import Page, expect

from gpu_worker.media.speech import VoiceParams, synthesize
from tests.browser.conftest import Site, shot
from tests.conftest import astronaut_png

pytestmark = pytest.mark.integration


async def test_train_and_generate_from_the_page_then_pick_the_new_profile(site: Site, page: Page, tmp_path) -> None:
    face = astronaut_png(tmp_path / "face.png")
    clip = tmp_path / "my-voice.wav"
    synthesize("Hello there. This is my own voice, and I speak quite high.", clip, VoiceParams(voice="f1", pitch=85))
    await page.goto(site.url)
    await expect(page.locator("#workers")).to_have_attribute("data-state", "ok")

    await page.get_by_text("Train & Generate").click()
    await page.get_by_label("Topic").fill("How bees talk")
    await page.get_by_label("Profile name").fill("Eileen")
    await page.locator("#images").set_input_files(str(face))
    await page.locator("#audio").set_input_files(str(clip))
    await expect(page.locator("#images-list .file")).to_have_attribute("data-state", "done")
    await expect(page.locator("#audio-list .file")).to_have_attribute("data-state", "done")
    await page.get_by_text("SadTalker", exact=True).click()
    await page.get_by_text("6 s", exact=True).click()
    await page.locator("#job-form").screenshot(path=shot("form-train"))
    await page.get_by_role("button", name="Train & create video").click()

    card = page.locator("article.job")
    await expect(card.locator(".job-title")).to_have_text("Train+Generate · SadTalker")
    lora = card.locator('.node[data-node="train_lora"]')
    await expect(lora).to_have_attribute("data-state", "running", timeout=30_000)
    await card.screenshot(path=shot("card-training"))
    await expect(card).to_have_attribute("data-status", "completed", timeout=120_000)
    await expect(card.locator(".job-meta")).to_contain_text("Profile: Eileen")
    await page.wait_for_function("document.querySelector('article.job video')?.readyState >= 2")

    await page.get_by_text("Generate from existing profile").click()
    picker = page.get_by_label("Profile", exact=True)
    await expect(picker.locator("option", has_text="Eileen")).to_be_enabled()
