"""Embedded render runtime vs. the ffmpeg encode floor (`python -m bench.render`; prints a markdown table).

For each variant (svd, sadtalker) and resolution (480p, 720p) it renders about 20 s of narrated
video with `render_still_video` (the embedded CPU runtime behind `render_video`: Piper
speech fitted to the duration, the soundtrack (the narration over a ducked `calm` music bed by
default, `--music`, normalised to -14 LUFS), scene or portrait, animation, H.264/AAC encode,
thumbnail) and reports the wall time (split into speech, frames + encode, and the mux: what is left of the soundtrack, made beside the frames, plus muxing it; from the
render's progress stages) and the real-time factor (seconds of video per second of wall time; ≥ 1
is faster than real time).

Next to it, two floors for the same number of frames at the same size, encoded with the same
settings (libx264 `veryfast`, CRF 23, yuv420p, `+faststart`, AAC 96k of the same speech):

- **ffmpeg alone**: `ffmpeg -f lavfi -i testsrc2=…`, frames generated inside ffmpeg, no pipe;
- **piped frames**: the renderer's own `VideoWriter` fed raw RGB frames decoded beforehand from the
  rendered video (a pool of frames cycled), so the floor sees the same content and the same pipe.

Targets (issue 3): ≥ 1× real time at 720p, and the render ≤ 2× the encode floor (ffmpeg alone).
A full run takes about 1.5 minutes on 2 idle cores (`--repeat 1` halves it); `--smoke` is the CI size.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from itertools import cycle, islice
from pathlib import Path
from typing import get_args

import numpy as np

from bench._common import machine, out, quiet_logging, table
from gpu_worker.media.encode import VideoWriter, ffmpeg_exe, probe
from gpu_worker.media.music import MusicKind
from gpu_worker.media.pipeline import render_still_video
from gpu_worker.media.sound import Music
from gpu_worker.media.speech import VoiceParams
from gpu_worker.media.voices import synthesize
from schemas.media import frame_size

logger = logging.getLogger("bench.render")

FPS = 25
CRF, PRESET = 23, "veryfast"  # the renderer's defaults for the final video
POOL_FRAMES = 50  # decoded frames cycled through the pipe floor (2 s of video; bounded memory at 720p)
STAGE = "A bright studio with a large backdrop of ocean waves at sunrise"
SENTENCES = [
    "Hello, and welcome to the show.",
    "Today we talk about the ocean, and why its waves never stop moving.",
    "Wind blowing across the water pushes the surface into ripples.",
    "Those ripples grow into waves as the wind keeps pushing.",
    "A wave can travel thousands of kilometres before it reaches a beach.",
    "Waves carry energy, not water.",
    "The water itself mostly moves in circles, while the energy moves forward.",
    "Near the shore the bottom slows the wave down, and it breaks.",
    "That is why the sea is never still, even on a calm day.",
    "Thanks for watching, and see you next time.",
]


@dataclass(frozen=True)
class Row:
    variant: str
    resolution: str
    size: tuple[int, int]
    frames: int
    video_s: float
    render_s: float
    lavfi_s: float
    pipe_s: float
    speech_s: float  # of `render_s`: the narration (Piper), fitted to the duration
    mux_s: float  # of `render_s`: waiting for the soundtrack (made beside the frames) and muxing it
    frames_s: float  # of `render_s`: scene, animation and encoding


def narrative_for(seconds: float, work: Path) -> tuple[str, float]:
    """The prefix of `SENTENCES` (repeated if needed) whose speech lasts closest to `seconds`."""
    best = ("", math.inf)
    words: list[str] = []
    for i, sentence in enumerate(cycle(SENTENCES)):
        words.append(sentence)
        duration = synthesize(" ".join(words), work / "probe.wav", VoiceParams()).duration
        if abs(duration - seconds) < abs(best[1] - seconds):
            best = (" ".join(words), duration)
        if duration >= seconds or i > 100:
            return best
    raise AssertionError("unreachable")


def render_once(
    variant: str,
    size: tuple[int, int],
    narrative: str,
    out_dir: Path,
    seconds: float | None = None,
    music: Music = "none",
) -> tuple[float, Path, Path, float, dict[str, float]]:
    """Render with the embedded runtime; returns (wall seconds, video, speech wav, video seconds, seconds per stage)."""
    start = time.perf_counter()
    entered: dict[str, float] = {}

    def progress(stage: str, _fraction: float) -> None:
        entered.setdefault(stage, time.perf_counter())

    result = render_still_video(
        STAGE, narrative, out_dir, size, FPS, VoiceParams(), None, variant, captions=False,
        progress=progress, cancelled=lambda: False,
        crf=CRF, preset=PRESET, duration_seconds=seconds, music=music,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if {"scene", "mux", "thumbnail"} - entered.keys():
        raise RuntimeError(f"the render reported no `scene`, `mux` or `thumbnail` stage: {sorted(entered)}")
    # The soundtrack is made beside the frames; what is left of it after them shows in the mux.
    stages = {
        "speech": entered["scene"] - start,
        "frames": entered["mux"] - entered["scene"],
        "mux": entered["thumbnail"] - entered["mux"],
    }
    return wall, result.video, result.audio, result.duration, stages


def lavfi_floor(size: tuple[int, int], frames: int, audio: Path, out_path: Path) -> float:
    """ffmpeg alone: generate `frames` test frames in ffmpeg and encode them (plus the AAC audio)."""
    w, h = size
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={FPS}", "-i", str(audio),
        "-map", "0:v:0", "-map", "1:a:0", "-frames:v", str(frames),
        "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p", "-movflags", "+faststart",
        "-c:a", "aac", "-b:a", "96k", "-ar", "44100", "-shortest", str(out_path),
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def decode_pool(video: Path, count: int) -> list[np.ndarray]:
    """The first `count` frames of a video as RGB arrays."""
    import av

    with av.open(str(video)) as container:
        return [f.to_ndarray(format="rgb24") for f in islice(container.decode(video=0), count)]


def pipe_floor(pool: list[np.ndarray], size: tuple[int, int], frames: int, audio: Path, out_path: Path) -> float:
    """The renderer's `VideoWriter` fed `frames` pre-decoded frames: encode plus pipe, no rendering."""
    start = time.perf_counter()
    with VideoWriter(out_path, size, FPS, audio=audio, crf=CRF, preset=PRESET) as writer:
        for frame in islice(cycle(pool), frames):
            writer.write(frame)
    return time.perf_counter() - start


