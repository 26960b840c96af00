"""Downloads with `huggingface_hub`: Hub repositories via `hf_hub_download`, release assets via its `http_get`.

Both resume a transfer cut mid-file with a `Range` request while the command runs (the client's
retries). Release assets also resume across runs from their `.part` file; Hub files finished in
an earlier run are kept in the staging folder and not fetched again. The client checks sizes
only: `pull` hashes every file itself. `huggingface_hub` is imported inside the functions: it
comes with the `gpu` extra, and `list`/`verify` and the worker's start-up check do without it.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from gpu_worker.models.catalogue import Entry, HubRepo
from gpu_worker.models.errors import ModelsError


@dataclass(frozen=True)
class Planned:
    """A file `pull` will fetch, and what it must match once fetched."""

    path: str  # inside the entry's folder (for a zip: the archive's name)
    size: int | None = None
    expected_sha256: tuple[tuple[str, str], ...] = ()  # (who says so, digest)
    git_sha1: str = ""  # the Hub's blob id for files not in LFS
    origin: str = ""  # a release asset's URL, the local file `pull --from` copies, or the path in `hub`
    unpack: bool = False
    hub: HubRepo | None = None  # the Hub repository it comes from, at `commit`
    commit: str = ""


def hf_token() -> str | None:
    """`HF_TOKEN` when set; otherwise the client falls back to a saved `hf auth login`."""
    return os.environ.get("HF_TOKEN") or None


def ensure_online() -> None:
    """Fail early, and clearly, when the Hub client was told to stay offline.

    Raises:
        ModelsError: `HF_HUB_OFFLINE` is set.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ModelsError("HF_HUB_OFFLINE is set: `pull` downloads, so run it without HF_HUB_OFFLINE=1")


def hub_files(entry: Entry, hub: HubRepo, endpoint: str | None) -> tuple[str, list[Planned]]:
    """Resolve the repository's revision to a commit and list the files the entry's patterns select.

    Args:
        entry: The catalogue entry (for messages and its pins).
        hub: Its repository.
        endpoint: The Hub's address (None: `HF_ENDPOINT`, else huggingface.co).

    Returns:
        The commit and the files (paths in the entry's folder: under `hub.into`), each with its size and the
        Hub's own digest (LFS SHA-256 or git blob id).

    Raises:
        ModelsError: The Hub cannot be reached, refuses, or a pattern matches no file.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint, token=hf_token())
    try:
        commit = api.model_info(hub.repo, revision=hub.revision or "main").sha
        if not commit:
            raise ModelsError(f"{entry.name}: the Hub at {api.endpoint} did not say which commit {hub.source} is")
        tree = [f for f in api.list_repo_tree(hub.repo, revision=commit, recursive=True) if isinstance(f, RepoFile)]
    except ModelsError:
        raise
    except Exception as err:  # the client's HTTP library raises its own transport errors
        raise download_error(entry, f"the file list of {hub.source}", err, endpoint, hub=hub) from err
    unmatched = [p for p in hub.patterns if not any(fnmatch.fnmatchcase(f.path, p) for f in tree)]
    if unmatched:
        raise ModelsError(
            f"{entry.name}: {hub.repo}@{commit} has no file matching {', '.join(unmatched)}: "
            "the catalogue no longer fits that repository"
        )
    pins = entry.pins()
    files = []
    for f in tree:
        if not any(fnmatch.fnmatchcase(f.path, p) for p in hub.patterns):
            continue
        pin = pins.get(hub.local(f.path))
        expected = [("the catalogue", pin.sha256)] if pin is not None and pin.sha256 else []
        if f.lfs is not None:
            expected.append(("the Hub's file list", f.lfs.sha256))
        git_sha1 = "" if f.lfs is not None else f.blob_id
        files.append(Planned(hub.local(f.path), f.size, tuple(expected), git_sha1, f.path, hub=hub, commit=commit))
    return commit, files


def fetch_hub(entry: Entry, file: Planned, staging: Path, endpoint: str | None) -> Path:
    """Download one Hub file (`hub_files` planned it) to its place in the staging folder; one finished earlier is kept.

    Raises:
        ModelsError: The download failed or was refused.
    """
    from huggingface_hub import hf_hub_download

    hub = file.hub
    if hub is None:
        raise ValueError(f"{file.path} is not a Hub file")
    local_dir = staging / hub.into if hub.into else staging  # the repository's paths land under `into`
    try:
        return Path(
            hf_hub_download(
                hub.repo, file.origin, revision=file.commit, local_dir=local_dir, endpoint=endpoint, token=hf_token()
            )
        )
    except Exception as err:  # the client's HTTP library raises its own transport errors
        raise download_error(entry, file.path, err, endpoint, staging, hub) from err


def remote_size(url: str) -> int | None:
    """The asset's size from a `HEAD` request, or None when the server does not say (then no space check)."""
    try:
        response = httpx.head(url, follow_redirects=True, timeout=30)
        length = response.headers.get("Content-Length")
        return int(length) if response.status_code == 200 and length is not None else None
    except (httpx.HTTPError, ValueError):
        return None


