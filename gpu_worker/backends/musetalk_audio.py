"""MuseTalk's audio conditioning: Whisper encoder states of the speech, one window of them per video frame.

MuseTalk 1.5 feeds its UNet, as cross-attention context, every hidden state of the Whisper-tiny
encoder (the input to each layer and the final output: 5 × 384 values per position, 50 positions
a second) over a window of 10 positions around the frame: 0.2 s, two 25 fps frames either side.
The window is flattened time-major to 50 tokens and a sinusoidal position code is added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000  # Whisper's input rate
FEATURE_RATE = 50  # encoder positions per second (30 s of audio → 1500 positions)
SEGMENT_SECONDS = 30  # Whisper encodes at most 30 s at once; longer speech goes in 30 s pieces
CONTEXT_FRAMES = (2, 2)  # video frames of audio context before and after each frame, as MuseTalk was trained


def window_length(context: tuple[int, int] = CONTEXT_FRAMES) -> int:
    """Encoder positions in one frame's window: two per video frame of context (at 25 fps), as trained."""
    before, after = context
    return 2 * (before + after + 1)


def window_positions(frames: Sequence[int], fps: float, context: tuple[int, int] = CONTEXT_FRAMES) -> np.ndarray:
    """The encoder positions each frame's window covers, the frame's own time near its middle.

    Frame `i` starts at `floor(i · 50 / fps)`; the window starts `ceil(50 / fps)` positions per frame
    of context earlier (MuseTalk's `get_whisper_chunk`, whose zero padding these positions index past).

    Args:
        frames: Video frame indices.
        fps: The video's frame rate.
        context: Frames of context before and after.

    Returns:
        `(len(frames), window_length)` int64 positions; those before 0 or past the speech read as silence.
    """
    step = FEATURE_RATE / fps
    starts = np.floor(np.asarray(frames, np.float64) * step).astype(np.int64) - math.ceil(step) * context[0]
    return starts[:, None] + np.arange(window_length(context), dtype=np.int64)[None, :]


def positional_encoding(length: int, dim: int) -> np.ndarray:
    """The Transformer's sinusoidal position code (sine on even, cosine on odd channels), `(length, dim)` float32."""
    position = np.arange(length, dtype=np.float64)[:, None]
    frequency = np.exp(np.arange(0, dim, 2, dtype=np.float64) * (-math.log(10000.0) / dim))
    code = np.zeros((length, dim), np.float64)
    code[:, 0::2] = np.sin(position * frequency)
    code[:, 1::2] = np.cos(position * frequency)[:, : dim // 2]
    return code.astype(np.float32)


def read_speech(path: Path) -> np.ndarray:
    """Any audio file as mono float32 samples at 16 kHz (PyAV decodes and resamples)."""
    import av

    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


@dataclass
class SpeechFeatures:
    """Whisper encoder states of one speech: `(positions, layers, dim)`, 50 positions a second."""

    states: Any  # torch.Tensor on the model's device and dtype

    @property
    def tokens_per_frame(self) -> int:
        """Cross-attention tokens per frame: the window's positions × the encoder's hidden states."""
        return window_length() * int(self.states.shape[1])

    def windows(self, frames: Sequence[int], fps: float) -> Any:
        """The UNet's `encoder_hidden_states` for some frames: `(len(frames), tokens_per_frame, dim)`.

        Positions outside the speech are zeros, as MuseTalk pads the start and the end.
        """
        import torch

        positions = torch.from_numpy(window_positions(frames, fps)).to(self.states.device)
        inside = (positions >= 0) & (positions < self.states.shape[0])
        gathered = self.states[positions.clamp(0, max(self.states.shape[0] - 1, 0))]  # (B, W, layers, dim)
        gathered = gathered * inside[..., None, None].to(gathered.dtype)
        tokens = gathered.flatten(1, 2)  # time-major: each position's hidden states, then the next position's
        code = torch.from_numpy(positional_encoding(tokens.shape[1], tokens.shape[2]))
        return tokens + code.to(tokens.device, tokens.dtype)


def encode_speech(samples: np.ndarray, extractor: Any, encoder: Any) -> SpeechFeatures:
    """Run Whisper's encoder over the speech, 30 s at a time, keeping every hidden state.

    Args:
        samples: Mono float32 at 16 kHz (`read_speech`).
        extractor: A `WhisperFeatureExtractor` (log-mel, padded to 30 s).
        encoder: The `WhisperModel`'s encoder, on its device and dtype.

    Returns:
        The states, trimmed to the speech's own length (the 30 s padding of the last piece dropped).
    """
    import torch

    parameter = next(encoder.parameters())
    segment = SEGMENT_SECONDS * SAMPLE_RATE
    pieces = []
    for start in range(0, max(len(samples), 1), segment):
        mel = extractor(samples[start : start + segment], sampling_rate=SAMPLE_RATE, return_tensors="pt")
        features = mel.input_features.to(parameter.device, parameter.dtype)
        hidden = encoder(features, output_hidden_states=True).hidden_states  # each (1, 1500, dim)
        pieces.append(torch.stack(hidden, dim=2)[0])  # (1500, layers, dim)
    length = len(samples) * FEATURE_RATE // SAMPLE_RATE
    return SpeechFeatures(torch.cat(pieces, dim=0)[:length])
