"""`speech` with Coqui XTTS v2 from a local model folder, in a profile's cloned voice.

The folder is what Coqui releases for XTTS v2: `config.json` (`"model": "xtts"`), `model.pth`,
`vocab.json` (a `speakers_xtts.pth` beside them is loaded by Coqui but not used here). It is
checked at start-up and loaded on first use (`XttsConfig` + `Xtts(config)` + `load_checkpoint`);
nothing is ever downloaded. `python -m gpu_worker.models pull xtts-v2` puts it in `<models>/xtts`
(`APP_GPU__XTTS_MODEL_DIR` points elsewhere, `xtts_backend`); it can also be configured like any
Coqui model (`APP_GPU__COQUI_MODEL_DIR`): `speech_backend` tells the two apart by the config's `model`.

XTTS speaks only in a voice cloned from reference audio. `condition` computes that voice (GPT
conditioning latents + speaker embedding) from samples already in memory: Coqui's own
`get_conditioning_latents` reads files with `torchaudio.load`, which needs FFmpeg's shared
libraries, so `train_voice` decodes the clips with PyAV and the same two model calls run on the
samples. XTTS gives no durations: word timing is estimated (spread over each sentence).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.backends.base import Progress, SpeechBackend
from gpu_worker.backends.errors import backend_failed, missing_weights
from gpu_worker.media.speech import ClonedVoice, SpokenSentence, VoiceParams, estimate_timeline, trim_silence
from schemas.speech import normalize_language

logger = logging.getLogger(__name__)

RUNTIME = "coqui-xtts"  # the speech runtime id in the manifest and a job's `rendering`
LICENSE = "Coqui Public Model License 1.0.0 (XTTS v2 weights): non-commercial use only"
CONDITIONING_RATE = 22_050  # what XTTS's conditioning encoders take (`XttsAudioConfig.sample_rate`)
MODEL_FILES = ("config.json", "model.pth", "vocab.json")
_CHAR_LIMIT = 250  # longer text is cut into pieces: XTTS's GPT truncates or fails past ~250 characters


def read_config(model_dir: Path) -> dict[str, Any] | None:
    """The folder's `config.json` as a dict, or None when there is none or it is not a JSON object."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def is_xtts_dir(model_dir: Path) -> bool:
    """Whether a Coqui model folder holds an XTTS model (its config says `"model": "xtts"`)."""
    config = read_config(model_dir)
    return config is not None and config.get("model") == "xtts"


def check_xtts_dir(model_dir: Path) -> dict[str, Any]:
    """The parsed config of an XTTS model folder whose files are all there, checked without loading anything.

    Raises:
        ApplicationError: `MissingWeights` naming the folder or the file that is missing or unreadable.
    """
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise missing_weights(f"XTTS model folder {model_dir} lacks {', '.join(missing)}")
    config = read_config(model_dir)
    if config is None:
        raise missing_weights(f"XTTS config {model_dir / 'config.json'} is not a readable JSON object")
    return config


def speech_backend(model_dir: Path, speaker: str | None = None) -> SpeechBackend:
    """The Coqui backend for a model folder: `XttsSpeech` for XTTS, `CoquiSpeech` (VITS, …) otherwise."""
    if is_xtts_dir(model_dir):
        if speaker:
            logger.warning("APP_GPU__COQUI_SPEAKER=%s is ignored: XTTS speaks in the profile's cloned voice", speaker)
        return XttsSpeech(model_dir)
    from gpu_worker.backends.coqui import CoquiSpeech

    return CoquiSpeech(model_dir, speaker)


def xtts_backend(model_dir: Path) -> XttsSpeech:
    """The backend for a folder that must hold XTTS v2 (`APP_GPU__XTTS_MODEL_DIR`, or `xtts/` in the models folder).

    Raises:
        ApplicationError: `MissingWeights` naming a missing file, or a folder holding another Coqui model.
    """
    config = check_xtts_dir(model_dir)
    if config.get("model") != "xtts":
        raise missing_weights(
            f'XTTS model folder {model_dir} holds another model: its config.json says "model": '
            f'{config.get("model")!r}, not "xtts" (a Coqui VITS model goes in APP_GPU__COQUI_MODEL_DIR)'
        )
    return XttsSpeech(model_dir)


