"""Upload routes: store images, video clips, voice clips and music (multipart → object storage), list and delete them."""

import asyncio
import functools
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile, status
from fastapi import Path as PathParam

from api import erasure
from api.deps import ServicesDep, SettingsDep, UserDep, get_principal
from api.errors import FieldError
from api.media_checks import CLIP_TYPES, IMAGE_TYPES, UnusableUpload, check_audio, check_clip, check_image
from api.views import uploaded_object
from core.settings import Settings
from schemas import names
from schemas.api import UploadedFile, UploadsListed, UploadsPublic

router = APIRouter(prefix="/api", dependencies=[Depends(get_principal)])

AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
}
UPLOAD_NAME = r"^(music-)?[0-9a-f]{32}\.[a-z0-9]{2,5}$"  # the names `POST /api/uploads` generates
_CHUNK = 1024 * 1024
MUSIC_PREFIX = names.MUSIC_UPLOAD_PREFIX


@router.post("/uploads", status_code=status.HTTP_201_CREATED, tags=["uploads"])
async def upload(
    files: Annotated[list[UploadFile], File()],
    user: UserDep,
    services: ServicesDep,
    settings: SettingsDep,
    purpose: Annotated[
        Literal["media", "music"],
        Form(
            description="`music`: audio for `options.music` (needs `rightsConfirmed`); `media`: everything else "
            "(images, voice clips, and video clips for `options.media`)"
        ),
    ] = "media",
    rights_confirmed: Annotated[
        bool,
        Form(alias="rightsConfirmed", description="music only: you hold the rights to use it in your videos"),
    ] = False,
) -> UploadsPublic:
    """Store images, clips and music; the returned `s3://` URIs go into `/api/train`, `portrait`, `options.media` or `options.music`."""
    limits = settings.api
    if len(files) > limits.max_files_per_upload:
        raise FieldError(("body", "files"), f"at most {limits.max_files_per_upload} files per upload")
    music = purpose == "music"
    if music and not rights_confirmed:
        raise FieldError(
            ("body", "rightsConfirmed"), "confirm that you hold the rights to use this music in your videos"
        )
    stored: list[UploadedFile] = []
    # Every file is checked before any is stored: a refused upload leaves nothing behind.
    with tempfile.TemporaryDirectory(prefix="upload-") as spool:
        accepted = [await _accept(file, i, Path(spool), music, settings) for i, file in enumerate(files)]
        for file, (path, content_type, size) in zip(files, accepted, strict=True):
            key = f"{user}/{MUSIC_PREFIX if music else ''}{uuid.uuid4().hex}{path.suffix}"
            uri, _ = await asyncio.to_thread(services.store.put_file, names.UPLOADS_BUCKET, key, path, content_type)
            stored.append(
                UploadedFile(uri=uri, filename=file.filename or "upload", content_type=content_type, size_bytes=size)
            )
    return UploadsPublic(data=stored)


async def _accept(file: UploadFile, i: int, spool: Path, music: bool, settings: Settings) -> tuple[Path, str, int]:
    """Spool one file and check its type and content; returns its path, content type and size."""
    name = file.filename or "upload"
    suffix = Path(name).suffix.lower()
    content_type = AUDIO_TYPES.get(suffix) if music else (IMAGE_TYPES | AUDIO_TYPES | CLIP_TYPES).get(suffix)
    if content_type is None and music:
        raise FieldError(
            ("body", "files", i), f"'{name}': music must be audio ({', '.join(AUDIO_TYPES)})", status_code=415
        )
    if content_type is None:
        raise FieldError(
            ("body", "files", i),
            f"'{name}': unsupported file type (images: {', '.join(IMAGE_TYPES)}; audio: {', '.join(AUDIO_TYPES)}; "
            f"video clips: {', '.join(CLIP_TYPES)})",
            status_code=415,
        )
    path = spool / f"{i}{suffix}"
    size = await _spool(file, path, settings.api.max_upload_bytes, i, name)
    try:
        await asyncio.to_thread(_checker(suffix, settings.api.max_video_seconds), path)
    except UnusableUpload as err:
        raise FieldError(("body", "files", i), f"'{name}' {err}") from err
    return path, content_type, size


def _checker(suffix: str, max_video_seconds: float) -> Callable[[Path], object]:
    """The content check for a file of this type (it raises `UnusableUpload`)."""
    if suffix in IMAGE_TYPES:
        return check_image
    if suffix in CLIP_TYPES:
        return functools.partial(check_clip, max_seconds=max_video_seconds)
    return check_audio


async def _spool(file: UploadFile, dest: Path, max_bytes: int, index: int, name: str) -> int:
    """Copy the upload to `dest`, refusing it as soon as it passes `max_bytes`."""
    size = 0
    with dest.open("wb") as out:
        while chunk := await file.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FieldError(
                    ("body", "files", index),
                    f"'{name}' is larger than {max_bytes // (1024 * 1024)} MiB",
                    status_code=413,
                )
            out.write(chunk)
    if size == 0:
        raise FieldError(("body", "files", index), f"'{name}' is empty")
    return size


@router.get("/uploads", tags=["personal data"])
async def list_uploads(user: UserDep, services: ServicesDep) -> UploadsListed:
    """The caller's stored uploads (unused ones expire after the retention period)."""
    objects = await asyncio.to_thread(services.store.list_objects, names.UPLOADS_BUCKET, f"{user}/")
    data = [uploaded_object(o) for o in objects]
    return UploadsListed(data=data, count=len(data))


@router.delete("/uploads/{name}", status_code=status.HTTP_204_NO_CONTENT, tags=["personal data"])
async def delete_upload(
    name: Annotated[str, PathParam(pattern=UPLOAD_NAME, examples=["3f0c9a7d5b1e4c2a8f6d0b9e7c5a3e1f.png"])],
    user: UserDep,
    services: ServicesDep,
) -> None:
    """Delete one of the caller's uploads (`name` is the last part of its `s3://uploads/<user>/…` URI)."""
    await erasure.erase_upload(services, user, name)
