"""`train_voice`: espeak-ng voice parameters fitted to the user's clips, and their cloned voice where XTTS runs.

Each clip is decoded, normalised and measured (median F0, F0 spread, syllable rate); the
measurements are mapped onto `VoiceParams` through tables measured on espeak-ng itself, so
speech synthesized with the fitted parameters has about the clip's median F0 and syllable
rate. Per-clip measurements are checkpointed, so a retried attempt skips the clips done.
With a cloning backend configured (XTTS v2), the clips that passed those checks also give the
profile's cloned voice (`gpu_worker.training.voice_clone`), named in `voice.json`'s `clone`.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.storage import parse_s3_uri
from gpu_worker.media.speech import VoiceParams
from gpu_worker.progress import stop_error
from gpu_worker.training.audio import ClipStats, analyse, decode
from gpu_worker.training.checkpoints import checkpoint_uri, resume_candidates
from gpu_worker.training.errors import InvalidInputError
from gpu_worker.training.inputs import Heartbeats, Store, fetch
from gpu_worker.training.voice_clone import VoiceCloner, clone_voice
from schemas.names import ARTIFACTS_BUCKET
from schemas.tasks import TrainVoiceInput, TrainVoiceResult

logger = logging.getLogger(__name__)

STAGE = "train_voice"
RUNTIME = "espeak-ng"
MAX_CLIPS = 20
FEMALE_F0_HZ = 165.0  # median F0 from which the female variant fits better
_FORMAT = 1  # of the per-clip checkpoints
VOICE_FORMAT = 2  # of `voice.json`: 2 may name a `clone`; 1 (profiles trained before cloning) never does

# Measured on espeak-ng with `analyse` (geometric means over three English paragraphs): per
# variant, the median F0 each pitch setting gives, the F0 spread (p90 - p10, semitones) each
# pitch_range gives at pitch 50, and the spread at pitch_range 50 for each pitch (espeak's
# range narrows as the pitch rises); and the syllable rate each rate_wpm gives.
_STEPS = [0.0, 25.0, 50.0, 75.0, 100.0]
_F0_BY_PITCH = {"m3": [75.9, 86.3, 105.2, 134.2, 173.7], "f1": [115.4, 142.0, 179.8, 234.1, 306.5]}
_SPREAD_BY_RANGE = {"m3": [0.39, 2.47, 4.56, 6.10, 7.28], "f1": [0.89, 2.23, 3.96, 5.61, 6.89]}
_SPREAD_BY_PITCH = {"m3": [4.18, 4.54, 4.56, 3.61, 2.87], "f1": [5.83, 5.52, 3.96, 3.14, 2.37]}
_WPM = [80.0, 120.0, 165.0, 200.0, 250.0]
_SYLLABLE_RATE_BY_WPM = [2.53, 3.44, 4.60, 5.31, 6.21]  # saturates above 250 wpm, so 250 is the top


def voice_uri(profile_id: str) -> str:
    """`s3://artifacts/profiles/<profile id>/voice/voice.json`."""
    return f"s3://{ARTIFACTS_BUCKET}/profiles/{profile_id}/voice/voice.json"


def summarise(clips: list[ClipStats]) -> dict[str, float]:
    """Pool per-clip measurements, weighting each clip by its voiced time."""
    weights = np.array([c.voiced_s for c in clips])
    log_f0 = np.array([math.log(c.f0_median_hz) for c in clips])
    speech = sum(c.speech_s for c in clips)
    return {
        "f0_median_hz": round(math.exp(float(np.average(log_f0, weights=weights))), 2),
        "f0_spread_semitones": round(float(np.average([c.f0_spread_semitones for c in clips], weights=weights)), 3),
        "syllable_rate": round(sum(c.syllables for c in clips) / max(speech, 1e-6), 3),
        "voiced_s": round(float(weights.sum()), 3),
        "speech_s": round(speech, 3),
    }


def fit_voice(
    f0_median_hz: float, f0_spread_semitones: float, syllable_rate: float, language: str = "en"
) -> VoiceParams:
    """Map measured voice statistics onto espeak-ng parameters.

    Args:
        f0_median_hz: Median fundamental frequency.
        f0_spread_semitones: p90 - p10 of F0, in semitones.
        syllable_rate: Syllable nuclei per second of speaking time.
        language: espeak-ng language of the voice.

    Returns:
        The parameters (variant `f1` from 165 Hz, else `m3`).
    """
    variant = "f1" if f0_median_hz >= FEMALE_F0_HZ else "m3"
    pitch = float(np.interp(math.log(f0_median_hz), np.log(_F0_BY_PITCH[variant]), _STEPS))
    # Compare the spread with what espeak gives at this pitch, then read the range off the pitch-50 table.
    spread_at_pitch_50 = (
        f0_spread_semitones * _SPREAD_BY_RANGE[variant][2] / float(np.interp(pitch, _STEPS, _SPREAD_BY_PITCH[variant]))
    )
    pitch_range = float(np.interp(spread_at_pitch_50, _SPREAD_BY_RANGE[variant], _STEPS))
    wpm = float(np.interp(syllable_rate, _SYLLABLE_RATE_BY_WPM, _WPM))
    return VoiceParams(
        language=language,
        voice=variant,
        rate_wpm=int(round(wpm)),
        pitch=int(round(pitch)),
        pitch_range=int(round(pitch_range)),
    )


def _load_checkpoint(
    store: Store, inp: TrainVoiceInput, work_dir: Path, resume_from: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """Per-clip results of the newest usable checkpoint, and its URI."""
    for uri in resume_candidates(store, inp.job_id, inp.node_id, resume_from, ext="json"):
        local = store.download(uri, work_dir / "resume" / uri.rsplit("/", 1)[-1])
        try:
            state = json.loads(local.read_text())
            done = state["clips"]
            if state.get("format") != _FORMAT or [c["uri"] for c in done] != inp.clips[: len(done)]:
                raise ValueError("written for other clips")
        except (ValueError, KeyError, TypeError) as err:
            logger.warning("skipping voice checkpoint %s: %s", uri, err)
            continue
        logger.info("resumed %s after %d clips from %s", inp.node_id, len(done), uri)
        return done, uri
    return [], None


def _put_json(store: Store, uri: str, payload: dict[str, Any], work_dir: Path) -> str:
    local = work_dir / "out" / uri.rsplit("/", 1)[-1]
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(json.dumps(payload, indent=2))
    return store.put_file(ARTIFACTS_BUCKET, parse_s3_uri(uri)[1], local, content_type="application/json")[0]


def train_voice(
    inp: TrainVoiceInput,
    store: Store,
    work_dir: Path,
    heartbeater: Heartbeats,
    resume_from: dict[str, Any] | None = None,
    cloner: VoiceCloner | None = None,
) -> TrainVoiceResult:
    """Measure every clip, fit `VoiceParams`, clone the voice when a cloner is given, and upload `voice.json`.

    Args:
        inp: The activity input.
        store: Object storage.
        work_dir: Scratch directory for this attempt.
        heartbeater: Progress and cancellation.
        resume_from: The previous attempt's heartbeat details, if any.
        cloner: The configured voice-cloning backend (XTTS v2), or None.

    Returns:
        The URI of `voice.json`.

    Raises:
        InvalidInputError: No clips, too many, or one is missing, undecodable, silent or too short.
        CancelledError: The activity was cancelled (the clips done are checkpointed).
    """
    total = len(inp.clips)
    if not 1 <= total <= MAX_CLIPS:
        raise InvalidInputError(f"voice training takes 1 to {MAX_CLIPS} clips, got {total}")
    done, last_ckpt = _load_checkpoint(store, inp, work_dir, resume_from)
    start = len(done)
    progress = {"total_steps": total, "start_step": start, "runtime": RUNTIME, "loss": None}
    heartbeater.update(STAGE, 95.0 * start / total, step=start, checkpoint_uri=last_ckpt, **progress)
    for index in range(start, total):
        uri = inp.clips[index]
        stats = analyse(decode(fetch(store, uri, work_dir / "clips", index), uri), uri)
        done.append({"uri": uri, **asdict(stats)})
        last_ckpt = _put_json(
            store,
            checkpoint_uri(inp.job_id, inp.node_id, index + 1, ext="json"),
            {"format": _FORMAT, "step": index + 1, "clips": done},
            work_dir,
        )
        heartbeater.update(STAGE, 95.0 * (index + 1) / total, step=index + 1, checkpoint_uri=last_ckpt, **progress)
        if index + 1 < total and heartbeater.cancelled():
            raise stop_error(f"train_voice stopped after clip {index + 1}/{total}; checkpoint {last_ckpt}")
    clips = [ClipStats(**{k: v for k, v in c.items() if k != "uri"}) for c in done]
    pooled = summarise(clips)
    params = fit_voice(pooled["f0_median_hz"], pooled["f0_spread_semitones"], pooled["syllable_rate"])
    stored = {k: v for k, v in asdict(params).items() if k != "clone"}
    payload = {"format": VOICE_FORMAT, "runtime": RUNTIME, "params": stored, "stats": pooled, "clips": done}
    if cloner is not None:
        heartbeater.update(STAGE, 97, step=total, checkpoint_uri=last_ckpt, cloning=cloner.name, **progress)
        payload["clone"] = clone_voice(cloner, store, inp.profile_id, done, work_dir)
    uri = _put_json(store, voice_uri(inp.profile_id), payload, work_dir)
    heartbeater.update(STAGE, 100, step=total, checkpoint_uri=last_ckpt, voice_uri=uri, **progress)
    logger.info("voice for profile %s: %s (%s)", inp.profile_id, uri, params)
    clone = payload.get("clone")
    return TrainVoiceResult(voice_id=uri, clone_engine=clone["engine"] if isinstance(clone, dict) else None)


def load_voice(store: Store, voice_id: str, language: str | None = None) -> tuple[VoiceParams, dict[str, Any] | None]:
    """Read a trained voice for the renderer: its fitted parameters and its `clone` entry.

    Args:
        store: Object storage.
        voice_id: The `voice.json` URI (a profile's `voice_id`).
        language: Overrides the stored language (the job's language), if given.

    Returns:
        The espeak-ng parameters, and `{engine, uri, format}` of the cloned voice (None: trained without one).

    Raises:
        ValueError: The object is not a voice for the embedded runtime.
    """
    with tempfile.TemporaryDirectory(prefix="voice-") as tmp:
        payload = json.loads(store.download(voice_id, Path(tmp) / "voice.json").read_text())
    if payload.get("runtime") != RUNTIME:
        raise ValueError(f"{voice_id} is a {payload.get('runtime')!r} voice, not an {RUNTIME} one")
    params = VoiceParams(**payload["params"])
    if language is not None:
        params = replace(params, language=language)
    clone = payload.get("clone")
    return params, clone if isinstance(clone, dict) else None


def load_voice_params(store: Store, voice_id: str, language: str | None = None) -> VoiceParams:
    """The fitted espeak-ng parameters of a trained voice (`load_voice` without the clone)."""
    return load_voice(store, voice_id, language)[0]