def measure(
    variant: str, resolution: str, narrative: str, repeat: int, work: Path, seconds: float, music: Music
) -> Row:
    """Render and both floors, interleaved run by run so that other load on the machine hits all three alike."""
    size = frame_size(resolution, "16:9")
    renders, lavfis, pipes, speeches, muxes, frame_times = [], [], [], [], [], []
    pool: list[np.ndarray] = []
    for i in range(repeat):
        out_dir = work / f"{variant}-{resolution}-{i}"
        wall, video, audio, duration, stages = render_once(variant, size, narrative, out_dir, seconds, music)
        speeches.append(stages["speech"])
        muxes.append(stages["mux"])
        frame_times.append(stages["frames"])
        frames = max(1, math.ceil(duration * FPS))
        if i == 0:
            info = probe(video)
            if (info.width, info.height) != size:
                raise RuntimeError(f"rendered {info.width}x{info.height}, expected {size}")
            pool = decode_pool(video, POOL_FRAMES)
        renders.append(wall)
        lavfis.append(lavfi_floor(size, frames, audio, work / "floor-lavfi.mp4"))
        pipes.append(pipe_floor(pool, size, frames, audio, work / "floor-pipe.mp4"))
        logger.info(
            "%s %s run %d: render %.2f s, ffmpeg alone %.2f s, piped %.2f s for %.2f s of video",
            variant, resolution, i + 1, wall, lavfis[-1], pipes[-1], duration,
        )  # fmt: skip
        shutil.rmtree(out_dir, ignore_errors=True)
    med = statistics.median
    return Row(
        variant, resolution, size, frames, duration, med(renders), med(lavfis), med(pipes), med(speeches),
        med(muxes), med(frame_times),
    )  # fmt: skip


