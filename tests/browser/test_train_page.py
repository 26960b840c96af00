"""Training through the page: consent, uploads with previews, a live training card, the new profile in the
picker, and deleting profiles."""

import json
import re

import pytest
from playwright.async_api import Page, Request, Route, expect

from core import repo
from gpu_worker.media.speech import VoiceParams
from gpu_worker.media.voices import synthesize
from tests.browser.conftest import Site, shot
from tests.conftest import astronaut_png

pytestmark = pytest.mark.integration

CONSENT = "I have the right to use these faces and voices, and I consent to training a model on them"
CONSENT_MESSAGE = "Tick the box to confirm you have the right to use these faces and voices."


async def open_page(page: Page, site: Site) -> None:
    await site.sign_in(page)
    await page.goto(site.url)
    await expect(page.locator("#workers")).to_have_attribute("data-state", "ok")


async def test_train_and_generate_from_the_page_then_pick_the_new_profile(site: Site, page: Page, tmp_path) -> None:
    face = astronaut_png(tmp_path / "face.png")
    clip = tmp_path / "my-voice.wav"
    synthesize("Hello there. This is my own voice, and I speak quite high.", clip, VoiceParams(voice="f1", pitch=85))
    trains: list[Request] = []
    page.on("request", lambda r: trains.append(r) if r.url.endswith("/api/train") else None)
    await open_page(page, site)

    await page.get_by_text("Train & Generate").click()
    await page.get_by_label("Topic").fill("How bees talk")
    await page.get_by_label("Profile name").fill("Eileen")
    await page.locator("#images").set_input_files(str(face))
    await page.locator("#audio").set_input_files(str(clip))
    await expect(page.locator("#images-list .file")).to_have_attribute("data-state", "done")
    await expect(page.locator("#audio-list .file")).to_have_attribute("data-state", "done")
    await page.get_by_text("Animated portrait", exact=True).click()
    await page.get_by_text("6 s", exact=True).click()

    # Without consent nothing is sent: the box says why and takes the focus.
    submit = page.get_by_role("button", name="Train & create video")
    await submit.click()
    consent = page.get_by_label(CONSENT)
    await expect(page.locator("#err-consent")).to_have_text(CONSENT_MESSAGE)
    await expect(consent).to_have_attribute("aria-invalid", "true")
    await expect(consent).to_be_focused()
    await expect(page.locator("article.job")).to_have_count(0)
    assert trains == []
    await page.locator("#job-form").screenshot(path=shot("form-train-consent"))
    await page.keyboard.press("Space")  # tick it with the keyboard
    await expect(consent).to_be_checked()
    await expect(page.locator("#err-consent")).to_be_empty()
    await page.locator("#job-form").screenshot(path=shot("form-train"))
    await submit.click()

    card = page.locator("article.job")
    await expect(card.locator(".job-title")).to_have_text("Train+Generate · Animated portrait")
    assert len(trains) == 1 and json.loads(trains[0].post_data or "{}")["consent"] is True
    lora = card.locator('.node[data-node="train_lora"]')
    # Status is described at most once a second: a tiny training may finish before it is seen running.
    await expect(lora).to_have_attribute("data-state", re.compile("running|completed"), timeout=30_000)
    await card.screenshot(path=shot("card-training"))
    await expect(card).to_have_attribute("data-status", "completed", timeout=120_000)
    await expect(card.locator(".job-meta")).to_contain_text("Profile: Eileen")
    await page.wait_for_function("document.querySelector('article.job video')?.readyState >= 2")

    await page.get_by_text("Generate from existing profile").click()
    picker = page.get_by_label("Profile", exact=True)
    await expect(picker.locator("option", has_text="Eileen")).to_be_enabled()
    await expect(picker.locator("option", has_text="Eileen")).to_contain_text("voice profile: pace (and pitch)")


