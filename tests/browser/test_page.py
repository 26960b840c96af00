"""The web page in a real headless Chromium: submit, watch live cards, play the video, reopen, cancel, delete."""

import json
import re
import tempfile
from pathlib import Path

import av
import httpx
import pytest
from playwright.async_api import Locator, Page, Route, expect

from tests.api.test_ops import flaky_render
from tests.api.test_rendering import EMBEDDED_SVD, rendered_with
from tests.browser.conftest import Site, shot
from tests.conftest import astronaut_png, wait_for_status

pytestmark = pytest.mark.integration

# Records every `data-status` a card takes, so a test can tell live updates from a reload.
WATCH_STATUSES = """
window.__statuses = [];
new MutationObserver((records) => {
  for (const r of records) {
    if (r.target.classList?.contains("job")) window.__statuses.push(r.target.dataset.status);
  }
}).observe(document.getElementById("cards"), { attributes: true, attributeFilter: ["data-status"], subtree: true });
"""


async def open_page(page: Page, site: Site) -> None:
    """Open the page signed in as the stack's user (the same user as `site.stack.api`)."""
    await site.sign_in(page)
    await page.goto(site.url)
    await expect(page.locator("#workers")).to_have_attribute("data-state", "ok")


async def download_labels(card: Locator) -> list[str]:
    """The labels of a card's download links, in order, without their sizes."""
    texts = await card.get_by_role("group", name="Downloads").get_by_role("link").all_text_contents()
    return [re.sub(r"[\d.]+ (B|KB|MB|GB)$", "", text).strip() for text in texts]


