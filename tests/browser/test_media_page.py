"""Scenes from your own photos and clips on the page: picked for the svd variant only, uploaded at once,
a refused clip marked on its tile, the rest sent as `options.media` in order, and the finished card says so."""

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from playwright.async_api import Page, expect

from tests.api.test_media_uploads import write_clip
from tests.browser.conftest import Site, shot
from tests.browser.test_options_page import is_post
from tests.browser.test_page import open_page

pytestmark = pytest.mark.integration


def _photo(colour: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


async def test_own_photos_and_clips_become_the_scenes(site: Site, page: Page, tmp_path: Path) -> None:
    await open_page(page, site)
    await page.get_by_label("Topic").fill("Harbour walk")
    await page.get_by_text("6 s", exact=True).click()
    picker = page.locator("#media-field")
    await expect(picker).to_be_visible()
    await page.get_by_text("Animated portrait", exact=True).click()
    await expect(picker).to_be_hidden()  # sadtalker has no scene to replace
    await page.get_by_text("Animated scene", exact=True).click()
    await expect(picker).to_be_visible()

    clip = write_clip(tmp_path / "harbour.mp4", seconds=1, tone_hz=440).read_bytes()
    media = page.get_by_label("Scenes from your photos and clips")
    await media.set_input_files([
        {"name": "sea.png", "mimeType": "image/png", "buffer": _photo("steelblue", (320, 200))},
        {"name": "harbour.mp4", "mimeType": "video/mp4", "buffer": clip},
        {"name": "broken.mp4", "mimeType": "video/mp4", "buffer": b"\x00\x00\x00\x18ftypmp42 not really"},
        {"name": "boat.png", "mimeType": "image/png", "buffer": _photo("tomato", (200, 320))},
    ])  # fmt: skip
    tiles = page.locator("#media-list .file")
    await expect(tiles).to_have_count(4)
    for name in ("sea.png", "harbour.mp4", "boat.png"):
        await expect(tiles.filter(has_text=name)).to_have_attribute("data-state", "done")
    await expect(tiles.filter(has_text="harbour.mp4").locator("video")).to_have_count(1)  # a clip previews as video
    # The clip's tile shows its first frame (yellow), drawn from the preview itself.
    await page.wait_for_function(
        """() => {
            const video = document.querySelector('#media-list video');
            if (!video || video.readyState < 2) return false;
            const canvas = Object.assign(document.createElement('canvas'), { width: 8, height: 8 });
            canvas.getContext('2d').drawImage(video, 0, 0, 8, 8);
            const [r, g, b, a] = canvas.getContext('2d').getImageData(0, 0, 1, 1).data;
            return a === 255 && r > 180 && g > 170 && b < 100;
        }"""
    )
    broken = tiles.filter(has_text="broken.mp4")
    await expect(broken).to_have_attribute("data-state", "error")
    await expect(broken).to_contain_text("This file is not a readable video.")
    field = page.locator("#media-field")
    await field.screenshot(path=shot("form-media"))
    await page.emulate_media(color_scheme="dark")
    await field.screenshot(path=shot("form-media-dark"))
    await page.emulate_media(color_scheme="light")

    submit = page.get_by_role("button", name="Create video")
    await submit.click()
    await expect(page.locator("#form-error")).to_have_text("Remove the file marked in red first.")
    await expect(page.locator("article.job")).to_have_count(0)
    await page.get_by_role("button", name="Remove broken.mp4").click()

    async with page.expect_request(is_post("/api/generate")) as sent:
        await submit.click()
    options = json.loads((await sent.value).post_data or "{}")["options"]
    uris = options["media"]
    assert len(uris) == 3 and all(uri.startswith(f"s3://uploads/{site.stack.user_id}/") for uri in uris)
    assert [uri.rsplit(".", 1)[1] for uri in uris] == ["png", "mp4", "png"], "in the order they were chosen"

    card = page.locator("article.job")
    await expect(card).to_have_attribute("data-status", "completed", timeout=90_000)
    ran = card.get_by_role("group", name="What ran")
    await expect(ran.locator('[data-stage="scene"] dd')).to_have_text("your photos and clips")
    await expect(ran.locator('[data-stage="image_to_video"] dd')).to_have_text(
        "a scene per sentence (Ken Burns on photos, crossfades)"
    )

    # A preset keeps the settings, never one video's photos and clips.
    await page.get_by_label("Save these settings as").fill("Harbour")
    async with page.expect_response("**/api/presets") as saved:
        await page.get_by_role("button", name="Save as preset").click()
    assert (await saved.value).status == 201
    presets = (await site.stack.api.get("/api/presets")).json()["data"]
    assert presets[0]["variant"] == "svd" and not presets[0]["options"].get("media")