async def test_the_servers_consent_error_is_shown_next_to_the_box(site: Site, page: Page, tmp_path) -> None:
    """Should the page's own check be bypassed, the server refuses too, and its answer lands on the box."""

    async def without_consent(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body.pop("consent", None)
        await route.continue_(post_data=json.dumps(body))

    await page.route("**/api/train", without_consent)
    await open_page(page, site)
    await page.get_by_text("Train & Generate").click()
    await page.get_by_label("Topic").fill("Consent matters")
    await page.locator("#images").set_input_files(str(astronaut_png(tmp_path / "face.png")))
    await expect(page.locator("#images-list .file")).to_have_attribute("data-state", "done")
    await page.get_by_label(CONSENT).check()
    answer = page.wait_for_event("response", lambda r: r.url.endswith("/api/train"))
    await page.get_by_role("button", name="Train & create video").click()
    response = await answer
    assert response.status == 422
    assert [d["loc"] for d in (await response.json())["detail"]] == [["body", "consent"]]
    await expect(page.locator("#err-consent")).to_have_text(CONSENT_MESSAGE)
    await expect(page.get_by_label(CONSENT)).to_be_focused()
    await expect(page.locator("article.job")).to_have_count(0)


async def test_delete_a_profile_from_the_list(site: Site, page: Page) -> None:
    user = site.stack.user_id
    async with site.stack.sessions.begin() as session:
        ready = await repo.resolve_or_create_profile(session, user, "Studio light", [], [])
        await repo.update_profile(session, ready.id, status="ready", voice_id="voice-studio")
        cloned = await repo.resolve_or_create_profile(session, user, "My own voice", [], [])
        await repo.update_profile(
            session, cloned.id, status="ready", voice_id="voice-own", voice_clone_engine="coqui-xtts"
        )
        failed = await repo.resolve_or_create_profile(session, user, "Blurry", [], [])
        await repo.update_profile(session, failed.id, status="failed", error="no face found")
    await open_page(page, site)
    picker = page.get_by_label("Profile", exact=True)
    await expect(picker.locator("option", has_text="Studio light")).to_be_enabled()

    await page.get_by_text("Manage your profiles").click()
    profiles = page.get_by_role("list", name="Your profiles")
    await expect(profiles.get_by_role("listitem")).to_have_count(3)
    await expect(profiles.get_by_role("listitem").filter(has_text="Blurry")).to_contain_text("Training failed")
    await expect(profiles.get_by_role("listitem").filter(has_text="My own voice")).to_contain_text(
        "Ready · cloned voice"
    )
    await expect(picker.locator("option", has_text="My own voice")).to_contain_text("cloned voice")
    await expect(profiles.get_by_role("listitem").filter(has_text="Studio light")).to_contain_text(
        "Ready · voice profile: pace (and pitch)"
    )
    await page.locator("section.compose").screenshot(path=shot("profiles-manage"))

    await profiles.get_by_role("button", name="Delete profile Blurry").click()
    dialog = page.get_by_role("dialog", name="Delete the profile “Blurry”?")
    await expect(dialog).to_be_visible()
    await page.screenshot(path=shot("confirm-delete-profile"))
    await dialog.get_by_role("button", name="Delete profile").click()
    await expect(profiles.get_by_role("listitem")).to_have_count(2)
    await expect(profiles).not_to_contain_text("Blurry")
    assert (await site.stack.api.get(f"/api/profiles/{failed.id}")).status_code == 404

    await profiles.get_by_role("button", name="Delete profile Studio light").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete profile").click()
    await expect(profiles.get_by_role("listitem")).to_have_text([re.compile("My own voice")])
    await profiles.get_by_role("button", name="Delete profile My own voice").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete profile").click()
    await expect(picker.locator("option")).to_have_text(["Built-in presenter (no profile)"])
    await expect(page.locator("#profiles-manage")).to_be_hidden()
    assert (await site.stack.api.get("/api/profiles")).json()["count"] == 0
