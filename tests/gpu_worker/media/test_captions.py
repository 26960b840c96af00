"""Word-level captions: cue grouping, SRT/WebVTT/ASS parsed back, karaoke highlight and placement measured in pixels."""

import re

import numpy as np
import pytest

from gpu_worker.media.captions import Cue, caption_frames, safe_area, to_ass, to_srt, to_vtt, word_cues
from gpu_worker.media.speech import Segment, SpeechResult

PORTRAIT, LANDSCAPE = (360, 640), (640, 360)
HIGHLIGHT = np.array([255, 214, 0])


def _words(text: str, start: float = 0.0, step: float = 0.3, pauses: dict[int, float] | None = None) -> list[Segment]:
    """Evenly timed words, with extra silence before the words at the indices in `pauses`."""
    out, t = [], start
    for i, token in enumerate(text.split()):
        t += (pauses or {}).get(i, 0.0)
        out.append(Segment(token, t, t + step * 0.8))
        t += step
    return out


LONG_WORDS = _words(
    "Tides rise and fall twice a day because the moon pulls on the oceans, and the sun helps a little too, "
    "so sailors have always watched the sky before they leave the harbour. Then they go."
)


def _seconds(ts: str) -> float:
    h, m, s = ts.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_cues_group_words_into_short_lines(speech: SpeechResult):
    for words, sentences in ((speech.words, speech.segments), (LONG_WORDS, [])):
        cues = word_cues(words, sentences)
        assert [w for c in cues for w in c.words] == list(words)  # every word once, in order
        for cue in cues:
            assert 1 <= len(cue.lines) <= 2 and all(len(line) <= 42 for line in cue.lines)
            assert " ".join(cue.lines) == " ".join(w.text for w in cue.words)
            assert cue.start == cue.words[0].start and cue.end >= cue.words[-1].end
        bounds = [t for c in cues for t in (c.start, c.end)]
        assert bounds == sorted(bounds)  # no overlaps
    first = word_cues(speech.words, speech.segments)[0]
    assert first.text == "Hello and welcome."  # a sentence end closes a cue


def test_a_pause_starts_a_new_cue():
    words = _words("one two three four five six", pauses={3: 0.8})
    assert [c.text for c in word_cues(words)] == ["one two three", "four five six"]
    unpunctuated = [Segment("alpha", 0, 0.3), Segment("beta", 0.35, 0.6), Segment("gamma", 0.7, 1.0)]
    sentences = [Segment("alpha beta", 0, 0.6), Segment("gamma", 0.7, 1.0)]
    assert [c.text for c in word_cues(unpunctuated, sentences)] == ["alpha beta", "gamma"]


def _srt_cues(srt: str) -> list[tuple[float, float, str]]:
    blocks = [b.split("\n") for b in srt.strip().split("\n\n")]
    out = []
    for i, block in enumerate(blocks, start=1):
        assert block[0] == str(i)
        start, end = block[1].split(" --> ")
        out.append((_seconds(start), _seconds(end), " ".join(block[2:])))
    return out


def test_srt_has_every_word_once_in_timed_order():
    cues = word_cues(LONG_WORDS)
    parsed = _srt_cues(to_srt(cues))
    assert " ".join(text for *_, text in parsed).split() == [w.text for w in LONG_WORDS]
    times = [t for start, end, _ in parsed for t in (start, end)]
    assert times == sorted(times)
    for (start, end, _), cue in zip(parsed, cues, strict=True):
        assert start == pytest.approx(cue.start, abs=5e-4) and end == pytest.approx(cue.end, abs=5e-4)


def test_vtt_karaoke_times_every_word_inside_its_cue():
    vtt = to_vtt(word_cues(LONG_WORDS), karaoke=True, position="bottom", size=PORTRAIT)
    assert vtt.startswith("WEBVTT\n\nSTYLE\n::cue(:past)")
    blocks = vtt.split("\n\n")[2:]
    seen: list[str] = []
    for block in blocks:
        timing, *lines = block.strip().split("\n")
        start, rest = timing.split(" --> ")
        end, *settings = rest.split(" ")
        assert settings == ["line:78%,end", "position:50%,center", "size:90%", "align:center"]
        stamps = [_seconds(s) for s in re.findall(r"<([\d:.]+)>", " ".join(lines))]
        assert stamps == sorted(stamps) and all(_seconds(start) < s < _seconds(end) for s in stamps)
        seen += re.sub(r"<[\d:.]+>", "", " ".join(lines)).split()
    assert seen == [w.text for w in LONG_WORDS]
    starts = [w.start for w in LONG_WORDS]
    assert all(any(abs(s - t) < 1e-3 for t in starts) for s in map(_seconds, re.findall(r"<([\d:.]+)>", vtt)))


def _ass_events(ass: str) -> list[tuple[float, float, str]]:
    events = []
    for line in ass.splitlines():
        if line.startswith("Dialogue:"):
            _, start, end, style, _, _, _, _, _, text = line.split(",", 9)
            assert style == "Caption"
            events.append((_seconds(start), _seconds(end), text))
    return events


