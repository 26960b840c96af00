"""Signing in and out of the page: an API key becomes an HttpOnly session cookie; a 401 brings the form back."""

import pytest
from playwright.async_api import Page, expect

from api.deps import SESSION_COOKIE
from tests.browser.conftest import Site, shot

pytestmark = pytest.mark.integration

# Every string the page's own script could have kept: storage, cookies it can read, globals.
PAGE_SECRETS = """() => [
  JSON.stringify({ ...localStorage }), JSON.stringify({ ...sessionStorage }), document.cookie,
  ...Object.keys(window).map((k) => { try { return typeof window[k] === "string" ? window[k] : ""; } catch { return ""; } }),
].join("\\n")"""


async def test_a_wrong_key_is_refused_and_the_right_one_opens_the_app(site: Site, page: Page) -> None:
    await page.goto(site.url)
    key = page.get_by_label("API key")
    await expect(key).to_be_visible()
    await expect(key).to_have_attribute("type", "password")
    await expect(key).to_be_focused()
    app = page.locator("#app")
    await expect(app).to_be_hidden()
    await expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    await page.screenshot(path=shot("signin"), full_page=True)

    await key.fill("msb_not-a-key-of-anyone")
    await key.press("Enter")  # the keyboard submits
    error = page.locator("#err-api-key")
    await expect(error).to_have_text("That API key is unknown or has been revoked. Check it and try again.")
    await expect(key).to_have_attribute("aria-invalid", "true")
    await expect(app).to_be_hidden()
    assert SESSION_COOKIE not in {c["name"] for c in await page.context.cookies()}
    await page.locator("section.signin").screenshot(path=shot("signin-error"))
    await page.emulate_media(color_scheme="dark")
    await page.screenshot(path=shot("signin-error-dark"), full_page=True)
    await page.emulate_media(color_scheme="light")

    await key.fill(site.api_key)
    await expect(error).to_be_empty()
    await page.get_by_role("button", name="Sign in").click()
    await expect(app).to_be_visible()
    await expect(page.locator("#signin")).to_be_hidden()
    await expect(page.locator("#account")).to_contain_text(f"Signed in as {site.stack.user_id}")
    await expect(page.locator("#workers")).to_have_attribute("data-state", "ok")
    await expect(page.get_by_label("Topic")).to_be_focused()
    await expect(key).to_have_value("")
    assert site.api_key not in await page.evaluate(PAGE_SECRETS)
    cookie = next(c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    await page.locator("header.topbar").screenshot(path=shot("topbar-signed-in"))

    await page.reload()  # the cookie keeps the page signed in; the key is not asked again
    await expect(app).to_be_visible()
    await expect(page.get_by_label("API key")).to_be_hidden()
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.locator("header.topbar").screenshot(path=shot("topbar-phone"))


async def test_sign_out_returns_to_the_form_and_later_calls_are_401(site: Site, page: Page) -> None:
    await site.sign_in(page)
    await page.goto(site.url)
    await expect(page.locator("#workers")).to_have_attribute("data-state", "ok")
    await page.get_by_label("Topic").fill("a draft nobody else should see")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    await expect(page.locator("#signin-notice")).to_have_text("You are signed out.")
    await expect(page.locator("#app")).to_be_hidden()
    await expect(page.get_by_label("Topic")).to_have_value("")
    assert SESSION_COOKIE not in {c["name"] for c in await page.context.cookies()}
    session = await page.context.request.get(f"{site.url}/api/session")
    assert session.status == 401
    jobs = await page.context.request.get(f"{site.url}/api/jobs")
    assert jobs.status == 401
    closed = await page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws/jobs/job-nope");
            ws.onclose = (e) => resolve(e.code);
        })"""
    )
    assert closed == 4401
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=shot("signin-phone"), full_page=True)


async def test_a_401_from_a_later_call_brings_back_the_form(site: Site, page: Page) -> None:
    await site.sign_in(page)
    await page.goto(site.url)
    await expect(page.locator("#workers")).to_have_attribute("data-state", "ok")
    await page.get_by_label("Topic").fill("keep my words")
    await page.wait_for_load_state("networkidle")  # the first loads (history, profiles) have answered
    # The session ends behind the page's back (it expired, or was signed out in another tab).
    ended = await page.context.request.delete(f"{site.url}/api/session")
    assert ended.status == 204

    await page.get_by_role("button", name="Refresh").click()  # the history reload answers 401
    await expect(page.locator("#signin-notice")).to_have_text("Your session ended; sign in again.")
    await expect(page.locator("#app")).to_be_hidden()
    await expect(page.get_by_label("API key")).to_be_focused()
    await page.locator("section.signin").screenshot(path=shot("signin-session-ended"))

    await page.get_by_label("API key").fill(site.api_key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.get_by_label("Topic")).to_have_value("keep my words")  # the same user keeps the draft
