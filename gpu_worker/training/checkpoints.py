"""Where training checkpoints live in object storage and which one a retried attempt resumes from."""

from __future__ import annotations

import logging
import re
from typing import Any

from core.storage import parse_s3_uri, s3_uri
from gpu_worker.training.inputs import Store
from schemas.names import ARTIFACTS_BUCKET

logger = logging.getLogger(__name__)

_STEP_NAME = re.compile(r"step-(\d+)\.(pt|json)$")


def checkpoint_prefix(job_id: str, node_id: str) -> str:
    """Key prefix of one node's checkpoints: `jobs/<job id>/<node id>/checkpoints/`."""
    return f"jobs/{job_id}/{node_id}/checkpoints/"


def checkpoint_uri(job_id: str, node_id: str, step: int, ext: str = "pt") -> str:
    """`s3://artifacts/jobs/<job id>/<node id>/checkpoints/step-<step>.<ext>`."""
    return s3_uri(ARTIFACTS_BUCKET, f"{checkpoint_prefix(job_id, node_id)}step-{step}.{ext}")


def step_of(uri_or_key: str) -> int | None:
    """The step number in a checkpoint name, or None if it is not one."""
    match = _STEP_NAME.search(uri_or_key)
    return int(match.group(1)) if match else None


def resume_candidates(store: Store, job_id: str, node_id: str, resume_from: Any, ext: str = "pt") -> list[str]:
    """Checkpoints this node may resume from, newest step first.

    The heartbeat details name the last checkpoint the previous attempt reported, but the SDK
    throttles heartbeats to the server, so a killed worker's details can lag behind what it
    uploaded. Listing the node's prefix catches those, so both sources are merged and the
    newest wins. URIs outside this node's prefix are ignored.

    Args:
        store: Object storage.
        job_id: The job (workflow) id.
        node_id: The graph node id.
        resume_from: The previous attempt's heartbeat details (a dict), or None.
        ext: Checkpoint file extension.

    Returns:
        Checkpoint URIs, highest step first.
    """
    prefix = checkpoint_prefix(job_id, node_id)
    found: dict[str, int] = {}
    for key in store.list_keys(ARTIFACTS_BUCKET, prefix):
        step = step_of(key)
        if step is not None and key.endswith(f".{ext}"):
            found[s3_uri(ARTIFACTS_BUCKET, key)] = step
    hinted = resume_from.get("checkpoint_uri") if isinstance(resume_from, dict) else None
    if isinstance(hinted, str) and hinted not in found:
        try:
            bucket, key = parse_s3_uri(hinted)
        except ValueError:
            bucket, key = "", ""
        step = step_of(key)
        if bucket == ARTIFACTS_BUCKET and key.startswith(prefix) and step is not None and store.exists(hinted):
            found[hinted] = step
        else:
            logger.warning("ignoring heartbeat checkpoint %r: not a stored checkpoint of %s", hinted, prefix)
    return sorted(found, key=lambda uri: found[uri], reverse=True)