def fetch_url(entry: Entry, file: Planned, part: Path) -> None:
    """Download a release asset into `part`, continuing a `.part` file an earlier run left.

    Raises:
        ModelsError: The download failed.
    """
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get

    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if file.size is not None and have > file.size:
        part.unlink()  # longer than the asset: not a prefix of it
        have = 0
    if file.size is not None and have == file.size:
        return
    try:
        with part.open("ab") as out:
            http_get(file.origin, out, resume_size=have, expected_size=file.size, displayed_filename=file.path)
    except HfHubHTTPError as err:
        if have and err.response is not None and err.response.status_code == 416:
            part.unlink()  # the server cannot continue it (size unknown to us): start again once
            return fetch_url(entry, file, part)
        raise download_error(entry, file.path, err, None, part.parent) from err
    except Exception as err:  # the client's HTTP library raises its own transport errors
        raise download_error(entry, file.path, err, None, part.parent) from err


def download_error(
    entry: Entry,
    what: str,
    err: Exception,
    endpoint: str | None,
    staging: Path | None = None,
    hub: HubRepo | None = None,
) -> ModelsError:
    """A sentence for a failed request: a refusal names the licence to accept; other failures say how to resume."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    response = err.response if isinstance(err, HfHubHTTPError) else None
    status = response.status_code if response is not None else None
    if isinstance(err, GatedRepoError) or status in (401, 403):
        return ModelsError(refused(entry, status, endpoint or constants.ENDPOINT, hub))
    if isinstance(err, OfflineModeIsEnabled):
        return ModelsError("HF_HUB_OFFLINE is set: `pull` downloads, so run it without HF_HUB_OFFLINE=1")
    if isinstance(err, RevisionNotFoundError | RepositoryNotFoundError):
        return ModelsError(f"{entry.name}: {what} is not on the Hub ({status}): the catalogue no longer fits it")
    kept = f"; files already downloaded are kept in {staging}" if staging is not None else ""
    return ModelsError(
        f"{entry.name}: downloading {what} failed: {type(err).__name__}: {err}{kept}. "
        "Run the same pull again to continue"
    )


def refused(entry: Entry, status: int | None, endpoint: str, hub: HubRepo | None = None) -> str:
    """What to do when the Hub answers 401/403 (for `hub`, else the entry's first repository): accept, pass a token."""
    repo = hub.repo if hub is not None else entry.repos[0].repo if entry.repos else entry.name
    why = "is gated" if entry.gated else "needs an account with access (it may have become gated)"
    token = (
        " HF_TOKEN is set, but its account has not been granted access yet." if hf_token() else " No HF_TOKEN is set."
    )
    return (
        f"{entry.name}: the Hub refused the download ({status or 'gated'}). {repo} {why}: sign in at "
        f"{endpoint.rstrip('/')}/{repo}, accept its licence ({entry.license}), then set HF_TOKEN to an access "
        f"token of that account and pull again.{token}"
    )
