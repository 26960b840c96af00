"""`speech` with Coqui TTS (`coqui-tts`, imported as `TTS`) from a local model folder, sentence by sentence.

The folder holds what Coqui's model manager downloads: `config.json`, the checkpoint
(`model.pth`, or `model_file.pth` as released models name it) and whatever speaker or language
files the config names (`speakers.pth`, `speaker_ids.json`, ...; looked up in the folder first,
so a folder copied from the machine that downloaded it still loads). It is checked at start-up
and loaded on first use; nothing is ever downloaded.

The user's voice is not cloned: a VITS model speaks with one of its own speakers
(`APP_GPU__COQUI_SPEAKER`, default its first). From the profile's fitted `VoiceParams` only the
speaking rate carries over, as VITS's `length_scale` (see `length_scale`); VITS has no pitch knob.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.backends.base import Progress
from gpu_worker.backends.errors import backend_failed, missing_weights
from gpu_worker.media.speech import SpokenSentence, VoiceParams, estimate_timeline, trim_silence

logger = logging.getLogger(__name__)

MODEL_SETTING = "APP_GPU__COQUI_MODEL_DIR"
SPEAKER_SETTING = "APP_GPU__COQUI_SPEAKER"
CHECKPOINTS = ("model.pth", "model_file.pth", "model_file.pth.tar", "checkpoint.pth")  # as Coqui's model manager
NEUTRAL_WPM = 165  # `VoiceParams`' default rate (espeak-ng's): the pace a model keeps at its own length_scale
LENGTH_SCALE_RANGE = (0.5, 2.0)
# Files a config may name (at the top, in `model_args` or `audio`) → the flag without which the model ignores it.
_FILES: dict[str, str | None] = {
    "d_vector_file": "use_d_vector_file",
    "speakers_file": "use_speaker_embedding",
    "language_ids_file": "use_language_embedding",
    "speaker_encoder_model_path": None,
    "speaker_encoder_config_path": None,
    "stats_path": None,
}


def length_scale(rate_wpm: int) -> float:
    """VITS `length_scale` (the multiplier of every predicted phoneme duration) for a speaking rate.

    The profile's rate is fitted on espeak-ng's words-per-minute scale
    (`gpu_worker.training.voice`), whose default 165 wpm is an ordinary reading pace: the pace
    VITS models trained on read speech keep at their own `length_scale`. Durations go inversely
    with the rate: 165 wpm → 1.0, 220 → 0.75, 110 → 1.5; clamped to 0.5..2.0, beyond which
    VITS slurs or drawls.

    Args:
        rate_wpm: The voice's speaking rate.

    Returns:
        The factor to multiply the model's own `length_scale` by.
    """
    low, high = LENGTH_SCALE_RANGE
    return float(np.clip(NEUTRAL_WPM / max(rate_wpm, 1), low, high))


def _file_fields(config: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """`(section, key, path)` of every file the config names."""
    for section in (config, config.get("model_args") or {}, config.get("audio") or {}):
        for key in _FILES:
            value = section.get(key)
            first = value[0] if isinstance(value, list) and value else value
            if isinstance(first, str) and first:
                yield section, key, first


def _needed(config: dict[str, Any], key: str) -> bool:
    flag = _FILES[key]
    return flag is None or bool(config.get(flag) or (config.get("model_args") or {}).get(flag))


def _locate(model_dir: Path, named: str) -> Path | None:
    """A file the config names: its namesake in the model folder first, else the path itself (relative to the folder)."""
    for candidate in (model_dir / Path(named).name, model_dir / named):
        if candidate.is_file():
            return candidate
    return None


def check_model_dir(model_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint and config of a Coqui model folder, checked without loading anything.

    Args:
        model_dir: `APP_GPU__COQUI_MODEL_DIR`.

    Returns:
        The checkpoint file and the parsed `config.json`.

    Raises:
        ApplicationError: `MissingWeights` naming the folder or file that is missing or unreadable.
    """
    if not model_dir.is_dir():
        raise missing_weights(f"Coqui TTS model folder {model_dir} ({MODEL_SETTING}) does not exist")
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise missing_weights(f"Coqui TTS model folder {model_dir} has no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise missing_weights(f"Coqui TTS config {config_path} is not readable JSON: {err}") from err
    if not isinstance(config, dict):
        raise missing_weights(f"Coqui TTS config {config_path} is not a JSON object")
    checkpoint = next((model_dir / name for name in CHECKPOINTS if (model_dir / name).is_file()), None)
    if checkpoint is None:
        raise missing_weights(f"Coqui TTS model folder {model_dir} has no checkpoint ({' or '.join(CHECKPOINTS)})")
    for _section, key, named in _file_fields(config):
        if _needed(config, key) and _locate(model_dir, named) is None:
            raise missing_weights(
                f"Coqui TTS config {config_path} names {key} {named}, found neither in {model_dir} nor at that path"
            )
    return checkpoint, config


def _relocated(config: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    """The config with every file it names pointing into the model folder (where one of that name exists)."""
    moved = copy.deepcopy(config)
    for section, key, named in list(_file_fields(moved)):
        found = _locate(model_dir, named)
        if found is not None:
            section[key] = [str(found)] if isinstance(section[key], list) else str(found)
    return moved


def _pcm16(waves: list[np.ndarray]) -> list[np.ndarray]:
    """Float waveforms to 16-bit, peak-normalised together (as Coqui's `save_wav`) so sentences keep their levels."""
    peak = max((float(np.abs(w).max()) for w in waves if w.size), default=0.0)
    scale = 32767 / max(peak, 0.01)
    return [np.clip(w * scale, -32768, 32767).astype(np.int16) for w in waves]


class CoquiSpeech:
    """A Coqui TTS model (VITS and other single-checkpoint models) loaded once, on first use, from `model_dir`."""

    name = "coqui"

    def __init__(self, model_dir: Path, speaker: str | None = None) -> None:
        """Check the folder now, so a broken path stops the worker at start-up.

        Raises:
            ApplicationError: `MissingWeights` naming the missing path (or coqui-tts not installed).
        """
        self.model_dir = model_dir
        self.checkpoint, _ = check_model_dir(model_dir)
        if importlib.util.find_spec("TTS") is None:
            raise missing_weights(f"{MODEL_SETTING}={model_dir} is set but coqui-tts is not installed")
        self.speaker = speaker
        self._tts: Any = None
        self._device = "cpu"
        self._lock = threading.Lock()

    def speak_sentences(
        self, sentences: list[str], voice: VoiceParams, speed: float, seed: int, progress: Progress
    ) -> tuple[list[SpokenSentence], int]:
        """Speak each sentence at the model's sample rate; words are spread over each sentence (estimated timing).

        Args:
            sentences: The sentences, in order (at least one).
            voice: Its language picks one of a multilingual model's.
            speed: 1 = the model's pace; 1.1 = 10 % faster (`length_scale` / 1.1, when the model has one).
            seed: Seeds the model's noise (sentence `i` uses `seed + i`), so the same input gives the same audio.
            progress: Called before the first and after every sentence; raising from it stops between sentences.

        Returns:
            The spoken sentences (silence trimmed) and their sample rate.

        Raises:
            ApplicationError: `MissingWeights` when the model cannot be loaded; `BackendFailed` when it fails
                on a sentence (non-retryable for a speaker or language the model lacks) or speaks only silence.
        """
        progress(0.0)
        with self._lock:
            tts = self._model()
            speaker, language = self._speaker(tts), self._language(tts, voice.language)
            model = tts.synthesizer.tts_model
            own_scale = getattr(model, "length_scale", None)
            if own_scale is None:
                logger.info("Coqui model at %s has no length_scale: the voice's pace is not applied", self.model_dir)
            waves = []
            try:
                if own_scale is not None:
                    model.length_scale = own_scale / speed
                for i, sentence in enumerate(sentences):
                    waves.append(self._say(tts, sentence, speaker, language, seed + i))
                    progress((i + 1) / len(sentences))
            finally:
                if own_scale is not None:
                    model.length_scale = own_scale
            rate = int(tts.synthesizer.output_sample_rate)
        clips = [trim_silence(w, rate)[0] for w in _pcm16(waves)]
        if not any(clip.size for clip in clips):
            raise backend_failed(f"the Coqui TTS model at {self.model_dir} produced only silence", non_retryable=True)
        return [estimate_timeline(s, clip, rate) for s, clip in zip(sentences, clips, strict=True)], rate

    def _say(self, tts: Any, sentence: str, speaker: str | None, language: str | None, seed: int) -> np.ndarray:
        import torch

        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if self._device == "cuda" else []):
            torch.manual_seed(seed)  # VITS samples noise for durations and the waveform
            try:
                wav = tts.tts(text=sentence, speaker=speaker, language=language, split_sentences=False)
            except Exception as err:  # a crash or an out-of-memory: a retry may succeed
                raise backend_failed(f"Coqui TTS failed on {sentence!r}: {err}") from err
        return np.asarray(wav, dtype=np.float32).reshape(-1)

    def _model(self) -> Any:
        if self._tts is None:
            self._tts = self._load()
        return self._tts

    def _load(self) -> Any:
        checkpoint, config = check_model_dir(self.model_dir)  # again: the folder may have changed since start-up
        try:
            import torch
            from TTS.api import TTS
        except ImportError as err:
            raise missing_weights(f"coqui-tts cannot be imported for {self.model_dir}: {err}") from err
        if config.get("use_phonemes"):
            from gpu_worker.backends.coqui_phonemes import use_libespeak_without_program

            use_libespeak_without_program(config.get("phoneme_language"))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="coqui-config-") as tmp:
            config_path = Path(tmp) / "config.json"
            config_path.write_text(json.dumps(_relocated(config, self.model_dir)), encoding="utf-8")
            try:
                tts = TTS(model_path=str(checkpoint), config_path=str(config_path), progress_bar=False)
            except Exception as err:
                raise missing_weights(f"cannot load the Coqui TTS model at {self.model_dir}: {err}") from err
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        tts.to(self._device)
        speakers = tts.speakers if tts.is_multi_speaker else None
        logger.info(
            "loaded Coqui TTS model %s from %s on %s in %.1f s (%s speakers, %d Hz)",
            config.get("model"), self.model_dir, self._device, time.perf_counter() - started,
            len(speakers) if speakers else "no", tts.synthesizer.output_sample_rate,
        )  # fmt: skip
        return tts

    def _speaker(self, tts: Any) -> str | None:
        speakers = [str(name) for name in tts.speakers or []] if tts.is_multi_speaker else []
        if not speakers:
            if self.speaker:
                logger.warning("the Coqui model at %s has one speaker; %s is ignored", self.model_dir, SPEAKER_SETTING)
            return None
        if self.speaker is None:
            return speakers[0]
        if self.speaker not in speakers:
            raise backend_failed(
                f"speaker {self.speaker!r} ({SPEAKER_SETTING}) is not one of the {len(speakers)} speakers of the "
                f"Coqui TTS model at {self.model_dir}: {', '.join(speakers[:20])}{' …' if len(speakers) > 20 else ''}",
                non_retryable=True,
            )
        return self.speaker

    def _language(self, tts: Any, language: str) -> str | None:
        if not tts.is_multi_lingual:
            return None  # a single-language model speaks its own language whatever the job's
        names = [str(name) for name in tts.languages or []]
        code = language.lower()
        match = next((n for n in names if n.lower() == code), None) or next(
            (n for n in names if n.lower().split("-")[0] == code.split("-")[0]), None
        )
        if match is None:
            raise backend_failed(
                f"the Coqui TTS model at {self.model_dir} does not speak {language!r} (it has {', '.join(names)})",
                non_retryable=True,
            )
        return match