def video_seconds(url: str) -> float:
    """The duration of the video behind `url`, read from its container."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
        Path(tmp.name).write_bytes(httpx.get(url).content)
        with av.open(tmp.name) as container:
            return float(container.duration) / av.time_base


async def test_generate_through_the_form_plays_the_video_in_its_card(site: Site, page: Page) -> None:
    requests: list[str] = []
    frames: list[dict] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(json.loads(payload))))
    await open_page(page, site)
    await page.evaluate(WATCH_STATUSES)

    await page.get_by_label("Topic").fill("Why the sky is blue")
    await page.get_by_label("Style").fill("friendly and curious")
    await page.get_by_text("Custom", exact=True).click()
    await page.get_by_label("Seconds").fill("5")
    await page.get_by_label("Burn in captions").check()
    await page.locator("section.compose").screenshot(path=shot("form"))
    await page.get_by_role("button", name="Create video").click()

    card = page.locator("article.job")
    await expect(card).to_have_count(1)
    await expect(card).to_have_attribute("data-status", "completed", timeout=60_000)
    job_id = await card.get_attribute("data-job-id")
    statuses = await page.evaluate("window.__statuses")
    assert "running" in statuses and statuses[-1] == "completed", statuses
    record = (await site.stack.api.get(f"/api/jobs/{job_id}")).json()
    await expect(card.locator(".node")).to_have_count(len(record["graph"]["nodes"]))
    await expect(card.locator('.node:not([data-state="completed"])')).to_have_count(0)

    # Live means pushed: the page never polled; the socket sent the status JSON on each change.
    assert not [u for u in requests if "/api/status/" in u], requests
    assert frames[-1] == (await site.stack.api.get(f"/api/status/{job_id}")).json()
    assert [f["status"] for f in frames].count("running") >= 2
    assert any(
        (n["progress"] or {}).get("percent", 100) < 100 for f in frames for n in f["nodes"] if n["id"] == "render"
    )

    video = card.locator("video")
    await expect(video).to_have_attribute("poster", re.compile(r"/thumbnail\.\w+"))
    await page.wait_for_function("document.querySelector('article.job video').readyState >= 2", timeout=20_000)
    played = await video.evaluate("v => v.duration")
    assert played == pytest.approx(video_seconds(record["video"]["url"]), abs=0.1)

    # The captions come in three formats, each named, right after the video.
    assert (await download_labels(card))[:5] == [
        "Video", "Captions (SRT)", "Captions (WebVTT)", "Captions (ASS)", "Narration audio"
    ]  # fmt: skip
    await expect(card.get_by_role("link", name="Run in Temporal")).to_have_attribute(
        "href", re.compile(f"/workflows/{job_id}/")
    )
    await expect(card.get_by_role("button", name="Resubmit")).to_be_visible()
    await expect(card.get_by_role("button", name="Delete")).to_be_visible()
    await expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    # What ran, in words: the real worker's voice, and no model named that the embedded path does not run.
    ran = card.get_by_role("group", name="What ran")
    await expect(ran.locator('[data-stage="speech"] dd')).to_have_text(
        re.compile(r"^(Piper neural voice|eSpeak NG \(formant synthesizer\)|Coqui TTS)")
    )
    await expect(card.locator(".job-title")).to_have_text("Generate · Animated scene")
    await card.screenshot(path=shot("card-finished"))
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=shot("page-finished"), full_page=True)
    await page.emulate_media(color_scheme="dark")
    await page.screenshot(path=shot("page-finished-dark"), full_page=True)
    await page.emulate_media(color_scheme="light")
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=shot("page-phone"), full_page=True)


async def test_invalid_form_shows_the_servers_field_errors_next_to_the_fields(
    site: Site, page: Page, tmp_path: Path
) -> None:
    await open_page(page, site)
    submit = page.get_by_role("button", name="Create video")
    await submit.click()
    topic = page.get_by_label("Topic")
    await expect(page.locator("#err-topic")).to_have_text("Tell us what the video is about.")
    await expect(topic).to_have_attribute("aria-invalid", "true")
    await expect(topic).to_be_focused()

    await topic.fill("A very long talk")
    await expect(page.locator("#err-topic")).to_be_empty()
    await page.get_by_text("Custom", exact=True).click()
    await page.get_by_label("Seconds").fill("500")
    await submit.click()
    duration_error = page.locator('[data-error-for="options.durationSeconds"]')
    await expect(duration_error).to_have_text("Longer than the connected workers allow (up to 120 s).")
    await expect(page.get_by_label("Seconds")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#form-error")).to_have_text("Please fix the highlighted field.")
    await expect(page.locator("article.job")).to_have_count(0)
    await page.locator("#job-form").screenshot(path=shot("form-errors"))

    # Training uploads: each file is checked on its own, in the browser and by the server.
    await page.get_by_text("Train & Generate").click()
    face = astronaut_png(tmp_path / "face.png").read_bytes()
    await page.locator("#images").set_input_files(
        [
            {"name": "face.png", "mimeType": "image/png", "buffer": face},
            {"name": "broken.png", "mimeType": "image/png", "buffer": b"not a png"},
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"},
        ]
    )
    tiles = page.locator("#images-list .file")
    await expect(tiles.nth(0)).to_have_attribute("data-state", "done")
    await expect(tiles.nth(1)).to_contain_text("not a readable image")
    await expect(tiles.nth(2)).to_contain_text("Not a supported photo")
    await expect(tiles.nth(0).locator("img")).to_have_attribute("alt", "Preview of face.png")
    await page.get_by_role("button", name="Train & create video").click()
    await expect(page.locator("#form-error")).to_have_text("Remove the files marked in red first.")
    await page.locator("#job-form").screenshot(path=shot("form-uploads"))
    await page.get_by_role("button", name="Remove broken.png").click()
    await page.get_by_role("button", name="Remove notes.txt").click()
    await expect(tiles).to_have_count(1)


async def test_a_job_reopens_from_history_after_a_reload(site: Site, page: Page) -> None:
    accepted = await site.stack.api.post("/api/generate", json={"topic": "history", "options": {"durationSeconds": 5}})
    job_id = accepted.json()["jobId"]
    await wait_for_status(site.stack.api, job_id)
    await open_page(page, site)
    await page.reload()
    entry = page.locator(f'.history-item[data-job-id="{job_id}"]')
    await expect(entry).to_contain_text("history")
    await expect(entry.locator(".badge")).to_have_text("Completed")
    await expect(page.locator("article.job")).to_have_count(0)
    await entry.focus()
    await page.keyboard.press("Enter")  # keyboard, not only the mouse
    card = page.locator(f'article.job[data-job-id="{job_id}"]')
    await expect(card).to_have_attribute("data-status", "completed")
    await expect(card.locator(".job-title")).to_be_focused()
    await expect(card.locator(".job-title")).to_have_text("Generate · Animated scene")
    await page.wait_for_function("document.querySelector('article.job video')?.readyState >= 2")


async def test_cancel_a_running_job_from_its_card(site: Site, page: Page) -> None:
    await open_page(page, site)
    await page.get_by_label("Topic").fill("A long talk about patience")
    await page.get_by_text("1 min", exact=True).click()
    await page.get_by_label("Resolution").select_option("720p")
    await page.get_by_role("button", name="Create video").click()
    card = page.locator("article.job")
    render = card.locator('.node[data-node="render"]')
    await expect(render).to_have_attribute("data-state", "running", timeout=30_000)
    await page.wait_for_function(
        """() => Number(document.querySelector('.node[data-node="render"] [role=progressbar]')
                      ?.getAttribute("aria-valuenow")) >= 3""",
        timeout=30_000,
    )
    await card.screenshot(path=shot("card-running"))
    await card.get_by_role("button", name="Cancel").click()
    await expect(card).to_have_attribute("data-status", "cancelled", timeout=30_000)
    await expect(render).to_have_attribute("data-state", "cancelled")
    await expect(card.locator('.node[data-node="register"]')).to_have_attribute("data-state", "skipped")
    await expect(card.get_by_role("alert")).to_contain_text("Cancelled")
    await expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    await expect(card.locator("video")).to_have_count(0)


async def test_the_socket_closes_with_4404_for_an_unknown_job(site: Site, page: Page) -> None:
    await open_page(page, site)
    closed = await page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws/jobs/job-nope");
            ws.onclose = (e) => resolve({ code: e.code, reason: e.reason });
        })"""
    )
    assert closed == {"code": 4404, "reason": "job 'job-nope' not found"}


