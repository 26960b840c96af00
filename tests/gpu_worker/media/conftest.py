"""Shared renders for the media tests: small (240p) so the whole module stays fast."""

from pathlib import Path

import pytest

from gpu_worker.media.pipeline import RenderOutputs, render_still_video
from gpu_worker.media.speech import SpeechResult, VoiceParams
from gpu_worker.media.voices import synthesize

SIZE = (426, 240)
FPS = 25
NARRATIVE = "Hello and welcome. Today we explore the ocean, and why its waves never stop moving."
STAGE = "A calm beach at sunrise with gentle ocean waves"


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> SpeechResult:
    return synthesize(NARRATIVE, tmp_path_factory.mktemp("speech") / "speech.wav", VoiceParams())


def _render(out_dir: Path, variant: str, captions: bool) -> tuple[RenderOutputs, list[tuple[str, float]]]:
    calls: list[tuple[str, float]] = []
    out = render_still_video(
        STAGE,
        NARRATIVE,
        out_dir,
        SIZE,
        FPS,
        VoiceParams(),
        None,
        variant,
        captions,
        progress=lambda stage, fraction: calls.append((stage, fraction)),
        cancelled=lambda: False,
        # Longer than the ~5 s of speech: a closing silence gives the mouth tests many quiet frames.
        duration_seconds=8,
    )
    return out, calls


@pytest.fixture(scope="session")
def svd_render(tmp_path_factory: pytest.TempPathFactory) -> tuple[RenderOutputs, list[tuple[str, float]]]:
    return _render(tmp_path_factory.mktemp("svd"), "svd", captions=True)


@pytest.fixture(scope="session")
def sadtalker_render(tmp_path_factory: pytest.TempPathFactory) -> tuple[RenderOutputs, list[tuple[str, float]]]:
    return _render(tmp_path_factory.mktemp("sadtalker"), "sadtalker", captions=False)
