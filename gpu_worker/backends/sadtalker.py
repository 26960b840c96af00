"""`talking_head` with SadTalker: its checkout's `inference.py` run as a subprocess on the portrait and speech.

The contract below was read from OpenTalker/SadTalker at commit
cd4c0465ae0b54a6f85af57f5c65fec9fe23e7f8 (`inference.py`, `src/utils/init_path.py`,
`src/facerender/animate.py`, `src/utils/face_enhancer.py`, `src/face3d/extract_kp_videos_safe.py`,
`scripts/download_models.sh`); check it again when you check out another revision.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import NoReturn

from gpu_worker.backends.base import Progress
from gpu_worker.backends.errors import missing_weights
from gpu_worker.backends.tools import Checkout, produced, run_tool

logger = logging.getLogger(__name__)

# The backend sets these itself; a second value in the extra arguments would win (argparse keeps the last one).
_OURS = ("--driven_audio", "--source_image", "--result_dir", "--checkpoint_dir")
# Only these sizes have released weights (`SadTalker_V0.0.2_<size>.safetensors`).
_SIZES = (256, 512)
# `--enhancer` is a free string upstream; only these two load, and each reads `<name>.pth` from
# `gfpgan/weights`, else `checkpoints`, relative to the working directory, else downloads it.
_ENHANCERS = {"gfpgan": "GFPGANv1.4.pth", "RestoreFormer": "RestoreFormer.pth"}
# Face detection and landmarks (always) and face parsing (GFPGAN's face helper): cwd-relative `gfpgan/weights`.
_FACE_WEIGHTS = ("alignment_WFLW_4HG.pth", "detection_Resnet50_Final.pth")
_PARSING_WEIGHTS = "parsing_parsenet.pth"
# What `init_path` loads when the checkpoint folder has no `*.safetensors` (or with `--old_version`).
_OLD_CHECKPOINTS = (
    "wav2lip.pth", "auido2pose_00140-model.pth", "auido2exp_00300-model.pth", "facevid2vid_00189-model.pth.tar",
    "epoch_20.pth",
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of exiting, so a bad setting stops the worker with its message."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def _parser() -> _Parser:
    """`inference.py`'s options (names, types, defaults and choices), so extra arguments are checked at start-up."""
    parser = _Parser(prog="inference.py", add_help=False)
    for name in (*_OURS, "--ref_eyeblink", "--ref_pose", "--enhancer", "--background_enhancer", "--init_path"):
        parser.add_argument(name)
    for name in ("--bfm_folder", "--bfm_model", "--use_last_fc"):
        parser.add_argument(name)
    parser.add_argument("--pose_style", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    for name in ("--expression_scale", "--focal", "--center", "--camera_d", "--z_near", "--z_far"):
        parser.add_argument(name, type=float)
    for name in ("--input_yaw", "--input_pitch", "--input_roll"):
        parser.add_argument(name, nargs="+", type=int)
    for name in ("--cpu", "--face3dvis", "--still", "--verbose", "--old_version"):
        parser.add_argument(name, action="store_true")
    parser.add_argument("--preprocess", default="crop", choices=["crop", "extcrop", "resize", "full", "extfull"])
    parser.add_argument("--net_recon", default="resnet50", choices=["resnet18", "resnet34", "resnet50"])
    return parser


def _options(extra_args: list[str]) -> argparse.Namespace:
    """The extra arguments as `inference.py` would read them, refusing what would fail or download at render time."""
    try:
        opts = _parser().parse_args(extra_args)
    except ValueError as err:
        raise missing_weights(f"SadTalker arguments {extra_args} (APP_GPU__SADTALKER_ARGS): {err}") from None
    problems = [f"{name} is set by the backend" for name in _OURS if getattr(opts, name[2:]) is not None]
    if opts.size not in _SIZES:
        problems.append(f"--size {opts.size} has no released weights (256 or 512)")
    if opts.enhancer is not None and opts.enhancer not in _ENHANCERS:
        problems.append(f"--enhancer {opts.enhancer} is not one SadTalker loads ({' or '.join(_ENHANCERS)})")
    if opts.background_enhancer is not None:
        problems.append("--background_enhancer downloads Real-ESRGAN at render time; the upscale stage does this")
    if opts.batch_size < 1:
        problems.append("--batch_size must be at least 1")
    if problems:
        raise missing_weights(f"SadTalker arguments {extra_args} (APP_GPU__SADTALKER_ARGS): {'; '.join(problems)}")
    if "full" in opts.preprocess and not opts.still:
        # Without --still the head pose moves while the body pasted around it does not.
        logger.warning("SadTalker --preprocess %s without --still: the head moves inside a fixed body", opts.preprocess)
    return opts


def _missing_checkpoints(ckpt: Path, opts: argparse.Namespace) -> list[str]:
    """The checkpoint files `init_path` will open for these options that are not in `ckpt`."""
    if opts.old_version or not any(ckpt.glob("*.safetensors")):
        names = list(_OLD_CHECKPOINTS)
    else:
        names = [f"SadTalker_V0.0.2_{opts.size}.safetensors"]
    # The mapping network follows --preprocess (full/extfull use the still-mode renderer), not --still.
    names.append("mapping_00109-model.pth.tar" if "full" in opts.preprocess else "mapping_00229-model.pth.tar")
    return [name for name in names if not (ckpt / name).is_file()]


def _missing_face_weights(root: Path, opts: argparse.Namespace) -> list[str]:
    """The cwd-relative face weights these options read that the checkout lacks (facexlib would download them)."""
    weights = root / "gfpgan" / "weights"
    names = list(_FACE_WEIGHTS)
    if opts.enhancer is not None:
        names.append(_PARSING_WEIGHTS)
        model = _ENHANCERS[opts.enhancer]
        if not (weights / model).is_file() and not (root / "checkpoints" / model).is_file():
            names.append(model)
    return [f"gfpgan/weights/{name}" for name in dict.fromkeys(names) if not (weights / name).is_file()]


class SadTalker:
    """`python inference.py --driven_audio <wav> --source_image <img> --result_dir <dir> --checkpoint_dir <dir> ...`."""

    name = "sadtalker"

    def __init__(
        self,
        root: Path,
        checkpoint_dir: Path | None = None,
        python: Path | None = None,
        extra_args: list[str] | None = None,
        timeout: float = 1800,
    ) -> None:
        """Check the checkout, its arguments and every file they make it read now, so a broken setup fails at start-up.

        Args:
            root: The SadTalker checkout.
            checkpoint_dir: Its checkpoints; default `<root>/checkpoints`.
            python: Its interpreter (see `Checkout.check`).
            extra_args: More arguments, by default `--still --preprocess full` (the whole portrait, the head
                pose held, which `full` needs so the animated face stays aligned with the body pasted around it).
                `--size 512` needs `SadTalker_V0.0.2_512.safetensors`; `--enhancer gfpgan|RestoreFormer`
                needs its weights in `gfpgan/weights` and doubles the video's size.
            timeout: Seconds before a run is killed.

        Raises:
            ApplicationError: `MissingWeights` naming the missing path or the argument that cannot work.
        """
        self.checkout = Checkout.check("SadTalker", root, python, "APP_GPU__SADTALKER_DIR")
        self.extra_args = ["--still", "--preprocess", "full"] if extra_args is None else list(extra_args)
        opts = _options(self.extra_args)
        ckpt = (checkpoint_dir or root / "checkpoints").resolve()
        if not ckpt.is_dir() or not any(p.is_file() for p in ckpt.iterdir()):
            raise missing_weights(f"SadTalker checkpoints {ckpt} (APP_GPU__SADTALKER_CHECKPOINT_DIR) are missing")
        missing = _missing_checkpoints(ckpt, opts)
        if missing:
            raise missing_weights(
                f"SadTalker checkpoints {ckpt} (APP_GPU__SADTALKER_CHECKPOINT_DIR) lack {', '.join(missing)} "
                f"(needed for --size {opts.size} --preprocess {opts.preprocess}; its scripts/download_models.sh)"
            )
        missing = _missing_face_weights(self.checkout.root, opts)
        if missing:
            raise missing_weights(
                f"SadTalker checkout {self.checkout.root} (APP_GPU__SADTALKER_DIR) lacks {', '.join(missing)}: "
                "facexlib would download them at the first render (link <models>/sadtalker/gfpgan there)"
            )
        self.checkpoint_dir = ckpt
        self.timeout = timeout

    def animate(self, image: Path, audio: Path, out_dir: Path, progress: Progress) -> Path:
        """Make the face in `image` speak `audio`.

        SadTalker reads `gfpgan/weights` (and the enhancer's `checkpoints/`) relative to its working
        directory, so it runs in the checkout; it also writes short-lived `<uuid>.mp4` files there
        while muxing, so the checkout must be writable. Its results go to our own `result_dir`,
        emptied first so a run that writes nothing never returns an earlier attempt's video.

        Args:
            image: The portrait, framed at the video size (a `.png`, `.jpg` or `.jpeg`: SadTalker reads any
                other suffix as a video).
            audio: The speech (WAV).
            out_dir: Scratch directory of this render.
            progress: Elapsed-time estimate; may raise to cancel (the subprocess is killed).

        Returns:
            The talking-head MP4 SadTalker wrote, `<result_dir>/<%Y_%m_%d_%H.%M.%S>.mp4` (25 fps, with the
            speech): the portrait's size with `--preprocess full`/`extfull`, the face crop `--size` wide
            otherwise, twice that with `--enhancer`.
        """
        result_dir = (out_dir / "sadtalker").resolve()
        shutil.rmtree(result_dir, ignore_errors=True)
        result_dir.mkdir(parents=True)
        args = ["--driven_audio", str(audio.resolve()), "--source_image", str(image.resolve())]
        args += ["--result_dir", str(result_dir), "--checkpoint_dir", str(self.checkpoint_dir), *self.extra_args]
        log = out_dir / "sadtalker.log"
        run_tool(self.checkout, args, self.checkout.root, log, self.timeout, progress, expected=60)
        # Only the final video sits at the top level (--verbose keeps the intermediates in a subfolder).
        videos = sorted(result_dir.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
        return produced(videos[-1] if videos else None, self.checkout, log)
