"""Web routes: the single page (`/`) and its static files (`/static/…`); the job stream is in `jobs.py`."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.errors import ApiError

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"
_NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate (ETag), so a deploy is seen at once

router = APIRouter(tags=["web"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The single page."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=_NO_CACHE)


@router.get("/static/{path:path}", include_in_schema=False)
async def static(path: str) -> FileResponse:
    """The page's scripts, styles and icons (no CDN: the machine may be offline)."""
    try:
        file = (STATIC_DIR / path).resolve()
        found = file.is_relative_to(STATIC_DIR) and file.is_file()
    except (OSError, ValueError):  # e.g. a NUL byte in the path
        found = False
    if not found:
        raise ApiError(404, f"no static file '{path[:100]}'")
    return FileResponse(file, headers=_NO_CACHE)