@pytest.mark.parametrize(("position", "alignment"), [("bottom", "2"), ("top", "8"), ("center", "5")])
def test_ass_places_the_style_and_times_each_word(position, alignment):
    cues = word_cues(LONG_WORDS)
    ass = to_ass(cues, PORTRAIT, "karaoke", position)
    assert "PlayResX: 360\nPlayResY: 640" in ass
    names, values = re.search(r"^Format: (Name.*)$", ass, re.M), re.search(r"^Style: (.*)$", ass, re.M)
    assert names is not None and values is not None
    fields = dict(zip(names[1].split(", "), values[1].split(","), strict=True))
    assert fields["Alignment"] == alignment
    assert fields["PrimaryColour"] == "&H0000D6FF" and fields["SecondaryColour"] == "&H00FFFFFF"  # spoken → yellow
    assert int(fields["MarginL"]) == int(fields["MarginR"]) == 18  # within 90 % of the width
    if position == "bottom":
        assert int(fields["MarginV"]) == round(640 * 0.22)
    events = _ass_events(ass)
    assert len(events) == len(cues)
    words = []
    for (start, end, text), cue in zip(events, cues, strict=True):
        assert start == pytest.approx(cue.start, abs=0.006) and end == pytest.approx(cue.end, abs=0.006)
        karaoke = [int(k) for k in re.findall(r"\\k(\d+)", text)]
        assert len(karaoke) == len(cue.words)
        assert sum(karaoke) / 100 == pytest.approx(cue.words[-1].end - cue.words[0].start, abs=0.02)
        assert ("\\pos(" in text) == (position == "center")
        words += re.sub(r"\{[^}]*\}", "", text).replace("\\N", " ").split()
    assert words == [w.text for w in LONG_WORDS]
    plain = to_ass(cues, LANDSCAPE)
    assert "\\k" not in plain and "Alignment" in plain


def test_legacy_sentence_captions_still_work():
    segments = [Segment("Hello there.", 0.5, 1.5), Segment("A much longer sentence " * 4, 2.0, 5.0)]
    assert _srt_cues(to_srt(segments))[0] == (0.5, 1.5, "Hello there.")
    frames = list(caption_frames([np.zeros((360, 640, 3), np.uint8)] * 100, segments, 25))
    assert not frames[0].any() and frames[30].any() and frames[80].any()


def _box(frame: np.ndarray, background: np.ndarray) -> tuple[int, int, int, int]:
    """`(left, top, right, bottom)` of the pixels that differ from the background."""
    ys, xs = np.nonzero(np.abs(frame.astype(int) - background.astype(int)).sum(axis=2) > 8)
    assert ys.size, "nothing drawn"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _draw(cues: list[Cue], t: float, size: tuple[int, int], **kwargs) -> tuple[np.ndarray, np.ndarray]:
    w, h = size
    background = np.full((h, w, 3), 120, np.uint8)
    fps = 25
    n = int(round(t * fps)) + 1
    return list(caption_frames([background] * n, cues, fps, **kwargs))[-1], background


@pytest.mark.parametrize("size", [PORTRAIT, LANDSCAPE, (1080, 1920)])
def test_captions_stay_in_the_safe_area_at_every_position(size):
    w, h = size
    cue = word_cues(_words("Extraordinarily photosynthesising chloroplasts disproportionately outperform counterparts"))
    top_frac, bottom_frac, wide = safe_area(w, h)
    if h > w:
        assert (top_frac, bottom_frac, wide) == (0.12, 0.78, 0.9)
    boxes = {}
    for position in ("top", "center", "bottom"):
        frame, background = _draw(cue, 0.1, size, position=position)
        left, top, right, bottom = boxes[position] = _box(frame, background)
        assert top >= top_frac * h and bottom <= bottom_frac * h
        assert right - left <= wide * w and abs((left + right) / 2 - w / 2) <= 2  # centred
    assert boxes["top"][1] < boxes["center"][1] < boxes["bottom"][1]
    assert boxes["bottom"][3] >= bottom_frac * h - 2 and boxes["top"][1] <= top_frac * h + 2  # at the edges of the area


def _highlighted(frame: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - HIGHLIGHT).sum(axis=2) < 60


def test_karaoke_highlights_the_word_being_spoken():
    cues = word_cues(_words("the quick brown fox jumps"))
    assert len(cues) == 1
    centres = []
    for k in (0, 2, 4):
        t = cues[0].words[k].start + 0.05
        frame, _ = _draw(cues, t, LANDSCAPE, style="karaoke")
        lit = np.nonzero(_highlighted(frame))
        assert lit[0].size > 20  # a word's worth of yellow pixels
        centres.append(lit[1].mean())
    assert centres[0] < centres[1] < centres[2]  # the highlight moves along the line with the speech
    plain, _ = _draw(cues, cues[0].words[2].start + 0.05, LANDSCAPE, style="plain")
    assert not _highlighted(plain).any()
    karaoke, _ = _draw(cues, cues[0].words[2].start + 0.05, LANDSCAPE, style="karaoke")
    changed = (np.abs(karaoke.astype(int) - plain.astype(int)).sum(axis=2) > 0).sum()
    assert 0 < changed < 4 * lit[0].size  # the same caption, only one word recoloured
