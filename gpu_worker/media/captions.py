"""Captions from speech segments: SRT and WebVTT text, and captions drawn into frames."""

import logging
import textwrap
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gpu_worker.media.speech import Segment

logger = logging.getLogger(__name__)

_LINE_CHARS = 42  # the usual subtitle line length


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _lines(text: str) -> str:
    return "\n".join(textwrap.wrap(text, _LINE_CHARS)) or text


def to_srt(segments: Sequence[Segment]) -> str:
    """Render segments as SubRip (`.srt`) text, timings rounded to the millisecond.

    Args:
        segments: timed sentences.

    Returns:
        The SRT document.
    """
    cues = (
        f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{_lines(s.text)}\n"
        for i, s in enumerate(segments, start=1)
    )
    return "\n".join(cues)


def to_vtt(segments: Sequence[Segment]) -> str:
    """Render segments as WebVTT (`.vtt`) text for HTML5 `<track>`.

    Args:
        segments: timed sentences.

    Returns:
        The WebVTT document.
    """
    cues = (f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{_lines(s.text)}\n" for s in segments)
    return "WEBVTT\n\n" + "\n".join(cues)


# A few words in each non-Latin script, by primary language subtag, to test the caption font with.
_SCRIPT_SAMPLES = {
    **dict.fromkeys(["ru", "uk", "bg", "be", "mk", "kk", "ky", "tt", "ba", "cv", "mn"], "Привет мир"),
    **dict.fromkeys(["el", "grc"], "Γειά σου"),
    **dict.fromkeys(["ar", "fa", "ur", "ps", "sd", "ug"], "مرحبا"),
    "he": "שלום",
    **dict.fromkeys(["hi", "mr", "ne", "sa", "kok", "mai"], "नमस्ते"),
    **dict.fromkeys(["bn", "as", "bpy"], "নমস্কার"),
    "ta": "வணக்கம்", "te": "నమస్కారం", "kn": "ನಮಸ್ಕಾರ", "ml": "നമസ്കാരം", "gu": "નમસ્તે", "pa": "ਸਤ ਸ੍ਰੀ ਅਕਾਲ",
    "or": "ନମସ୍କାର", "si": "ආයුබෝවන්", "th": "สวัสดี", "lo": "ສະບາຍດີ", "km": "សួស្តី", "my": "မင်္ဂလာပါ",
    "ka": "გამარჯობა", "hy": "Բարեւ", "am": "ሰላም", "chr": "ᏏᏲ",
    **dict.fromkeys(["cmn", "yue", "zh", "hak", "ja"], "你好世界"), "ko": "안녕하세요", "vi": "Tiếng Việt",
}  # fmt: skip


def _caption_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def can_draw(language: str) -> bool:
    """Whether the caption font has glyphs for the script `language` is written in (Latin unless known otherwise)."""
    sample = _SCRIPT_SAMPLES.get(language.replace("_", "-").lower().split("-")[0])
    if sample is None:
        return True
    font = _caption_font(32)
    missing = bytes(font.getmask("\U0010fffd"))  # what the font draws for a character it lacks
    return all(bytes(font.getmask(ch)) != missing for ch in sample if not ch.isspace())


def _overlay(text: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """One caption as an RGB patch and its alpha (both float32), sized to its text."""
    short = min(width, height)
    font = _caption_font(max(12, int(short * 0.045)))
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    chars = max(12, int(len(text) * (width * 0.8) / max(probe.textlength(text, font=font), 1)))
    body = "\n".join(textwrap.wrap(text, chars)[:3])
    stroke = max(1, short // 240)
    x0, y0, x1, y1 = (
        int(v) for v in probe.multiline_textbbox((0, 0), body, font=font, align="center", stroke_width=stroke)
    )
    pad = int(short * 0.015)
    img = Image.new("RGBA", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle([0, 0, img.width - 1, img.height - 1], radius=pad, fill=(0, 0, 0, 120))
    draw.multiline_text(
        (pad - x0, pad - y0),
        body,
        font=font,
        fill=(255, 255, 255, 255),
        align="center",
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, 255),
    )
    arr = np.asarray(img, np.float32)
    return arr[..., :3], arr[..., 3:] / 255.0


def caption_frames(frames: Iterable[np.ndarray], segments: Sequence[Segment], fps: float) -> Iterator[np.ndarray]:
    """Burn captions into frames with Pillow (needs no system fonts, unlike ffmpeg's `subtitles`).

    Args:
        frames: HxWx3 uint8 RGB frames.
        segments: timed sentences; each shows from its start to its end.
        fps: frame rate (frame `i` is at `i / fps` seconds).

    Yields:
        The frames with the current sentence drawn near the bottom.
    """
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, frame in enumerate(frames):
        t = i / fps
        current = next((k for k, s in enumerate(segments) if s.start <= t < s.end), None)
        if current is None:
            yield frame
            continue
        h, w = frame.shape[:2]
        if current not in cache:
            cache = {current: _overlay(segments[current].text, w, h)}  # segments come in order: keep one
        rgb, alpha = cache[current]
        ph, pw = min(rgb.shape[0], h), min(rgb.shape[1], w)
        x, y = (w - pw) // 2, h - ph - int(h * 0.05)
        out = frame.copy()
        region = out[y : y + ph, x : x + pw].astype(np.float32)
        a = alpha[:ph, :pw]
        out[y : y + ph, x : x + pw] = (region * (1 - a) + rgb[:ph, :pw] * a).astype(np.uint8)
        yield out
