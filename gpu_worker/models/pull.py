"""`pull`: fetch an entry's files into a staging folder, hash and check each, then move them where the backend loads.

`<models_dir>/.staging/<name>/` is on the same filesystem as the backend's folder, so the move
is a rename: a backend never sees a half-written file. A folder that does not exist yet appears
complete in one rename; files replacing an older pull are renamed over it one by one.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import zipfile
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

from gpu_worker.models import download
from gpu_worker.models.catalogue import Entry, Pin
from gpu_worker.models.download import Planned
from gpu_worker.models.errors import USAGE, ModelsError
from gpu_worker.models.lock import Lock, LockedFile, LockRecord, git_blob_sha1, sha256_file
from gpu_worker.models.presence import on_disk

logger = logging.getLogger(__name__)

STAGING = ".staging"


def check_license(entry: Entry, accepted: Collection[str]) -> None:
    """Refuse weights whose commercial use is `no` or `conditional` unless the user accepted them by name.

    Raises:
        ModelsError: Not accepted (usage error naming the licence and the flag).
    """
    if entry.commercial == "yes" or entry.name in accepted:
        return
    raise ModelsError(
        f"{entry.name} is licensed under {entry.license} ({entry.license_url}); commercial use: "
        f"{entry.commercial}. Read it, then pull again with --accept-license {entry.name}",
        USAGE,
    )


def pull(
    entry: Entry,
    models_dir: Path,
    accepted: Collection[str] = (),
    endpoint: str | None = None,
    from_dir: Path | None = None,
) -> LockRecord:
    """Download (or copy from `from_dir`) an entry's files, check them, install them and record them in the lock.

    Args:
        entry: The catalogue entry.
        models_dir: `APP_GPU__MODELS_DIR`.
        accepted: Entry names whose licence the user accepted (`--accept-license`).
        endpoint: The Hub's address (None: `HF_ENDPOINT`, else huggingface.co).
        from_dir: Take the files from this folder instead of downloading (weights fetched by hand).

    Returns:
        What was recorded in `models.lock`.

    Raises:
        ModelsError: Licence not accepted, no space, a refused or failed download, a digest mismatch.
    """
    check_license(entry, accepted)
    models_dir.mkdir(parents=True, exist_ok=True)
    lock = Lock(models_dir)
    previous = lock.records.get(entry.name)
    installed = previous if previous is not None and on_disk(entry, models_dir, lock).state == "present" else None
    pinned = _hub_source(entry) if all(repo.revision for repo in entry.repos) else None
    if installed is not None and from_dir is None and (not entry.repos or installed.source == pinned):
        return _already(entry, models_dir, installed)  # pinned commits or release assets do not change
    source, files = _plan(entry, endpoint, from_dir)
    if installed is not None and installed.source == source:
        return _already(entry, models_dir, installed)
    staging = models_dir / STAGING / entry.name
    _check_space(entry, models_dir, files, staging)
    logger.info("%s: %d files, %s, from %s", entry.name, len(files), _size(files), source)
    trusted = previous.files if previous is not None and previous.source == source else {}
    staged, locked, archives = _fetch_all(entry, files, staging, trusted, from_dir is not None, endpoint)
    record = LockRecord(source, locked, datetime.now(UTC).isoformat(timespec="seconds"), archives)
    _install(staged, models_dir / entry.folder, models_dir / STAGING / f"{entry.name}.ready", previous, record)
    lock = Lock(models_dir)  # read again: another pull may have recorded its entry meanwhile
    lock.records[entry.name] = record
    lock.save()
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s installed in %s", entry.name, models_dir / entry.folder)
    if entry.setup:
        logger.info("%s: %s", entry.name, entry.setup)
    return record


def _already(entry: Entry, models_dir: Path, record: LockRecord) -> LockRecord:
    logger.info("%s is already in %s (%s); `rm %s` to pull it again", entry.name, models_dir, record.source, entry.name)
    return record


def _hub_source(entry: Entry, commits: list[str] | None = None) -> str:
    """The lock's source of a Hub entry: `hf:<repo>@<commit>` per repository, joined by `; `.

    Args:
        entry: The catalogue entry.
        commits: The resolved commit of each repository (default: the catalogue's revisions).
    """
    revisions = commits if commits is not None else [repo.revision or "main" for repo in entry.repos]
    return "; ".join(f"hf:{repo.repo}@{rev}" for repo, rev in zip(entry.repos, revisions, strict=True))


def _plan(entry: Entry, endpoint: str | None, from_dir: Path | None) -> tuple[str, list[Planned]]:
    """What to fetch: `(source for the lock, files)`; every repository is listed before anything is downloaded."""
    if from_dir is not None:
        return f"local:{from_dir.resolve()}", _local_files(entry, from_dir)
    download.ensure_online()
    if entry.repos:
        commits, files = [], []
        for repo in entry.repos:
            commit, found = download.hub_files(entry, repo, endpoint)
            commits.append(commit)
            files += found
        return _hub_source(entry, commits), files
    return _asset_files(entry)


def _asset_files(entry: Entry) -> tuple[str, list[Planned]]:
    """The release assets to download, with their sizes (from the catalogue, else a `HEAD` request)."""
    manual = [asset.path for asset in entry.assets if not asset.url]
    if manual:
        raise ModelsError(
            f"{entry.name}: {', '.join(manual)} cannot be downloaded automatically. Download it from "
            f"{entry.manual}, then run `pull {entry.name} --from <folder holding it>`",
            USAGE,
        )
    files = [
        Planned(
            a.path,
            a.size if a.size is not None else download.remote_size(a.url),
            (("the catalogue", a.sha256),) if a.sha256 else (),
            origin=a.url,
            unpack=a.unpack,
        )
        for a in entry.assets
    ]
    return "; ".join(sorted({a.source for a in entry.assets})), files


def _local_files(entry: Entry, from_dir: Path) -> list[Planned]:
    """The entry's files in a folder laid out like its own: Hub paths matching each repository's patterns, or its assets.

    A repository's files are looked for under its `into`; an asset by its path or its file name.
    """
    if not from_dir.is_dir():
        raise ModelsError(f"--from {from_dir}: no such folder", USAGE)
    pins = entry.pins()
    if entry.repos:
        found: dict[str, Path] = {}
        for repo in entry.repos:
            base = from_dir / repo.into if repo.into else from_dir
            matched = sorted(
                p for p in base.rglob("*")
                if p.is_file() and any(fnmatch.fnmatchcase(p.relative_to(base).as_posix(), pat) for pat in repo.patterns)
            )  # fmt: skip
            if not matched:
                raise ModelsError(f"--from {base}: no file matches {', '.join(repo.patterns)}", USAGE)
            for path in matched:
                found.setdefault(repo.local(path.relative_to(base).as_posix()), path)
        return [
            Planned(rel, path.stat().st_size, _pinned(pins.get(rel)), origin=str(path))
            for rel, path in sorted(found.items())
        ]
    files = []
    for asset in entry.assets:
        candidates = [from_dir / asset.path, from_dir / Path(asset.path).name]
        local = next((c for c in candidates if c.is_file()), None)
        if local is None:
            raise ModelsError(f"--from {from_dir}: {asset.path} is not there", USAGE)
        expected = (("the catalogue", asset.sha256),) if asset.sha256 else ()
        files.append(Planned(asset.path, local.stat().st_size, expected, origin=str(local), unpack=asset.unpack))
    return files


def _pinned(pin: Pin | None) -> tuple[tuple[str, str], ...]:
    return (("the catalogue", pin.sha256),) if pin is not None and pin.sha256 else ()


def _check_space(entry: Entry, models_dir: Path, files: list[Planned], staging: Path) -> None:
    """Refuse to start when the files whose sizes are known cannot fit (an unpacked zip counts twice)."""
    needed = 0
    for file in files:
        if file.size is None:
            continue
        have = next((p.stat().st_size for p in (staging / file.path, _part(staging, file)) if p.is_file()), 0)
        needed += max(file.size - have, 0) * (2 if file.unpack else 1)
    free = shutil.disk_usage(models_dir).free
    if needed > free:
        raise ModelsError(
            f"not enough space for {entry.name} in {models_dir}: it needs {human_size(needed)}, {human_size(free)} are free"
        )


def _fetch_all(
    entry: Entry,
    files: list[Planned],
    staging: Path,
    trusted: dict[str, LockedFile],
    local: bool,
    endpoint: str | None,
) -> tuple[dict[str, Path], dict[str, LockedFile], dict[str, str]]:
    """Fetch and check every file; returns the staged files, what to lock, and the digests of unpacked zips."""
    staged: dict[str, Path] = {}
    locked: dict[str, LockedFile] = {}
    archives: dict[str, str] = {}
    for index, file in enumerate(files, 1):
        # A line per file as well as the client's bars, which only draw on a terminal.
        logger.info("[%d/%d] %s (%s)", index, len(files), file.path, _size([file]))
        if local:
            path = staging / file.path
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file.origin, path)
        elif file.hub is not None:
            path = download.fetch_hub(entry, file, staging, endpoint)
        else:
            done = staging / file.path  # finished and checked by an earlier run that failed later on
            path = done if done.is_file() and not file.unpack else _part(staging, file)
            if path != done:
                download.fetch_url(entry, file, path)
        checked = _check(entry, file, path, trusted.get(file.path))
        if not file.unpack:
            if path != staging / file.path:
                os.replace(path, staging / file.path)
            staged[file.path], locked[file.path] = staging / file.path, checked
            continue
        archives[file.path] = checked.sha256
        for name in _unpack(entry, path, staging / ".unpacked"):
            unpacked = staging / ".unpacked" / name
            staged[name] = unpacked
            locked[name] = LockedFile(unpacked.stat().st_size, sha256_file(unpacked))
    return staged, locked, archives


def _part(staging: Path, file: Planned) -> Path:
    return staging / f"{file.path}.part"


def _check(entry: Entry, file: Planned, path: Path, locked: LockedFile | None) -> LockedFile:
    """Hash the file ourselves and hold it to every digest known for it; a mismatch deletes it."""
    size = path.stat().st_size
    digest = sha256_file(path)
    expected = list(file.expected_sha256) + ([("models.lock", locked.sha256)] if locked is not None else [])
    wrong = next(((who, want) for who, want in expected if want != digest), None)
    if wrong is None and file.git_sha1 and git_blob_sha1(path) != file.git_sha1:
        wrong = ("the Hub's file list (git blob id)", file.git_sha1)
    if wrong is None and file.size is not None and size != file.size:
        wrong = ("the expected size", f"{file.size} bytes, got {size}")
    if wrong is not None:
        path.unlink()
        who, want = wrong
        raise ModelsError(
            f"{entry.name}: {file.path} does not match {who}: SHA-256 {digest}, expected {want}. "
            "The download was deleted and nothing was installed; pull again, and if it repeats the source has changed"
        )
    return LockedFile(size, digest)


def _unpack(entry: Entry, archive_path: Path, into: Path) -> list[str]:
    """Extract a zip's files flat into `into` (by file name only, so no member can land outside it)."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    members: dict[str, zipfile.ZipInfo] = {}
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            name = Path(info.filename).name
            if info.is_dir() or not name or info.filename.startswith("__MACOSX/") or name.startswith("._"):
                continue
            if name in members:
                raise ModelsError(f"{entry.name}: {archive_path.name} holds two files named {name}")
            members[name] = info
        for name, info in members.items():
            with archive.open(info) as src, (into / name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
    archive_path.unlink()
    return sorted(members)


def _install(
    staged: dict[str, Path], target: Path, ready: Path, previous: LockRecord | None, record: LockRecord
) -> None:
    """Move the checked files where the backend loads them, by renames only."""
    if not target.exists():
        shutil.rmtree(ready, ignore_errors=True)
        _move_all(staged, ready)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(ready, target)  # the folder appears complete at once
        return
    _move_all(staged, target)
    for stale in set(previous.files if previous is not None else ()) - set(record.files):
        (target / stale).unlink(missing_ok=True)  # a file of the older pull that the new one no longer has


def _move_all(staged: dict[str, Path], into: Path) -> None:
    for rel, src in staged.items():
        dst = into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def _size(files: list[Planned]) -> str:
    known = [f.size for f in files if f.size is not None]
    if not known:
        return "size unknown"
    return human_size(sum(known)) + (" and more" if len(known) < len(files) else "")


def human_size(n: int) -> str:
    """`4.3 GB`, `512.0 KB`, `12 B` (decimal units, as the Hub shows sizes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
