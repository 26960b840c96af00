"""Browser fixtures: the API served over real HTTP by uvicorn (same event loop as the workers) and
Debian's Chromium driven headless by Playwright. Never downloads a browser."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, ConsoleMessage, Page, Response, async_playwright

from api.deps import SESSION_COOKIE
from api.main import create_app
from core.auth import create_user_with_key
from core.settings import get_settings
from tests.conftest import Stack

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: `apt-get install -y chromium`
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class Site:
    """The page's base URL, the stack behind it, and an API key of the stack's user (`stack.api`'s user)."""

    url: str
    stack: Stack
    api_key: str

    async def sign_in(self, page: Page) -> None:
        """Give the page's browser context a session cookie, as the sign-in form would.

        `context.request` shares the context's cookie jar, so the page (its fetches, WebSockets
        and downloads) is signed in from its first request on.
        """
        response = await page.context.request.post(f"{self.url}/api/session", data={"apiKey": self.api_key})
        assert response.status == 200, await response.text()
        cookies = {c["name"]: c for c in await page.context.cookies(self.url)}
        assert cookies[SESSION_COOKIE]["httpOnly"] and cookies[SESSION_COOKIE]["sameSite"] == "Strict"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium`")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        await browser.close()


@pytest.fixture
def site_factory(stack_factory: Any) -> Any:
    """`async with site_factory(**stack_options) as site:` workers on fresh queues plus the API on a free port.

    The API is its own app instance with the stack's settings override, served by uvicorn in
    this event loop, so the browser reaches it over real HTTP and WebSockets. `site.api_key` is
    a fresh key of the stack's user, so the page and `stack.api` see the same jobs.
    """

    @asynccontextmanager
    async def factory(**stack_options: Any) -> AsyncIterator[Site]:
        async with stack_factory(**stack_options) as stack:
            app = create_app()
            app.dependency_overrides[get_settings] = lambda: stack.settings
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3))
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                if serving.done():
                    serving.result()  # raises what stopped the server
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.02)
            api_key = await create_user_with_key(stack.sessions, stack.user_id, name="browser tests")
            try:
                yield Site(url=f"http://127.0.0.1:{port}", stack=stack, api_key=api_key)
            finally:
                server.should_exit = True
                await serving
                sock.close()

    return factory


@pytest.fixture
async def site(site_factory: Any) -> AsyncIterator[Site]:
    """The default site: the real GPU worker (embedded CPU runtimes) behind the API."""
    async with site_factory() as site:
        yield site


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context on the site; fails the test on a script error or a missing page asset.

    API answers of 4xx are expected (validation tests, the sign-in check), so the browser's
    "Failed to load resource" console lines are not errors here; a failed `/` or `/static/…` load is.
    The context starts signed out: `site.sign_in(page)` or the sign-in form signs it in.
    """
    # Reduced motion: the page then skips its transitions, so screenshots never catch one midway.
    context = await browser.new_context(
        viewport={"width": 1320, "height": 900}, device_scale_factor=1, reduced_motion="reduce"
    )
    page = await context.new_page()
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(f"console: {msg.text}")

    def on_response(response: Response) -> None:
        if response.status >= 400 and "/api/" not in response.url:
            errors.append(f"{response.status} {response.url}")

    page.on("pageerror", lambda err: errors.append(f"uncaught: {err}"))
    page.on("console", on_console)
    page.on("response", on_response)
    page.set_default_timeout(20_000)
    yield page
    await context.close()
    assert not errors, f"the page logged errors: {errors}"


def shot(name: str) -> str:
    """Where a screenshot goes (`test-artifacts/<name>.png`)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")
