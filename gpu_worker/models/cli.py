"""`python -m gpu_worker.models list | pull NAME… | verify [NAME…] | rm NAME…`: the GPU worker's model weights.

Exit status: 0 done, 1 failed (network, refused download, no space, digest mismatch, `verify`
found a difference), 2 usage (unknown name, licence not accepted), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from gpu_worker.models.catalogue import CATALOGUE, Entry, select
from gpu_worker.models.errors import FAILED, INTERRUPTED, USAGE, ModelsError
from gpu_worker.models.lock import Lock, sha256_file
from gpu_worker.models.presence import on_disk
from gpu_worker.models.pull import STAGING, human_size, pull

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None, catalogue: tuple[Entry, ...] = CATALOGUE, endpoint: str | None = None) -> int:
    """Run one command.

    Args:
        argv: The arguments (default `sys.argv[1:]`).
        catalogue: The entries (tests pass their own).
        endpoint: The Hub's address (None: `HF_ENDPOINT`, else huggingface.co).

    Returns:
        The exit status.
    """
    args = _parser(catalogue).parse_args(argv)
    try:
        models_dir = _models_dir(args.models_dir)
        if args.command == "list":
            _list(catalogue, models_dir)
        elif args.command == "pull":
            entries = select(args.names, catalogue)
            select(args.accept_license, catalogue)  # a misspelt acceptance must not pass silently
            for entry in entries:
                pull(entry, models_dir, args.accept_license, endpoint, args.from_dir)
        elif args.command == "verify":
            return _verify(select(args.names, catalogue) if args.names else list(catalogue), models_dir)
        else:
            _remove(select(args.names, catalogue), models_dir)
    except ModelsError as err:
        sys.stderr.write(f"error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(
            "interrupted: nothing half-written was installed; what was downloaded is kept in "
            f"{STAGING}/ of the models folder, so running the same pull again continues it\n"
        )
        return INTERRUPTED
    return 0


def configure_logging() -> None:
    """Our messages as plain lines on stderr, without the HTTP clients' one line per request."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for chatty in ("httpx", "httpx2", "filelock"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _parser(catalogue: tuple[Entry, ...]) -> argparse.ArgumentParser:
    names = ", ".join(entry.name for entry in catalogue)
    parser = argparse.ArgumentParser(prog="python -m gpu_worker.models", description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", type=Path, help="default: APP_GPU__MODELS_DIR")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every catalogued backend: licence, commercial use, present, size on disk")
    pull_cmd = commands.add_parser("pull", help="download weights into the models folder")
    pull_cmd.add_argument("names", nargs="+", metavar="NAME", help=names)
    pull_cmd.add_argument(
        "--accept-license", action="append", default=[], metavar="NAME", help="accept NAME's licence (repeatable)"
    )
    pull_cmd.add_argument("--from", dest="from_dir", type=Path, help="copy the files from this folder instead")
    verify_cmd = commands.add_parser("verify", help="re-hash pulled files against models.lock (offline)")
    verify_cmd.add_argument("names", nargs="*", metavar="NAME")
    rm_cmd = commands.add_parser("rm", help="delete a backend's files")
    rm_cmd.add_argument("names", nargs="+", metavar="NAME")
    return parser


def _models_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    from core.settings import get_settings

    configured = get_settings().gpu.models_dir
    if configured is None:
        raise ModelsError("no models folder: set APP_GPU__MODELS_DIR or pass --models-dir", USAGE)
    return configured


def _list(catalogue: tuple[Entry, ...], models_dir: Path) -> None:
    lock = Lock(models_dir)
    rows = [("NAME", "PRESENT", "ON DISK", "COMMERCIAL", "LICENCE", "SOURCE")]
    for entry in catalogue:
        disk = on_disk(entry, models_dir, lock)
        present = {"present": "yes", "absent": "no"}.get(disk.state, disk.state)
        if disk.state == "absent" and (models_dir / STAGING / entry.name).exists():
            present = "no (pull unfinished)"
        size = human_size(_folder_size(disk.folder)) if disk.state != "absent" else "-"
        gated = " (gated)" if entry.gated else ""
        rows.append((entry.name, present, size, entry.commercial, entry.license, " ".join(entry.sources) + gated))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)))
        sys.stdout.write(f"  {row[-1]}\n")


def _verify(entries: list[Entry], models_dir: Path) -> int:
    """Re-hash every file `models.lock` records; report each entry; 1 when anything differs."""
    lock = Lock(models_dir)
    failed = False
    for entry in entries:
        record = lock.records.get(entry.name)
        disk = on_disk(entry, models_dir, lock)
        if record is None:
            if disk.state != "absent":
                sys.stdout.write(f"{entry.name}: not pulled by this tool (no models.lock record): unverified\n")
            continue
        problems = []
        for rel, locked in sorted(record.files.items()):
            path = disk.folder / rel
            if not path.is_file():
                problems.append(f"{rel} is missing")
            elif path.stat().st_size != locked.size:
                problems.append(f"{rel} has {path.stat().st_size} bytes, models.lock says {locked.size}")
            elif (digest := sha256_file(path)) != locked.sha256:
                problems.append(f"{rel} has SHA-256 {digest}, models.lock says {locked.sha256}")
        if problems:
            failed = True
            sys.stdout.write(f"{entry.name}: FAILED: {'; '.join(problems)}. Pull it again (or rm it)\n")
        else:
            total = sum(f.size for f in record.files.values())
            sys.stdout.write(f"{entry.name}: ok ({len(record.files)} files, {human_size(total)}, {record.source})\n")
    return FAILED if failed else 0


def _remove(entries: list[Entry], models_dir: Path) -> None:
    lock = Lock(models_dir)
    for entry in entries:
        folder = models_dir / entry.folder
        freed = _folder_size(folder)
        shutil.rmtree(folder, ignore_errors=True)
        for leftover in (models_dir / STAGING / entry.name, models_dir / STAGING / f"{entry.name}.ready"):
            freed += _folder_size(leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        if lock.records.pop(entry.name, None) is not None:
            lock.save()
        sys.stdout.write(f"{entry.name}: removed {folder} ({human_size(freed)} freed)\n")


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