async def test_a_failed_job_shows_its_stage_then_retry_and_resubmit_from_the_card(
    site_factory, object_store, page: Page
) -> None:
    calls: list[str] = []
    async with site_factory(gpu_activities=[flaky_render(object_store, calls)]) as site:
        await open_page(page, site)
        await page.get_by_label("Topic").fill("Retry me")
        await page.get_by_role("button", name="Create video").click()
        card = page.locator("article.job")
        await expect(card).to_have_attribute("data-status", "failed", timeout=30_000)
        error = card.get_by_role("alert")
        await expect(error).to_contain_text("Failed at “Render the video” (render)")
        await expect(error).to_contain_text("stage 'encode' failed: GPU lost")
        await expect(card.locator('.node[data-node="render"]')).to_have_attribute("data-state", "failed")
        await expect(card.locator('.node[data-node="register"]')).to_have_attribute("data-state", "skipped")
        await expect(card.get_by_role("link", name="Narration audio (partial)")).to_be_visible()
        await card.screenshot(path=shot("card-failed"))

        await card.get_by_role("button", name="Retry").click()
        await expect(card).to_have_attribute("data-status", "completed", timeout=30_000)
        await expect(card.get_by_role("alert")).to_be_hidden()
        assert len(set(calls)) == 1 and len(calls) == 2  # the same job ran render again, nothing else new

        await card.get_by_role("button", name="Resubmit").click()
        cards = page.locator("article.job")
        await expect(cards).to_have_count(2)
        await expect(cards.first).to_have_attribute("data-status", "completed", timeout=30_000)
        assert await cards.first.get_attribute("data-job-id") != await cards.nth(1).get_attribute("data-job-id")


async def test_only_advertised_variants_and_resolutions_are_selectable(site: Site, page: Page) -> None:
    caps = (await site.stack.api.get("/api/capabilities")).json()
    caps["gpu"]["variants"] = ["svd"]
    caps["constraints"] = {"max_duration_seconds": 10, "resolutions": ["480p", "720p"]}
    caps["gpu"]["tasks"] = [t for t in caps["gpu"]["tasks"] if t != "train_lora"]
    await page.route("**/api/capabilities", lambda route: route.fulfill(json=caps))
    await open_page(page, site)
    sadtalker = page.locator("#variant-sadtalker")
    await expect(sadtalker).to_be_disabled()
    await expect(page.locator('label[for="variant-sadtalker"]')).to_contain_text(
        "Not offered by the connected GPU workers"
    )
    await expect(page.locator("#variant-svd")).to_be_checked()
    await expect(page.get_by_label("Resolution").locator("option")).to_have_text(["480p · fastest", "720p · HD"])
    await expect(page.locator("#duration-12")).to_be_disabled()  # the default, so the longest that fits is chosen
    await expect(page.locator("#duration-6")).to_be_checked()
    await expect(page.locator("#duration-hint")).to_have_text("Up to 10 s on the connected workers.")
    await expect(page.locator("#mode-train")).to_be_disabled()
    await expect(page.locator("#mode-hint")).to_be_visible()


