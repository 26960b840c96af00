"""Render options on the page: caption style and position, music beds or your own music (rights confirmed),
and the caption downloads of a finished card."""

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.async_api import Page, Request, Route, expect
from temporalio import activity

from core.storage import ObjectStore
from schemas import names
from schemas.tasks import Asset, RenderInput, RenderResult, Video
from tests.api.test_api import _wav
from tests.api.test_rendering import EMBEDDED_SVD
from tests.browser.conftest import Site, shot
from tests.browser.test_page import download_labels, open_page
from tests.conftest import wait_for_status
from tests.helpers import put_stub_output

pytestmark = pytest.mark.integration

RIGHTS = "I hold the rights to use this music in my videos"
RIGHTS_MESSAGE = "Tick the box to confirm you hold the rights to use this music in your videos."


def is_post(path: str) -> Callable[[Request], bool]:
    return lambda request: request.method == "POST" and request.url.endswith(path)


async def test_caption_and_music_options_go_into_the_request(site: Site, page: Page) -> None:
    await open_page(page, site)
    await page.get_by_label("Topic").fill("Tides")
    await page.get_by_text("6 s", exact=True).click()
    style = page.get_by_role("group", name="Caption style")
    volume = page.get_by_label("Music volume")
    await expect(style).to_be_hidden()  # tied to the captions switch, as the volume is to the music
    await expect(volume).to_be_hidden()

    await page.get_by_label("Burn in captions").check()
    await expect(style).to_be_visible()
    await page.get_by_text("Karaoke", exact=True).click()
    await page.get_by_role("group", name="Position").get_by_text("Top", exact=True).click()
    music = page.get_by_label("Music", exact=True)
    await expect(music.locator("option")).to_have_text(
        ["None", "Calm (synthesised)", "Upbeat (synthesised)", "My music…"]
    )
    await music.select_option(label="Calm (synthesised)")
    await expect(volume).to_have_value("25")
    await volume.fill("40")
    await expect(page.locator("#music-volume-value")).to_have_text("40 %")
    await expect(volume).to_have_attribute("aria-valuetext", "40 %")
    await expect(page.get_by_label(RIGHTS)).to_be_hidden()  # only for the caller's own music
    options = page.locator("#render-options")
    await options.screenshot(path=shot("form-options"))
    await page.emulate_media(color_scheme="dark")
    await options.screenshot(path=shot("form-options-dark"))
    await page.emulate_media(color_scheme="light")

    # The server's answer about `options.music` lands on the music picker.
    async def unknown_bed(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["options"]["music"] = "jazz"
        await route.continue_(post_data=json.dumps(body))

    await page.route("**/api/generate", unknown_bed)
    async with page.expect_response("**/api/generate") as answer:
        await page.get_by_role("button", name="Create video").click()
    refused = await (await answer.value).json()
    assert [d["loc"] for d in refused["detail"]] == [["body", "options", "music"]]
    await expect(page.locator('[data-error-for="options.music"]')).to_contain_text("calm")
    await expect(music).to_have_attribute("aria-invalid", "true")
    await expect(music).to_be_focused()
    await expect(page.locator("article.job")).to_have_count(0)
    await page.unroute("**/api/generate", unknown_bed)

    async with page.expect_request(is_post("/api/generate")) as sent:
        await page.get_by_role("button", name="Create video").click()
    body = json.loads((await sent.value).post_data or "{}")
    assert body["options"] | {"durationSeconds": 6} == {
        "durationSeconds": 6,
        "resolution": "480p",
        "aspectRatio": "16:9",
        "captions": True,
        "captionStyle": "karaoke",
        "captionPosition": "top",
        "music": "calm",
        "musicVolume": 0.4,
    }
    card = page.locator("article.job")
    await expect(card).to_have_attribute("data-status", "completed", timeout=60_000)
    ran = card.get_by_role("group", name="What ran")
    await expect(ran.locator('[data-stage="captions"] dd')).to_have_text("timed per word")
    await expect(ran.locator('[data-stage="music"] dt')).to_have_text("Music")
    await expect(ran.locator('[data-stage="music"] dd')).to_have_text("music bed synthesised by our code")

    await page.set_viewport_size({"width": 390, "height": 844})
    await page.locator("section.compose").screenshot(path=shot("form-options-phone"))


async def test_own_music_needs_the_rights_confirmed_and_is_uploaded_with_the_job(site: Site, page: Page) -> None:
    uploads: list[bytes] = []  # each upload's multipart body (only an intercepted request shows the browser's)

    async def record(route: Route) -> None:
        uploads.append(route.request.post_data_buffer or b"")
        await route.continue_()

    await page.route("**/api/uploads", record)
    await open_page(page, site)
    await page.get_by_label("Topic").fill("Waves")
    await page.get_by_text("6 s", exact=True).click()
    await page.get_by_label("Music", exact=True).select_option(label="My music…")
    rights = page.get_by_label(RIGHTS)
    await expect(rights).to_be_visible()
    await expect(page.get_by_label("Music volume")).to_be_visible()
    submit = page.get_by_role("button", name="Create video")

    # Neither a file nor the rights: both are said where they belong, and nothing is sent.
    await submit.click()
    await expect(page.locator("#err-musicFile")).to_have_text("Choose an audio file, or pick another music option.")
    await expect(page.locator("#err-rightsConfirmed")).to_have_text(RIGHTS_MESSAGE)
    await expect(page.locator("#music-file")).to_be_focused()
    await expect(page.locator("#form-error")).to_have_text("Please fix the highlighted fields.")

    # A file the browser can tell is no audio is refused on its tile; the next file replaces it.
    music_file = page.locator("#music-file")
    await music_file.set_input_files({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"la la la"})
    tiles = page.locator("#music-file-list .file")
    await expect(tiles).to_have_count(1)
    await expect(tiles).to_contain_text("Not a supported audio file")
    await expect(page.locator("#err-musicFile")).to_be_empty()
    await music_file.set_input_files({"name": "my-song.wav", "mimeType": "audio/wav", "buffer": _wav(3, 8000)})
    await expect(tiles).to_have_count(1)
    await expect(tiles).to_have_attribute("data-state", "chosen")
    await expect(tiles).to_contain_text("my-song.wav")

    await submit.click()
    await expect(page.locator("#err-rightsConfirmed")).to_have_text(RIGHTS_MESSAGE)
    await expect(rights).to_have_attribute("aria-invalid", "true")
    await expect(rights).to_be_focused()
    await expect(page.locator("#err-musicFile")).to_be_empty()
    await expect(page.locator("article.job")).to_have_count(0)
    assert uploads == []
    compose = page.locator("section.compose")
    await compose.screenshot(path=shot("form-music-rights"))
    await page.emulate_media(color_scheme="dark")
    await compose.screenshot(path=shot("form-music-rights-dark"))
    await page.emulate_media(color_scheme="light")

    # Should the page's own check be bypassed, the server refuses too, and its answer lands on the box.
    async def without_rights(route: Route) -> None:
        boundary = b"--" + route.request.headers["content-type"].split("boundary=")[1].encode()
        parts = (route.request.post_data_buffer or b"").split(boundary)
        kept = [p for p in parts if b'name="rightsConfirmed"' not in p]
        await route.continue_(post_data=boundary.join(kept))

    await page.keyboard.press("Space")  # tick it with the keyboard
    await expect(rights).to_be_checked()
    await expect(page.locator("#err-rightsConfirmed")).to_be_empty()
    await page.route("**/api/uploads", without_rights)
    async with page.expect_response("**/api/uploads") as answer:
        await submit.click()
    assert (await answer.value).status == 422
    await expect(page.locator("#err-rightsConfirmed")).to_have_text(RIGHTS_MESSAGE)
    await expect(rights).to_be_focused()
    await expect(tiles).to_have_attribute("data-state", "chosen")  # the file stays, to be sent again
    await expect(page.locator("article.job")).to_have_count(0)
    await page.unroute("**/api/uploads", without_rights)
    uploads.clear()

    async with page.expect_response("**/api/uploads") as answer, page.expect_request(is_post("/api/generate")) as sent:
        await submit.click()
    assert len(uploads) == 1
    assert b'name="purpose"\r\n\r\nmusic\r\n' in uploads[0] and b'name="rightsConfirmed"\r\n\r\ntrue\r\n' in uploads[0]
    assert (await answer.value).status == 201
    stored = (await (await answer.value).json())["data"][0]["uri"]
    assert stored.startswith(f"s3://uploads/{site.stack.user_id}/music-") and stored.endswith(".wav")
    options = json.loads((await sent.value).post_data or "{}")["options"]
    assert options["music"] == stored and options["musicVolume"] == 0.25
    await expect(tiles).to_have_attribute("data-state", "done")

    card = page.locator("article.job")
    await expect(card).to_have_attribute("data-status", "completed", timeout=60_000)
    await expect(card.locator('[data-stage="music"] dd')).to_have_text("your music")

    # Sent once: the next job reuses the stored music.
    async with page.expect_request(is_post("/api/generate")) as again:
        await submit.click()
    assert json.loads((await again.value).post_data or "{}")["options"]["music"] == stored
    assert len(uploads) == 1
    cards = page.locator("article.job")
    await expect(cards).to_have_count(2)
    await expect(cards.first).to_have_attribute("data-status", "completed", timeout=60_000)


WORD_TIMED_SVD = {**EMBEDDED_SVD, "captions": "word-timed", "music": "synthesised-bed"}
CAPTION_FILES = [  # in the order a render might register them
    ("captions.ass", "text/x-ssa"),
    ("captions.vtt", "text/vtt"),
    ("captions.srt", "application/x-subrip"),
]


def captioned_render(store: ObjectStore) -> Any:
    """`render_video` that writes a (fake) video, the three caption files, narration and a thumbnail."""

    def put(inp: RenderInput, name: str, kind: str, content_type: str) -> Asset:
        return put_stub_output(store, inp, name, kind, content_type)

    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(inp: RenderInput) -> RenderResult:
        video = await asyncio.to_thread(put, inp, "video.mp4", "video", "video/mp4")
        thumb = await asyncio.to_thread(put, inp, "thumbnail.jpg", "thumbnail", "image/jpeg")
        captions = [await asyncio.to_thread(put, inp, name, "captions", ctype) for name, ctype in CAPTION_FILES]
        audio = await asyncio.to_thread(put, inp, "audio.wav", "audio", "audio/wav")
        result = Video(
            uri=video.uri, thumbnail_uri=thumb.uri, duration=1.0, variant=inp.pipeline.variant, rendering=WORD_TIMED_SVD
        )
        return RenderResult(video=result, assets=[thumb, *captions, audio, video])

    return render_video


async def test_a_finished_card_offers_each_caption_format_after_the_video(
    site_factory: Any, object_store: ObjectStore, page: Page
) -> None:
    async with site_factory(gpu_activities=[captioned_render(object_store)]) as site:
        accepted = await site.stack.api.post(
            "/api/generate", json={"topic": "three formats", "options": {"captions": True, "music": "calm"}}
        )
        job_id = accepted.json()["jobId"]
        await wait_for_status(site.stack.api, job_id)
        await open_page(page, site)
        await page.locator(f'.history-item[data-job-id="{job_id}"]').click()
        card = page.locator(f'article.job[data-job-id="{job_id}"]')
        await expect(card).to_have_attribute("data-status", "completed")
        await expect(card.get_by_role("group", name="Downloads")).to_be_visible()
        assert await download_labels(card) == [
            "Video", "Captions (SRT)", "Captions (WebVTT)", "Captions (ASS)", "Narration audio", "Thumbnail"
        ]  # fmt: skip
        downloads = card.get_by_role("group", name="Downloads")
        for label, suffix in (("SRT", "srt"), ("WebVTT", "vtt"), ("ASS", "ass")):
            link = downloads.get_by_role("link", name=f"Captions ({label})")
            await expect(link).to_have_attribute("href", re.compile(rf"/captions\.{suffix}\?"))
        ran = card.get_by_role("group", name="What ran")
        await expect(ran.locator("dt")).to_have_text(
            ["Voice", "Scene", "Motion", "Mouth", "Captions", "Music", "Encoding"]
        )
        await expect(ran.locator('[data-stage="captions"] dd')).to_have_text("timed per word")
        await expect(ran.locator('[data-stage="music"] dd')).to_have_text("music bed synthesised by our code")
        await card.screenshot(path=shot("card-captions-music"))
        await page.emulate_media(color_scheme="dark")
        await card.screenshot(path=shot("card-captions-music-dark"))
