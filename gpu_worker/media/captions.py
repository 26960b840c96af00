r"""Captions from the speech timeline: word-timed cues, SRT, WebVTT and ASS text, and captions drawn into frames.

`word_cues` groups the words into short cues (at most two lines of 42 characters, broken at
sentence ends and pauses); sentence segments work too, as one cue each. The files carry the word
timing where the format can: WebVTT inline timestamps and ASS `\k` karaoke tags (players fill the
words in as they are spoken). `caption_frames` draws a cue with Pillow, in `karaoke` style with the
word being spoken in another colour, inside the frame's safe area (`safe_area`).
"""

import logging
import re
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gpu_worker.media.speech import Segment
from schemas.media import CaptionPosition, CaptionStyle

logger = logging.getLogger(__name__)


_LINE_CHARS = 42  # the usual subtitle line length
_MAX_LINES = 2
_PAUSE_S = 0.5  # a silence this long between words starts a new cue
_LINGER_S = 0.6  # a cue stays up this long after its last word unless the next one starts
_SENTENCE_END = re.compile(r"[.!?…。！？]['\"’”»)\]]*$")
_HIGHLIGHT = (255, 214, 0)  # the spoken word in `karaoke` style


@dataclass(frozen=True)
class Cue:
    """Words shown together, from the first word's start, and their lines of text."""

    start: float
    end: float
    lines: tuple[str, ...]
    words: tuple[Segment, ...] = ()

    @property
    def text(self) -> str:
        """The lines joined with newlines."""
        return "\n".join(self.lines)


def _wrap(text: str, chars: int = _LINE_CHARS) -> tuple[str, ...]:
    """Lines of at most `chars` characters; two lines are balanced (the break nearest the middle)."""
    if len(text) <= chars:
        return (text,)
    spaces = [m.start() for m in re.finditer(" ", text)]
    fitting = [i for i in spaces if i <= chars and len(text) - i - 1 <= chars]
    if fitting:
        i = min(fitting, key=lambda i: abs(len(text) - 2 * i))
        return text[:i], text[i + 1 :]
    return tuple(textwrap.wrap(text, chars)) or (text,)


def word_cues(
    words: Sequence[Segment],
    sentences: Sequence[Segment] = (),
    *,
    chars: int = _LINE_CHARS,
    lines: int = _MAX_LINES,
    pause: float = _PAUSE_S,
    until: float | None = None,
) -> list[Cue]:
    """Group timed words into cues of at most `lines` lines of `chars` characters.

    A new cue starts after a sentence end (punctuation, or a boundary of `sentences`), after a
    pause of at least `pause` seconds, or when the next word would not fit. A cue lasts from its
    first word's start until shortly after its last word's end, never overlapping the next cue
    nor lasting past `until` (the end of the audio).
    """
    bounds = [s.end for s in sentences]
    groups: list[list[Segment]] = []
    for word in words:
        last = groups[-1][-1] if groups else None
        if (
            last is None
            or _SENTENCE_END.search(last.text)
            or word.start - last.end >= pause
            or any(last.end <= b <= word.start for b in bounds)
            or len(_wrap(" ".join(w.text for w in [*groups[-1], word]), chars)) > lines
        ):
            groups.append([])
        groups[-1].append(word)
    cues = []
    for i, group in enumerate(groups):
        end = group[-1].end + _LINGER_S
        if i + 1 < len(groups):
            end = max(group[-1].end, min(end, groups[i + 1][0].start))
        elif until is not None:
            end = max(group[-1].end, min(end, until))
        cues.append(Cue(group[0].start, end, _wrap(" ".join(w.text for w in group), chars), tuple(group)))
    return cues


def _as_cues(items: Sequence[Segment] | Sequence[Cue]) -> list[Cue]:
    """Sentence segments as one cue each (no word timing); cues as they are."""
    return [i if isinstance(i, Cue) else Cue(i.start, i.end, _wrap(i.text)) for i in items]


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(items: Sequence[Segment] | Sequence[Cue]) -> str:
    """Render sentences or cues as SubRip (`.srt`) text, timings rounded to the millisecond."""
    cues = (
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(_as_cues(items), start=1)
    )
    return "\n".join(cues)