def voice_cloner(speech: SpeechBackend | None) -> XttsSpeech | None:
    """The speech backend when it can clone voices (`train_voice` then clones), else None."""
    return speech if isinstance(speech, XttsSpeech) else None


class XttsSpeech:
    """XTTS v2 loaded once, on first use, from `model_dir`; speaks and computes cloned voices."""

    name = RUNTIME
    license = LICENSE
    clones_voices = True  # the narrator advertises the `profile` voice for it
    sample_rate = CONDITIONING_RATE  # of the clips `condition` takes

    def __init__(self, model_dir: Path, sample: bool = True) -> None:
        """Check the folder now, so a broken path stops the worker at start-up.

        Args:
            model_dir: The XTTS v2 folder.
            sample: Sample the GPT's audio tokens (Coqui's default; seeded per sentence, so repeatable on
                one machine); False decodes greedily.

        Raises:
            ApplicationError: `MissingWeights` naming the missing path (or coqui-tts not installed).
        """
        self.model_dir = model_dir
        config = check_xtts_dir(model_dir)
        if importlib.util.find_spec("TTS") is None:
            raise missing_weights(f"XTTS model folder {model_dir} is configured but coqui-tts is not installed")
        self.languages = [normalize_language(str(tag)) for tag in config.get("languages") or []]
        self.sample = sample
        self._model: Any = None
        self._device = "cpu"
        self._lock = threading.Lock()  # one model, shared by training and rendering threads

    def condition(self, clips: list[np.ndarray], rate: int) -> ClonedVoice:
        """The cloned voice of the speaker of `clips`, as Coqui's `get_conditioning_latents` computes it from files.

        Each clip gives a speaker embedding (averaged over the clips); the clips joined give the GPT's
        conditioning latents. Each clip counts up to the config's `max_ref_len` seconds, the joined
        audio up to `gpt_cond_len`, in chunks of `gpt_cond_chunk_len`.

        Args:
            clips: Mono float samples in [-1, 1] (at least one, each with at least a second of speech).
            rate: Their sample rate (`sample_rate`, 22.05 kHz, what the encoders were trained at).

        Returns:
            The latents and the embedding, float32, on the CPU.

        Raises:
            ApplicationError: `MissingWeights` when the model cannot be loaded.
        """
        import torch

        with self._lock:
            model = self._loaded()
            config = model.config
            refs = [
                torch.from_numpy(np.ascontiguousarray(c[: rate * config.max_ref_len], np.float32))[None] for c in clips
            ]
            embedding = torch.stack([model.get_speaker_embedding(ref, rate) for ref in refs]).mean(dim=0)
            latents = model.get_gpt_cond_latents(
                torch.cat(refs, dim=-1), rate, length=config.gpt_cond_len, chunk_length=config.gpt_cond_chunk_len
            )
        return ClonedVoice(
            engine=RUNTIME,
            gpt_latents=latents.detach().float().cpu().numpy(),
            speaker_embedding=embedding.detach().float().cpu().numpy(),
        )

    def speak_sentences(
        self, sentences: list[str], voice: VoiceParams, speed: float, seed: int, progress: Progress
    ) -> tuple[list[SpokenSentence], int]:
        """Speak each sentence in `voice.clone`; words are spread over each sentence (estimated timing).

        Args:
            sentences: The sentences, in order (at least one).
            voice: Its `clone` speaks; its language picks one of XTTS's.
            speed: 1 = the clone's own pace; 1.1 = 10 % faster (XTTS's `speed`: its latents are stretched).
            seed: Seeds the GPT's sampling (sentence `i` uses `seed + i`), so the same input gives the same audio.
            progress: Called before the first and after every sentence; raising from it stops between sentences.

        Returns:
            The spoken sentences (silence trimmed) and the model's output sample rate.

        Raises:
            ApplicationError: `BackendFailed`, non-retryable for a missing or foreign clone, a language XTTS lacks
                or speech that is only silence; `MissingWeights` when the model cannot be loaded.
        """
        clone = voice.clone
        if clone is None or clone.engine != RUNTIME:
            raise backend_failed(
                "XTTS speaks only in a profile's cloned voice, and this job has none", non_retryable=True
            )
        language = self._language(voice.language)
        progress(0.0)
        waves = []
        with self._lock:
            model = self._loaded()
            self._check_fits(model, clone)
            for i, sentence in enumerate(sentences):
                waves.append(self._say(model, sentence, language, clone, speed, seed + i))
                progress((i + 1) / len(sentences))
            rate = int(model.args.output_sample_rate)
        peak = max((float(np.abs(w).max()) for w in waves if w.size), default=0.0)
        scale = 32767 / max(peak, 0.01)  # peak-normalised together, so sentences keep their levels
        clips = [trim_silence(np.clip(w * scale, -32768, 32767).astype(np.int16), rate)[0] for w in waves]
        if not any(clip.size for clip in clips):
            raise backend_failed(f"the XTTS model at {self.model_dir} produced only silence", non_retryable=True)
        return [estimate_timeline(s, clip, rate) for s, clip in zip(sentences, clips, strict=True)], rate

    def _say(self, model: Any, sentence: str, language: str, clone: ClonedVoice, speed: float, seed: int) -> np.ndarray:
        import torch

        latents, embedding = torch.from_numpy(clone.gpt_latents), torch.from_numpy(clone.speaker_embedding)
        config = model.config
        pieces = textwrap.wrap(sentence, _CHAR_LIMIT, break_long_words=False) or [sentence]
        waves = []
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if self._device == "cuda" else []):
            torch.manual_seed(seed)
            for piece in pieces:
                try:
                    out = model.inference(
                        piece, language, latents, embedding, temperature=config.temperature,
                        length_penalty=config.length_penalty, repetition_penalty=config.repetition_penalty,
                        top_k=config.top_k, top_p=config.top_p, do_sample=self.sample, speed=speed,
                    )  # fmt: skip
                except Exception as err:  # a crash or an out-of-memory: a retry may succeed
                    raise backend_failed(f"XTTS failed on {piece!r}: {err}") from err
                waves.append(np.asarray(out["wav"], dtype=np.float32).reshape(-1))
        return np.concatenate(waves)

    def _check_fits(self, model: Any, clone: ClonedVoice) -> None:
        """A clone computed with another XTTS model (other sizes) cannot drive this one."""
        expected = (int(model.args.gpt_n_model_channels), int(model.args.d_vector_dim))
        found = (int(clone.gpt_latents.shape[1]), int(clone.speaker_embedding.shape[1]))
        if clone.gpt_latents.ndim != 3 or clone.speaker_embedding.ndim != 3 or found != expected:
            raise backend_failed(
                f"the profile's cloned voice was computed with another XTTS model (latent and speaker sizes {found}, "
                f"the model at {self.model_dir} takes {expected}): train the profile's voice again",
                non_retryable=True,
            )

    def _language(self, language: str) -> str:
        code = normalize_language(language)
        match = next((tag for tag in self.languages if tag == code), None) or next(
            (tag for tag in self.languages if tag.split("-")[0] == code.split("-")[0]), None
        )
        if match is None:
            raise backend_failed(
                f"the XTTS model at {self.model_dir} does not speak {language!r} (it speaks {', '.join(self.languages)})",
                non_retryable=True,
            )
        return match

    def _loaded(self) -> Any:
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> Any:
        check_xtts_dir(self.model_dir)  # again: the folder may have changed since start-up
        try:
            import torch
            from TTS.tts.configs.xtts_config import XttsConfig
            from TTS.tts.models.xtts import Xtts
        except ImportError as err:
            raise missing_weights(f"coqui-tts cannot be imported for {self.model_dir}: {err}") from err
        started = time.perf_counter()
        try:
            config = XttsConfig()
            config.load_json(str(self.model_dir / "config.json"))
            model = Xtts(config)
            model.load_checkpoint(config, checkpoint_dir=str(self.model_dir), eval=True)
        except Exception as err:  # Coqui raises anything from KeyError to RuntimeError on a bad checkpoint
            raise missing_weights(f"cannot load the XTTS model at {self.model_dir}: {err}") from err
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(self._device)
        logger.info(
            "loaded XTTS from %s on %s in %.1f s (%d languages, %d Hz)", self.model_dir, self._device,
            time.perf_counter() - started, len(self.languages), model.args.output_sample_rate,
        )  # fmt: skip
        return model
