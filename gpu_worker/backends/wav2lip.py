"""`lipsync` with Wav2Lip: its checkout's `inference.py` run as a subprocess on the base clip and the speech."""

from __future__ import annotations

import os
from pathlib import Path

from gpu_worker.backends.base import Progress
from gpu_worker.backends.tools import Checkout, produced, require_file, run_tool


class Wav2Lip:
    """`python inference.py --checkpoint_path <ckpt> --face <video> --audio <wav> --outfile <mp4>`."""

    name = "wav2lip"

    def __init__(
        self,
        root: Path,
        checkpoint: Path | None = None,
        python: Path | None = None,
        extra_args: list[str] | None = None,
        timeout: float = 1800,
    ) -> None:
        """Check the checkout and checkpoint now, so a broken path fails at start-up.

        Raises:
            ApplicationError: `MissingWeights` naming the missing path.
        """
        self.checkout = Checkout.check("Wav2Lip", root, python, "APP_GPU__WAV2LIP_DIR")
        self.checkpoint = require_file(
            (checkpoint or root / "checkpoints" / "wav2lip_gan.pth").resolve(),
            "Wav2Lip checkpoint (APP_GPU__WAV2LIP_CHECKPOINT)",
        )
        self.extra_args = list(extra_args or [])
        self.timeout = timeout

    def lipsync(self, face_video: Path, audio: Path, out_dir: Path, progress: Progress) -> Path:
        """Re-draw the mouth of the face in `face_video` to speak `audio`.

        Wav2Lip writes `temp/` files relative to its working directory, so each call runs in its
        own scratch folder (two renders never share them); inputs are linked there under plain
        names because its script guesses the file type from the first dot in the path.

        Args:
            face_video: The base clip (any frame rate; the output keeps it).
            audio: The speech (WAV).
            out_dir: Scratch directory of this render.
            progress: Elapsed-time estimate; may raise to cancel (the subprocess is killed).

        Returns:
            The lip-synced MP4 (the face video's size and frame rate, with the speech).
        """
        work = out_dir / "wav2lip"
        (work / "temp").mkdir(parents=True, exist_ok=True)
        for name, source in (("face.mp4", face_video), ("speech.wav", audio)):
            (work / name).unlink(missing_ok=True)
            os.symlink(source.resolve(), work / name)
        args = ["--checkpoint_path", str(self.checkpoint), "--face", "face.mp4", "--audio", "speech.wav"]
        args += ["--outfile", "result.mp4", *self.extra_args]
        log = out_dir / "wav2lip.log"
        run_tool(self.checkout, args, work, log, self.timeout, progress, expected=30)
        return produced(work / "result.mp4", self.checkout, log)
