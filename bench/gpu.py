"""The GPU stages at their real sizes with random weights: seconds per stage and a whole-render estimate.

Run: `python -m bench.gpu [--stages sd,svd,musetalk,esrgan,lora,xtts] [--dtype fp16|bf16] [--compile]
[--size full|reduced|smoke] [--smoke]`. Every model is built from its published config with random
weights (`bench._gpu_models`, nothing downloaded), so the seconds are those of the real
architectures; the pictures and sounds are noise. Stages:

- `sd`: one Stable Diffusion 1.5 scene at 512², 30 steps with classifier-free guidance, then the VAE decode;
- `svd`: one SVD-XT clip, 25 frames × 576 × 1024, 25 steps with guidance, decoded 8 frames at a time;
- `musetalk`: a MuseTalk-class UNet (one step per frame over 32×32×8 latents, cross-attending to
  Whisper-tiny-sized audio features) plus the VAE decode to the 256² face, 8 frames per batch;
- `esrgan`: Real-ESRGAN x4plus (the worker's `RRDBNet`: 23 blocks, 64 features, 32 growth), 320×180 → 1280×720;
- `lora`: LoRA training steps on the SD 1.5 UNet's attention projections (peft, ranks 4 and 16), backward + AdamW;
- `xtts`: XTTS-v2 (coqui's GPT, 30 layers × 1024, and its HiFi-GAN decoder) speaking 10 s; without
  coqui-tts a transformers GPT-2 of the same size stands in, labelled as an approximation.

On CUDA the inference stages run in fp16 (`--dtype bf16` to change) after one warm-up call; LoRA runs
as the worker trains (fp32 weights, bf16 autocast) and XTTS in fp32, as the worker speaks.
`torch.compile` is off unless `--compile`. On a CPU the default is a reduced size (full
architectures, fewer steps and frames, smaller pictures, no warm-up: about 90 s on two idle cores),
and every row says "reduced size: CPU": those numbers are not full-size numbers. `--smoke` (what CI
runs) builds toy architectures and takes seconds. A stage whose library is missing is reported as
skipped, so the script runs wherever torch is installed.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import logging
import sys
from dataclasses import replace

import torch

from bench._gpu_stages import (
    SIZES,
    STAGE_RUNNERS,
    SVD_FPS,
    VIDEO_FPS,
    VIDEO_SECONDS,
    Bench,
    Measurement,
    NotRun,
    dtype_name,
)
from bench._report import machine, out, quiet_logging, table

logger = logging.getLogger("bench.gpu")

STAGES = tuple(STAGE_RUNNERS)
HEADER = (
    "stage",
    "model",
    "size",
    "dtype",
    "steps",
    "frames",
    "resolution",
    "s",
    "per unit",
    "s per s of video",
    "peak GiB",
)
VIDEO_STAGES = ("sd", "svd", "musetalk", "esrgan", "xtts")  # what the estimate combines (LoRA: once per profile)
Result = Measurement | NotRun


def run_stage(bench: Bench, name: str) -> list[Result]:
    """One stage's measurements, or why it did not run: a missing library or a failure skips only that stage."""
    logger.info("stage %s (%s)", name, size_label(bench))
    cuda = bench.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(bench.device)
    torch.manual_seed(0)
    try:
        with torch.inference_mode(name != "lora"):
            measured = STAGE_RUNNERS[name](bench)
    except ModuleNotFoundError as err:
        missing = err.name.split(".")[0] if err.name else str(err)
        return [NotRun(name, f"skipped: {missing} not installed")]
    except torch.cuda.OutOfMemoryError:
        return [NotRun(name, "failed: out of GPU memory")]
    except Exception as err:  # one broken stage must not cost the numbers of the others
        logger.exception("stage %s failed", name)
        first_line = next(iter(str(err).splitlines()), "")[:200]  # one table cell: no newlines
        return [NotRun(name, f"failed: {type(err).__name__}: {first_line}")]
    finally:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    peak = torch.cuda.max_memory_allocated(bench.device) / 2**30 if cuda else None
    return [replace(m, peak_gib=peak) for m in measured]


