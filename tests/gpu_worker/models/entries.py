"""Catalogue entries pointing at the fake Hub, in the shape of the real ones, and the bytes they serve."""

import hashlib
import random
from dataclasses import replace

from gpu_worker.models.catalogue import CATALOGUE, ESRGAN, SD15, Asset, Commercial, Entry, HubRepo, Pin, select

MiB = 1024 * 1024


def noise(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TINY = {
    "config.json": b'{"hidden": 8}',
    "weights.safetensors": noise(4096),
    "sub/notes.txt": b"tiny",
    "unused.bin": noise(2048, 1),
}

TINY_SD_PATTERNS = ("model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "unet/*", "vae/*")


def hub_entry(
    name: str,
    repo: str,
    *,
    patterns: tuple[str, ...] = ("*",),
    pins: tuple[Pin, ...] = (),
    commercial: Commercial = "yes",
    gated: bool = False,
) -> Entry:
    return Entry(
        name=name,
        folder=name,
        runtime=name,
        license="Test Licence 1.0",
        license_url="https://example.invalid/licence",
        commercial=commercial,
        hub=HubRepo(repo, "", patterns, pins),
        gated=gated,
    )


def asset_entry(name: str, *assets: Asset, commercial: Commercial = "yes") -> Entry:
    return Entry(
        name=name,
        folder=name,
        runtime=name,
        license="Test Licence 1.0",
        license_url="https://example.invalid/licence",
        commercial=commercial,
        assets=assets,
        manual="https://example.invalid/download-page",
    )


def real_sd15_from(repo: str) -> Entry:
    """The catalogue's `sd15` (its folder and licence) with its files from a tiny repository on the fake Hub."""
    [sd15] = select([SD15])
    return replace(sd15, hub=HubRepo(repo, "", TINY_SD_PATTERNS))


def real_esrgan_from(url: str) -> Entry:
    [esrgan] = select([ESRGAN])
    return replace(esrgan, assets=(Asset("RealESRGAN_x4plus.pth", url),))


def catalogue_with(*entries: Entry) -> tuple[Entry, ...]:
    """The real catalogue with these entries replacing (or joining) those of the same name."""
    replaced = {entry.name: entry for entry in entries}
    return tuple(replaced.pop(e.name, e) for e in CATALOGUE) + tuple(replaced.values())