def safe_area(width: int, height: int) -> tuple[float, float, float]:
    """Where captions may go, as fractions of the frame: `(top, bottom, width)`.

    Portrait frames keep clear of the bottom fifth and the top, where short-video apps draw their
    buttons and titles (12 %-78 % of the height); others keep the usual title-safe margins.
    """
    return (0.12, 0.78, 0.9) if height > width else (0.08, 0.92, 0.9)


def _vtt_settings(position: CaptionPosition, size: tuple[int, int]) -> str:
    top, bottom, wide = safe_area(*size)
    line = {"bottom": f"{bottom:.0%},end", "top": f"{top:.0%},start", "center": f"{(top + bottom) / 2:.0%},center"}
    return f" line:{line[position]} position:50%,center size:{wide:.0%} align:center"


def _tokens(cue: Cue) -> list[list[tuple[str, int | None]]]:
    """The cue's lines as `(word, index into cue.words)`; indices are None when the text and words differ."""
    lines = [line.split(" ") for line in cue.lines]
    timed = sum(len(line) for line in lines) == len(cue.words)
    out, k = [], 0
    for line in lines:
        out.append([(token, k + j if timed else None) for j, token in enumerate(line)])
        k += len(line)
    return out


def _vtt_word(cue: Cue, token: str, k: int | None, karaoke: bool) -> str:
    """A word escaped for WebVTT, after its start as an inline timestamp in karaoke cues (not the first word)."""
    text = token.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<{_timestamp(cue.words[k].start, '.')}>{text}" if karaoke and k else text


def to_vtt(
    items: Sequence[Segment] | Sequence[Cue],
    *,
    karaoke: bool = False,
    position: CaptionPosition | None = None,
    size: tuple[int, int] = (1920, 1080),
) -> str:
    """Render sentences or cues as WebVTT (`.vtt`) text for HTML5 `<track>`.

    Args:
        items: Timed sentences or cues.
        karaoke: Put each word's start in the text as an inline timestamp (players style spoken
            words with `::cue(:past)`; a `STYLE` block colours them).
        position: Cue settings that place the cues inside the safe area of a `size` video; None: the player's default.
        size: The video's `(width, height)`.

    Returns:
        The WebVTT document.
    """
    settings = _vtt_settings(position, size) if position is not None else ""
    head = "WEBVTT\n\n"
    if karaoke:
        head += f"STYLE\n::cue(:past) {{ color: rgb{_HIGHLIGHT}; }}\n\n"
    blocks = []
    for cue in _as_cues(items):
        text = "\n".join(" ".join(_vtt_word(cue, t, k, karaoke) for t, k in line) for line in _tokens(cue))
        blocks.append(f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}{settings}\n{text}\n")
    return head + "\n".join(blocks)


def _ass_time(seconds: float) -> str:
    cs = int(round(max(seconds, 0.0) * 100))
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6000)
    return f"{h}:{m:02d}:{rest // 100:02d}.{rest % 100:02d}"


def _ass_colour(rgb: tuple[int, int, int], alpha: int = 0) -> str:
    r, g, b = rgb
    return f"&H{alpha:02X}{b:02X}{g:02X}{r:02X}"


_ASS_HEAD = """[Script Info]
; Captions by MySpinBot
ScriptType: v4.00+
PlayResX: {w}
PlayResY: {h}
WrapStyle: 0
ScaledBorderAndShadow: yes

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Caption,Arial,{size},{primary},&H00FFFFFF,&H00000000,&H78000000,0,0,0,0,100,100,0,0,1,{outline},0,{align},\
{margin_h},{margin_h},{margin_v},1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""


def _ass_text(cue: Cue, karaoke: bool) -> str:
    r"""The cue's lines joined by `\N`; in karaoke, each word after a `\k` tag lasting until the next word starts."""
    lines = []
    for line in _tokens(cue):
        words = []
        for token, k in line:
            text = token.replace("\\", "/").replace("{", "(").replace("}", ")")  # no escapes in ASS
            if karaoke and k is not None:
                after = cue.words[k + 1].start if k + 1 < len(cue.words) else cue.words[k].end
                text = rf"{{\k{round(after * 100) - round(cue.words[k].start * 100)}}}{text}"
            words.append(text)
        lines.append(" ".join(words))
    return r"\N".join(lines)