def size_label(bench: Bench) -> str:
    """What every row says about its size, so that reduced numbers are never read as full-size ones."""
    cpu = bench.device.type == "cpu"
    if bench.size.name == "full":
        return "full size, on a CPU" if cpu else "full size"
    if bench.size.name == "smoke":
        return "reduced size: CPU, smoke (toy architectures)" if cpu else "reduced size: smoke (toy architectures)"
    return "reduced size: CPU" if cpu else "reduced size (the CPU sizes)"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU and how many threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} torch threads)"


def row(result: Result, label: str) -> list[str]:
    """A table row (`HEADER`): a measurement's numbers, or a skipped stage's reason in the model column."""
    if isinstance(result, NotRun):
        return [result.stage, result.reason, label, "", "", "", "", "n/a", "", "n/a", "n/a"]
    r = result  # a Measurement
    share = f"{r.video_share:.3g}" if r.video_share is not None else "— (once per profile)"
    peak = f"{r.peak_gib:.1f}" if r.peak_gib is not None else "n/a"
    return [
        r.stage,
        r.model,
        label,
        r.dtype,
        r.steps,
        r.frames,
        r.resolution,
        f"{r.seconds:.4g}",
        r.per_unit,
        share,
        peak,
    ]


def estimate(results: list[Result], label: str) -> str:
    """The whole-render real-time factor combined from the stages' seconds per second of video."""
    shares = {r.stage: r.video_share for r in results if isinstance(r, Measurement) and r.video_share is not None}
    if not shares:
        return "No whole-render estimate: none of its stages ran."
    total = sum(shares.values())
    missing = [stage for stage in VIDEO_STAGES if stage not in shares]
    approximated = [r.stage for r in results if isinstance(r, Measurement) and "approximation" in r.model]
    caveat = "" if label.startswith("full size") else f"**{label}: not a full-size estimate.** "
    return (
        f"{caveat}Whole-render estimate from random-weight timings: **{total:.3g} s of compute per second of "
        f"video** ({'faster' if total < 1 else 'slower'} than real time) = SD scene ÷ {VIDEO_SECONDS} s of video "
        f"+ SVD clip ÷ (its frames ÷ {SVD_FPS} fps) + {VIDEO_FPS} fps × (lip-sync frame + upscale frame) "
        "+ XTTS per second of speech, the stages one after another on one device. "
        + (f"Incomplete: without {', '.join(missing)}. " if missing else "")
        + (f"Approximated: {', '.join(approximated)} (see its row). " if approximated else "")
        + "Not included: loading the models, the CLIP text and image encoders, Whisper, VAE encodes, face "
        "detection, compositing and video encoding."
    )


def _quiet_libraries() -> None:
    """Only errors from transformers and diffusers: they warn about random configs, dtype casts and generation settings.

    Through their own switches: each sets its logger's level when first imported, over any set before.
    """
    for library in ("transformers", "diffusers"):
        if importlib.util.find_spec(library) is not None:
            importlib.import_module(f"{library}.utils.logging").set_verbosity_error()


def _stage_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STAGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown stage(s) {', '.join(unknown) or '(none)'}; known: {', '.join(STAGES)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--stages", type=_stage_list, default=list(STAGES), help=f"comma-separated subset of {','.join(STAGES)}"
    )
    parser.add_argument("--dtype", choices=("fp16", "bf16"), default="fp16", help="inference dtype on CUDA (CPU: fp32)")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the models (compiled in the warm-up call)"
    )
    parser.add_argument("--size", choices=list(SIZES), help="default: full on CUDA, reduced on a CPU")
    parser.add_argument("--smoke", action="store_true", help="CI size: toy architectures, seconds (= --size smoke)")
    args = parser.parse_args(argv)
    quiet_logging()
    _quiet_libraries()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = SIZES[args.size or ("smoke" if args.smoke else "full" if device.type == "cuda" else "reduced")]
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype] if device.type == "cuda" else torch.float32
    bench = Bench(device, dtype, size, args.compile)
    label = size_label(bench)
    results = [result for name in args.stages for result in run_stage(bench, name)]
    warmup = "one warm-up call per stage" if bench.warmup else "no warm-up"
    compiled = "on" if args.compile else "off"
    out(
        f"## GPU stages, {label}: {device_name(device)}, {dtype_name(dtype)}, torch {torch.__version__}, "
        f"torch.compile {compiled}, {warmup}"
    )
    out()
    out(f"Measured on {machine()}.")
    out()
    out(table(HEADER, [row(result, label) for result in results]))
    out()
    out(estimate(results, label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