async def test_the_page_and_its_assets_are_served_by_the_api_and_nothing_else(site: Site) -> None:
    api = site.stack.api
    index = await api.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "//" not in index.text.replace("http://www.w3.org", "")  # no CDN, no absolute URLs
    script = await api.get("/static/js/main.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    for path in ("/static/%2e%2e/index.html", "/static/%2e%2e/%2e%2e/routes/web.py", "/static/nope.js"):
        assert (await api.get(path)).status_code == 404, path


async def test_delete_a_finished_job_from_its_card(site: Site, page: Page) -> None:
    accepted = await site.stack.api.post(
        "/api/generate", json={"topic": "delete me", "options": {"durationSeconds": 5}}
    )
    job_id = accepted.json()["jobId"]
    await wait_for_status(site.stack.api, job_id)
    video_url = (await site.stack.api.get(f"/api/jobs/{job_id}")).json()["video"]["url"]
    await open_page(page, site)
    await page.locator(f'.history-item[data-job-id="{job_id}"]').click()
    card = page.locator(f'article.job[data-job-id="{job_id}"]')
    await expect(card).to_have_attribute("data-status", "completed")
    await expect(card).to_contain_text("delete me")  # the record has loaded: the dialog can name the job
    delete = card.get_by_role("button", name="Delete")
    dialog = page.get_by_role("dialog", name="Delete this job?")

    # Escape (or Cancel) in the confirmation keeps everything; Cancel is focused, so Enter never deletes.
    await delete.click()
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("“delete me”")
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await page.screenshot(path=shot("confirm-delete-job"))
    await page.emulate_media(color_scheme="dark")
    await dialog.screenshot(path=shot("confirm-delete-job-dark"))
    await page.emulate_media(color_scheme="light")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(delete).to_be_focused()
    await expect(card).to_be_visible()

    # A status update may re-render the card's buttons while the dialog is open: focus goes to the new Delete.
    await delete.click()
    await expect(dialog).to_be_visible()
    await card.locator('[data-action="delete"]').evaluate(
        "(old) => { const fresh = old.cloneNode(true); fresh.disabled = false; window.original = old;"
        " old.replaceWith(fresh); }"
    )
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(card.locator('[data-action="delete"]')).to_be_focused()
    # The stand-in has no click handler: put the card's own button back.
    await card.locator('[data-action="delete"]').evaluate("(fresh) => fresh.replaceWith(window.original)")

    # A refusal is shown on the card (a real 409 needs a job that is still running, whose card offers no Delete).
    refusal = f"job '{job_id}' is still queued or running; cancel it first"

    async def refuse(route: Route) -> None:
        if route.request.method == "DELETE":
            await route.fulfill(status=409, json={"detail": refusal})
        else:
            await route.continue_()

    await page.route(f"**/api/jobs/{job_id}", refuse)
    await delete.click()
    await dialog.get_by_role("button", name="Delete job").click()
    await expect(card.locator(".job-notice")).to_have_text(refusal)
    await expect(card).to_be_visible()
    await card.screenshot(path=shot("card-delete-refused"))
    await page.unroute(f"**/api/jobs/{job_id}", refuse)

    await delete.click()
    await dialog.get_by_role("button", name="Delete job").click()
    await expect(card).to_have_count(0)
    await expect(page.locator(f'.history-item[data-job-id="{job_id}"]')).to_have_count(0)
    await expect(page.locator("#jobs-heading")).to_be_focused()
    assert (await site.stack.api.get(f"/api/jobs/{job_id}")).status_code == 404
    assert httpx.get(video_url).status_code == 404  # the video went with it


MODEL_SVD = {
    "speech": "coqui:tts_models/en/vctk/vits",
    "scene": "diffusers-sd",
    "image_to_video": "diffusers-svd",
    "lipsync": "wav2lip",
    "upscale": "realesrgan",
    "mux": "ffmpeg",
}
UNKNOWN_SADTALKER = {"speech": "espeak-ng:de", "talking_head": "embedded-face-mesh", "lipsync": "viseme-blend-v2"}
# A profile's job with XTTS configured: its cloned voice and its portrait (the parts listed in any order).
PROFILE_SADTALKER = {"portrait": "profile-portrait", "voice": "profile-clone", "speech": "coqui-xtts",
                     "talking_head": "embedded-face-mesh", "mux": "ffmpeg"}  # fmt: skip


async def test_each_card_says_what_ran_and_names_only_the_models_that_did(
    site_factory, object_store, page: Page
) -> None:
    renders = [
        ("svd", EMBEDDED_SVD),
        ("svd", MODEL_SVD),
        ("sadtalker", UNKNOWN_SADTALKER),
        ("sadtalker", PROFILE_SADTALKER),
    ]
    async with site_factory(gpu_activities=[rendered_with(object_store, *(r for _, r in renders))]) as site:
        jobs = []
        for variant, _ in renders:  # one after the other: the stub reports the renderings in turn
            accepted = await site.stack.api.post(
                "/api/generate", json={"topic": f"what ran {variant}", "variant": variant}
            )
            jobs.append(accepted.json()["jobId"])
            await wait_for_status(site.stack.api, jobs[-1])
        await open_page(page, site)
        cards = {}
        for job_id in jobs:
            await page.locator(f'.history-item[data-job-id="{job_id}"]').click()
            cards[job_id] = page.locator(f'article.job[data-job-id="{job_id}"]')
            await expect(cards[job_id]).to_have_attribute("data-status", "completed")

        embedded, model, unknown, profile = (cards[j] for j in jobs)
        ran = embedded.get_by_role("group", name="What ran")
        await expect(ran.locator("dt")).to_have_text(["Voice", "Scene", "Motion", "Mouth", "Captions", "Encoding"])
        await expect(ran.locator("dd")).to_have_text(
            ["Piper neural voice (joe, en-US)", "procedural backdrop", "Ken Burns camera",
             "mouth shaped to the phonemes (face mesh)", "timed per sentence", "FFmpeg"]
        )  # fmt: skip
        await expect(ran.locator('[data-stage="speech"] dd')).to_have_attribute("title", "piper:en_US-joe-medium")
        await expect(embedded.locator(".job-title")).to_have_text("Generate · Animated scene")
        for claim in ("SVD", "Stable", "Wav2Lip", "SadTalker", "lip"):
            await expect(embedded).not_to_contain_text(claim)
        await embedded.screenshot(path=shot("card-what-ran"))

        await expect(model.locator(".job-title")).to_have_text("Generate · Animated scene (SVD)")
        await expect(model.get_by_role("group", name="What ran").locator("dd")).to_have_text(
            ["Coqui TTS", "Stable Diffusion", "Stable Video Diffusion", "Wav2Lip", "Real-ESRGAN", "FFmpeg"]
        )

        await expect(unknown.locator(".job-title")).to_have_text("Generate · Animated portrait")
        await expect(unknown.get_by_role("group", name="What ran").locator("dd")).to_have_text(
            ["eSpeak NG (formant synthesizer)", "animated portrait (face mesh)", "viseme-blend-v2"]  # unknown: as-is
        )
        await expect(unknown).not_to_contain_text("SadTalker")

        ran = profile.get_by_role("group", name="What ran")
        await expect(ran.locator("dt")).to_have_text(["Voice", "Face", "Encoding", *["From your profile"] * 2])
        await expect(ran.locator("dd")).to_have_text(
            ["Coqui XTTS v2 (voice cloning)", "animated portrait (face mesh)", "FFmpeg", "your trained voice",
             "your portrait"]
        )  # fmt: skip
        await expect(profile.locator(".job-title")).to_have_text("Generate · Animated portrait")


async def test_variant_choices_name_a_model_only_when_the_workers_would_run_it(site: Site, page: Page) -> None:
    caps = (await site.stack.api.get("/api/capabilities")).json()
    embedded = {
        "speech": ["piper:en_US-joe-medium"],
        "talking_head": ["embedded-face-mesh"],
        "lipsync": ["embedded-visemes"],
    }
    caps["gpu"]["runtimes"] = {
        "svd": {"scene": ["procedural"], "image_to_video": ["diffusers-svd", "ken-burns"],
                "lipsync": ["wav2lip", "embedded-visemes"]},
        "sadtalker": embedded,
    }  # fmt: skip
    await page.route("**/api/capabilities", lambda route: route.fulfill(json=caps))
    await open_page(page, site)
    svd, sadtalker = page.locator('label[for="variant-svd"]'), page.locator('label[for="variant-sadtalker"]')
    await expect(svd.locator(".choice-title")).to_have_text("Animated scene (SVD)")
    await expect(svd.locator(".choice-desc")).to_contain_text("Uses Stable Video Diffusion, Wav2Lip.")
    await expect(sadtalker.locator(".choice-title")).to_have_text("Animated portrait")
    await expect(sadtalker.locator(".choice-desc")).to_have_text(
        "An animated portrait: the face talks, blinks and nods with the voice."
    )
    await page.locator("#variant-field").screenshot(path=shot("form-variants-models"))

    # The embedded runtimes the real workers advertise: no model is named anywhere in the choices.
    await page.unroute("**/api/capabilities")
    await page.reload()
    await expect(page.locator("#workers")).to_have_attribute("data-state", "ok")
    await expect(svd.locator(".choice-title")).to_have_text("Animated scene")
    await expect(svd.locator(".choice-desc")).to_contain_text("An animated scene with the presenter")
    for claim in ("SVD", "SadTalker", "lip-sync", "Stable Video Diffusion"):
        await expect(page.locator("#variant-field")).not_to_contain_text(claim)
