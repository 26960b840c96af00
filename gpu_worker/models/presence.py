"""What each catalogue entry has on disk, checked by size only, and which backends the worker may use.

The worker runs this at start-up, so it never hashes (gigabytes would take minutes) and never
downloads: files must be where `pull` put them, with the sizes `models.lock` (or the catalogue)
records. `verify` is the command that hashes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpu_worker.models.catalogue import CATALOGUE, Entry, select
from gpu_worker.models.errors import ModelsError
from gpu_worker.models.lock import Lock

logger = logging.getLogger(__name__)

State = Literal["absent", "present", "untracked", "broken"]
SETTING = "APP_GPU__BACKENDS"


@dataclass(frozen=True)
class OnDisk:
    """An entry's folder: `present` (matches `models.lock`), `untracked` (files not pulled by us), `broken`, `absent`."""

    entry: Entry
    folder: Path
    state: State
    problem: str = ""


def on_disk(entry: Entry, models_dir: Path, lock: Lock) -> OnDisk:
    """Check an entry's files against the sizes in the lock (or, for files never pulled, the catalogue's pins).

    Args:
        entry: The catalogue entry.
        models_dir: `APP_GPU__MODELS_DIR`.
        lock: Its `models.lock`.

    Returns:
        The folder and its state; `problem` says what differs when broken.
    """
    folder = models_dir / entry.folder
    if not folder.exists():
        return OnDisk(entry, folder, "absent")  # an existing folder, even empty, is the backend's to judge
    record = lock.records.get(entry.name)
    if record is not None:
        expected = {rel: locked.size for rel, locked in record.files.items()}
    else:
        expected = {rel: pin.size for rel, pin in entry.pins().items() if pin.size is not None}
    problems = []
    for rel, size in sorted(expected.items()):
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif (actual := path.stat().st_size) != size:
            problems.append(f"{rel} has {actual} bytes, not {size}")
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        problem = (
            f"the {entry.name} weights in {folder} do not match {lock.path.name}: {shown}. Run "
            f"`python -m gpu_worker.models pull {entry.name}` again, or `rm {entry.name}`"
        )
        return OnDisk(entry, folder, "broken", problem)
    return OnDisk(entry, folder, "present" if record is not None else "untracked")


def enabled_weights(
    models_dir: Path | None,
    requested: list[str] | None,
    configured: Mapping[str, bool],
    catalogue: tuple[Entry, ...] = CATALOGUE,
) -> dict[str, Path | None]:
    """Which catalogued backends the worker uses, each with the folder holding its files.

    Args:
        models_dir: `APP_GPU__MODELS_DIR`, or None.
        requested: `APP_GPU__BACKENDS`: the names to use, or None for every one whose files are present.
        configured: Names a setting of their own points at files outside the models folder
            (`APP_GPU__ESRGAN_WEIGHTS`, `APP_GPU__WAV2LIP_DIR`, ...); they count as present.
        catalogue: The entries (tests pass their own).

    Returns:
        Name → its folder under `models_dir`, or None when only its own setting provides the files.

    Raises:
        ModelsError: An unknown name is requested; a requested backend has no files; files that are
            there differ in size from `models.lock`.
    """
    if requested is not None:
        select(requested, catalogue)  # unknown names fail here, listing the known ones
    lock = Lock(models_dir) if models_dir is not None else None
    enabled: dict[str, Path | None] = {}
    for entry in catalogue:
        disk = on_disk(entry, models_dir, lock) if models_dir is not None and lock is not None else None
        has_files = disk is not None and disk.state != "absent"
        if requested is not None and entry.name not in requested:
            if has_files or configured.get(entry.name):
                logger.info("%s weights are configured but not in %s: not used", entry.name, SETTING)
            continue
        if disk is not None and disk.state == "broken":
            raise ModelsError(disk.problem)
        if has_files and disk is not None:
            enabled[entry.name] = disk.folder
        elif configured.get(entry.name):
            enabled[entry.name] = None
        elif requested is not None:
            where = models_dir / entry.folder if models_dir is not None else "APP_GPU__MODELS_DIR (not set)"
            raise ModelsError(
                f"{entry.name} is enabled by {SETTING} but {where} has none of its files: "
                f"run `python -m gpu_worker.models pull {entry.name}`"
            )
    return enabled