def to_ass(
    items: Sequence[Segment] | Sequence[Cue],
    size: tuple[int, int],
    style: CaptionStyle = "plain",
    position: CaptionPosition = "bottom",
) -> str:
    r"""Render sentences or cues as Advanced SubStation Alpha (`.ass`) for a `size` video.

    The style places the text inside `safe_area`; `karaoke` times each word with a `\k` tag, so
    renderers (libass, VLC, mpv) turn the words from white to the highlight colour as they are spoken.
    """
    w, h = size
    top, bottom, wide = safe_area(w, h)
    align, margin_v = {"bottom": (2, h * (1 - bottom)), "top": (8, h * top), "center": (5, 0.0)}[position]
    primary = _ass_colour(_HIGHLIGHT if style == "karaoke" else (255, 255, 255))
    head = _ASS_HEAD.format(
        w=w, h=h, size=_font_size(w, h), primary=primary, outline=max(1, min(w, h) // 240), align=align,
        margin_h=round(w * (1 - wide) / 2), margin_v=round(margin_v),
    )  # fmt: skip
    pos = rf"{{\an5\pos({w // 2},{round(h * (top + bottom) / 2)})}}" if position == "center" else ""
    events = (
        f"Dialogue: 0,{_ass_time(c.start)},{_ass_time(c.end)},Caption,,0,0,0,,{pos}{_ass_text(c, style == 'karaoke')}\n"
        for c in _as_cues(items)
    )
    return head + "".join(events)


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


def _font_size(width: int, height: int) -> int:
    """The caption font's starting size: about 4.5 % of the short side (5 % on portrait frames)."""
    return max(12, round(min(width, height) * (0.05 if height > width else 0.045)))


@dataclass(frozen=True)
class _Layout:
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    lines: list[list[tuple[str, int | None, float]]]  # (word, index into the cue's words, x)
    line_height: int
    size: tuple[int, int]  # the text block's width and height
    stroke: int


def _layout(cue: Cue, max_width: float, max_height: float, start: int, stroke: int) -> _Layout:
    """The cue's lines, wrapped again where wider than `max_width` px, in the largest font from `start` that fits.

    The font shrinks until the block is at most three lines (or the cue's own) and `max_height` px high.
    """
    size = start
    while True:
        font = _caption_font(size)
        ascent, descent = font.getmetrics() if isinstance(font, ImageFont.FreeTypeFont) else (size, 0)
        line_height, space = ascent + descent + 2 * stroke, font.getlength(" ")
        lines: list[list[tuple[str, int | None, float]]] = []
        for cue_line in _tokens(cue):
            lines.append([])
            x = 0.0
            for token, k in cue_line:
                width = font.getlength(token) + 2 * stroke
                if lines[-1] and x + space + width > max_width:
                    lines.append([])
                    x = 0.0
                x += space if lines[-1] else 0.0
                lines[-1].append((token, k, x))
                x += width
        block_w = max(t[2] + font.getlength(t[0]) + 2 * stroke for line in lines for t in line[-1:])
        block_h = line_height * len(lines)
        fits = len(lines) <= max(3, len(cue.lines)) and block_h <= max_height and block_w <= max_width
        if fits or size <= 10:
            return _Layout(font, lines, line_height, (int(np.ceil(block_w)), block_h), stroke)
        size = max(10, int(size * 0.9))


def _overlay(cue: Cue, frame_size: tuple[int, int], active: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The cue as an RGB patch and its alpha (both float32), the word `active` in the highlight colour."""
    w, h = frame_size
    top, bottom, wide = safe_area(w, h)
    short = min(w, h)
    pad, stroke = max(2, int(short * 0.015)), max(1, short // 240)
    layout = _layout(cue, w * wide - 2 * pad, h * (bottom - top) - 2 * pad, _font_size(w, h), stroke)
    bw, bh = layout.size
    img = Image.new("RGBA", (bw + 2 * pad, bh + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle([0, 0, img.width - 1, img.height - 1], radius=pad, fill=(0, 0, 0, 120))
    for row, line in enumerate(layout.lines):
        width = line[-1][2] + layout.font.getlength(line[-1][0]) + 2 * stroke
        left = pad + (bw - width) / 2  # centred lines
        for token, k, x in line:
            colour = _HIGHLIGHT if k is not None and k == active else (255, 255, 255)
            draw.text(
                (left + x + stroke, pad + row * layout.line_height + stroke),
                token,
                font=layout.font,
                fill=(*colour, 255),
                stroke_width=stroke,
                stroke_fill=(0, 0, 0, 255),
            )
    arr = np.asarray(img, np.float32)
    return arr[..., :3], arr[..., 3:] / 255.0


def _place(box: tuple[int, int], frame_size: tuple[int, int], position: CaptionPosition) -> tuple[int, int]:
    """Top-left corner of a caption box of `box` pixels: centred across, in the safe area down."""
    (bw, bh), (w, h) = box, frame_size
    top, bottom, _ = safe_area(w, h)
    lo, hi = int(np.ceil(top * h)), int(bottom * h) - bh
    y = {"bottom": hi, "top": lo, "center": (lo + hi) // 2}[position]
    return max(0, (w - bw) // 2), max(0, min(max(y, lo), h - bh))


def _spoken(cue: Cue, t: float) -> int | None:
    """The word being spoken at `t`: the last one started (it stays lit through short gaps)."""
    started = [k for k, word in enumerate(cue.words) if word.start <= t]
    return started[-1] if started else None


def caption_frames(
    frames: Iterable[np.ndarray],
    cues: Sequence[Segment] | Sequence[Cue],
    fps: float,
    *,
    style: CaptionStyle = "plain",
    position: CaptionPosition = "bottom",
) -> Iterator[np.ndarray]:
    """Burn captions into frames with Pillow (needs no system fonts, unlike ffmpeg's `subtitles`).

    Args:
        frames: HxWx3 uint8 RGB frames.
        cues: Cues from `word_cues`, or timed sentences; each shows from its start to its end.
        fps: Frame rate (frame `i` is at `i / fps` seconds).
        style: `plain`, or `karaoke`: the word being spoken in the highlight colour (needs word-timed cues).
        position: `bottom`, `top` or `center` of the frame's safe area (`safe_area`); text that
            does not fit its width wraps, and the font shrinks until the block fits its height.

    Yields:
        The frames with the current cue drawn.
    """
    timed = _as_cues(cues)
    cache: dict[tuple[int, int | None], tuple[np.ndarray, np.ndarray]] = {}
    current = 0
    for i, frame in enumerate(frames):
        t = i / fps
        while current < len(timed) and timed[current].end <= t:
            current += 1
        if current >= len(timed) or timed[current].start > t:
            yield frame
            continue
        h, w = frame.shape[:2]
        cue = timed[current]
        key = (current, _spoken(cue, t) if style == "karaoke" else None)
        if key not in cache:
            cache = {k: v for k, v in cache.items() if k[0] == current}  # cues come in order: keep this one's
            cache[key] = _overlay(cue, (w, h), key[1])
        rgb, alpha = cache[key]
        ph, pw = min(rgb.shape[0], h), min(rgb.shape[1], w)
        x, y = _place((pw, ph), (w, h), position)
        out = frame.copy()
        region = out[y : y + ph, x : x + pw].astype(np.float32)
        a = alpha[:ph, :pw]
        out[y : y + ph, x : x + pw] = (region * (1 - a) + rgb[:ph, :pw] * a).astype(np.uint8)
        yield out
