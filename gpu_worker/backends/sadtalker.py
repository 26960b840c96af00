"""`talking_head` with SadTalker: its checkout's `inference.py` run as a subprocess on the portrait and speech."""

from __future__ import annotations

from pathlib import Path

from gpu_worker.backends.base import Progress
from gpu_worker.backends.errors import missing_weights
from gpu_worker.backends.tools import Checkout, produced, run_tool


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
        """Check the checkout and its checkpoints now, so a broken path fails at start-up.

        Args:
            root: The SadTalker checkout.
            checkpoint_dir: Its checkpoints; default `<root>/checkpoints`.
            python: Its interpreter (see `Checkout.check`).
            extra_args: More arguments, by default `--still --preprocess full` (the whole portrait, little head motion).
            timeout: Seconds before a run is killed.

        Raises:
            ApplicationError: `MissingWeights` naming the missing path.
        """
        self.checkout = Checkout.check("SadTalker", root, python, "APP_GPU__SADTALKER_DIR")
        ckpt = (checkpoint_dir or root / "checkpoints").resolve()
        if not ckpt.is_dir() or not any(p.is_file() for p in ckpt.iterdir()):
            raise missing_weights(f"SadTalker checkpoints {ckpt} (APP_GPU__SADTALKER_CHECKPOINT_DIR) are missing")
        self.checkpoint_dir = ckpt
        self.extra_args = ["--still", "--preprocess", "full"] if extra_args is None else list(extra_args)
        self.timeout = timeout

    def animate(self, image: Path, audio: Path, out_dir: Path, progress: Progress) -> Path:
        """Make the face in `image` speak `audio`.

        SadTalker resolves its configs and face-alignment weights relative to the checkout, so it
        runs there; everything it writes goes to our own `result_dir`.

        Args:
            image: The portrait, framed at the video size.
            audio: The speech (WAV).
            out_dir: Scratch directory of this render.
            progress: Elapsed-time estimate; may raise to cancel (the subprocess is killed).

        Returns:
            The talking-head MP4 SadTalker wrote (`<result_dir>/<timestamp>.mp4`, 25 fps, with the speech).
        """
        result_dir = (out_dir / "sadtalker").resolve()
        result_dir.mkdir(parents=True, exist_ok=True)
        args = ["--driven_audio", str(audio.resolve()), "--source_image", str(image.resolve())]
        args += ["--result_dir", str(result_dir), "--checkpoint_dir", str(self.checkpoint_dir), *self.extra_args]
        log = out_dir / "sadtalker.log"
        run_tool(self.checkout, args, self.checkout.root, log, self.timeout, progress, expected=60)
        videos = sorted(result_dir.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
        return produced(videos[-1] if videos else None, self.checkout, log)