def report(rows: list[Row], seconds: float, repeat: int, music: str) -> None:
    out(f"## Embedded render runtime vs. the ffmpeg encode floor ({machine()})")
    out()
    out(
        f"{seconds:.1f} s of narrated video with `music: {music}`, 16:9, {FPS} fps, libx264 `{PRESET}` CRF {CRF} "
        f"+ AAC 96k; median of {repeat} run(s), render and floors interleaved. Real-time = video seconds ÷ render seconds."
    )
    out()
    body = []
    for r in rows:
        rtf = r.video_s / r.render_s
        vs_lavfi, vs_pipe = r.render_s / r.lavfi_s, r.render_s / r.pipe_s
        ok_rt = rtf >= 1.0 if r.resolution == "720p" else True
        targets = (
            "ok"
            if ok_rt and vs_lavfi <= 2.0
            else "MISSED: "
            + ", ".join(m for m, bad in (("< 1× real time", not ok_rt), ("> 2× floor", vs_lavfi > 2.0)) if bad)
        )
        body.append([
            r.variant, r.resolution, f"{r.size[0]}x{r.size[1]}", r.frames, f"{r.video_s:.2f}", f"{r.render_s:.2f}",
            f"{rtf:.2f}×", f"{r.speech_s:.2f}", f"{r.mux_s:.2f}", f"{r.frames_s:.2f}", f"{r.lavfi_s:.2f}",
            f"{vs_lavfi:.2f}×", f"{r.pipe_s:.2f}", f"{vs_pipe:.2f}×", targets,
        ])  # fmt: skip
    header = [
        "variant", "res", "size", "frames", "video s", "render s", "real-time", "speech s", "mux s",
        "frames + encode s", "ffmpeg alone s", "render ÷ alone", "piped frames s", "render ÷ piped", "targets (≥1× RT at 720p, ≤2× floor)",
    ]  # fmt: skip
    out(table(header, body))
    out()
    out(
        "ffmpeg alone: `-f lavfi -i testsrc2` encoded with the same settings (no pipe). Piped frames: the "
        f"renderer's VideoWriter fed {POOL_FRAMES} frames decoded from the render, cycled (encode + pipe, no "
        "rendering). A base clip (`base.mp4`) is written only when a model made it (SVD), not for the Ken Burns camera."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of speech (video length) to render")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement (the median is reported)")
    parser.add_argument("--variants", nargs="+", default=["svd", "sadtalker"], choices=["svd", "sadtalker"])
    parser.add_argument("--resolutions", nargs="+", default=["480p", "720p"], choices=["480p", "576p", "720p", "1080p"])
    parser.add_argument(
        "--music", default="calm", choices=["none", *get_args(MusicKind)], help="the bed under the narration"
    )
    parser.add_argument("--smoke", action="store_true", help="CI size: 5 s, one run, 480p, both variants")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.repeat, args.resolutions = 5.0, 1, ["480p"]
    quiet_logging()
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        work = Path(tmp)
        narrative, duration = narrative_for(args.seconds, work)
        logger.info("narrative of %d words speaks %.2f s", len(narrative.split()), duration)
        # Warm up: espeak-ng, OpenCV's face cascade, the scene renderer and ffmpeg, outside the timings.
        render_once("svd", (320, 180), "Warming up.", work / "warmup")
        rows = [
            measure(variant, resolution, narrative, args.repeat, work, args.seconds, args.music)
            for variant in args.variants
            for resolution in args.resolutions
        ]
    report(rows, args.seconds, args.repeat, args.music)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
