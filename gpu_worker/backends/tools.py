"""Running a model's own checkout (Wav2Lip, SadTalker) as a subprocess: checks, timeout, cancellation, errors.

Those projects pin old libraries (librosa 0.7, numpy 1.x, ...) that cannot share our
environment, so each runs with its own interpreter (`<checkout>/.venv/bin/python` by
default) and its real command line. Their scripts call `ffmpeg` from the PATH; the worker's
ffmpeg comes from `imageio-ffmpeg`, so a directory holding an `ffmpeg` link to it is put in
front of the PATH when no `ffmpeg` is installed.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gpu_worker.backends.base import Progress
from gpu_worker.backends.errors import backend_failed, backend_timeout, missing_weights
from gpu_worker.media.encode import ffmpeg_exe

logger = logging.getLogger(__name__)

_TAIL_CHARS = 1500
_POLL_SECONDS = 0.25
# What a checkout or its environment being broken looks like in a Python traceback: no retry fixes it.
_BROKEN = re.compile(r"ModuleNotFoundError|ImportError|No module named|FileNotFoundError|No such file or directory")


@dataclass(frozen=True)
class Checkout:
    """A model's source checkout and the interpreter that runs it."""

    label: str  # "Wav2Lip"
    root: Path
    python: Path
    setting: str  # the variable that points at it, for messages

    @classmethod
    def check(cls, label: str, root: Path, python: Path | None, setting: str) -> Checkout:
        """Validate a configured checkout: the folder, its `inference.py`, and an interpreter.

        Args:
            label: The model's name in messages.
            root: The checkout.
            python: The interpreter to run it with; default `<root>/.venv/bin/python` or `<root>/venv/bin/python`
                when present, else the worker's own.
            setting: The environment variable that configured `root`.

        Returns:
            The checkout.

        Raises:
            ApplicationError: `MissingWeights` naming the path that is missing.
        """
        if not (root / "inference.py").is_file():
            raise missing_weights(f"{label} checkout {root} ({setting}) has no inference.py")
        if python is None:
            candidates = [root / ".venv" / "bin" / "python", root / "venv" / "bin" / "python"]
            python = next((p for p in candidates if p.is_file()), Path(sys.executable))
        elif not python.is_file():
            raise missing_weights(f"{label} interpreter {python} does not exist")
        return cls(label, root.resolve(), python, setting)


def require_file(path: Path, what: str) -> Path:
    """`path` if it is a file, else a `MissingWeights` error naming it."""
    if not path.is_file():
        raise missing_weights(f"{what} {path} does not exist")
    return path


@cache
def _ffmpeg_shim() -> Path:
    shim = Path(tempfile.mkdtemp(prefix="ffmpeg-shim-"))
    (shim / "ffmpeg").symlink_to(ffmpeg_exe())
    return shim


def tool_env() -> dict[str, str]:
    """Our environment, offline for the Hub, with an `ffmpeg` on the PATH."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):  # the checkout's interpreter brings its own
        env.pop(name, None)
    if not _which("ffmpeg", env.get("PATH", "")):
        env["PATH"] = f"{_ffmpeg_shim()}{os.pathsep}{env.get('PATH', '')}"
    return env


def _which(name: str, path: str) -> bool:
    return any((Path(d) / name).is_file() for d in path.split(os.pathsep) if d)


def _tail(log: Path) -> str:
    try:
        text = log.read_bytes()[-_TAIL_CHARS * 4 :].decode(errors="replace")
    except OSError:
        return ""
    # tqdm redraws with carriage returns: keep the last state of each line.
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(line for line in lines if line.strip())[-_TAIL_CHARS:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the tool and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_tool(
    checkout: Checkout, args: list[str], cwd: Path, log: Path, timeout: float, progress: Progress, expected: float
) -> None:
    """Run `<python> <root>/inference.py <args>` in `cwd`, reporting progress until it exits.

    Args:
        checkout: The model's checkout.
        args: Command-line arguments after the script.
        cwd: Working directory (created).
        log: File that receives the tool's stdout and stderr.
        timeout: Seconds before the tool is killed.
        progress: Called about every 0.25 s with an estimate (elapsed / `expected`, capped below 1); may raise to
            cancel, which kills the tool.
        expected: Seconds the run usually takes, for the estimate.

    Raises:
        ApplicationError: `MissingWeights` when the traceback shows a broken checkout or environment;
            `BackendTimeout` after `timeout`; `BackendFailed` for any other non-zero exit. Each names the
            checkout and ends with the tool's last output.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [str(checkout.python), str(checkout.root / "inference.py"), *args]
    logger.info("%s: %s", checkout.label, " ".join(cmd))
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=tool_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            progress(0.0)
            while True:
                try:
                    code = proc.wait(timeout=_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - started
                    if elapsed > timeout:
                        _stop(proc)
                        raise backend_timeout(
                            f"{checkout.label} ({checkout.root}) ran past {timeout:.0f} s and was stopped; "
                            f"last output:\n{_tail(log)}"
                        ) from None
                    progress(min(0.95, elapsed / max(expected, 1.0)))
        finally:
            _stop(proc)
    elapsed = time.monotonic() - started
    if code == 0:
        logger.info("%s finished in %.1f s", checkout.label, elapsed)
        return
    tail = _tail(log)
    if _BROKEN.search(tail):
        raise missing_weights(
            f"{checkout.label} checkout {checkout.root} ({checkout.setting}) is broken: inference.py exited with "
            f"{code}; last output:\n{tail}"
        )
    raise backend_failed(
        f"{checkout.label} ({checkout.root}) exited with {code} after {elapsed:.1f} s; last output:\n{tail}"
    )


def produced(path: Path | None, checkout: Checkout, log: Path) -> Path:
    """The tool's output file, or a non-retryable error (the same input gives the same nothing) with its last output."""
    if path is None or not path.is_file() or path.stat().st_size == 0:
        raise backend_failed(
            f"{checkout.label} ({checkout.root}) exited cleanly but wrote no video; last output:\n{_tail(log)}",
            non_retryable=True,
        )
    return path
