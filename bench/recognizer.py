"""What the benchmarks hear: delivered audio at 16 kHz, PocketSphinx's transcription, and word error rates."""

import re
from pathlib import Path

import numpy as np

__all__ = ["RATE", "Recognizer", "normalise", "pcm16k", "word_error_rate"]

RATE = 16000  # what PocketSphinx's en-us model was trained on


def pcm16k(path: Path) -> np.ndarray:
    """The first audio stream of a media file as 16 kHz mono int16 samples (PyAV's resampler)."""
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise RuntimeError(f"{path} has no audio stream")
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    if not chunks:
        raise RuntimeError(f"{path}: the audio stream decoded to nothing")
    return np.concatenate(chunks).astype(np.int16)


class Recognizer:
    """PocketSphinx with its default en-us acoustic model, language model and dictionary; one utterance per narration."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=RATE, loglevel="FATAL")

    def transcribe(self, pcm: np.ndarray) -> str:
        """The best hypothesis for 16 kHz mono int16 audio."""
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def normalise(text: str) -> str:
    """Lower case, apostrophes dropped (`it's` → `its`), other punctuation as spaces, single spaces."""
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower().replace("'", "").replace("’", "")).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """jiwer's WER of normalised texts."""
    import jiwer

    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))
