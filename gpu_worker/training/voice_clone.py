"""The cloned half of `train_voice`: a speaker's XTTS conditioning from their clips, stored beside `voice.json`.

The conditioning (GPT conditioning latents + speaker embedding, a few kilobytes) is biometric
data: it is kept only under `profiles/<profile id>/voice/`, which erasing the profile deletes. It
is stored as a NumPy `.npz` with a format version (read back with `allow_pickle=False`, so a
stored file can never run code) and named in `voice.json` by a `clone` entry
`{engine, uri, format}`; a `voice.json` without one is a profile trained before cloning.
"""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.storage import parse_s3_uri
from gpu_worker.media.speech import ClonedVoice
from gpu_worker.training.audio import decode
from gpu_worker.training.inputs import Store, fetch
from schemas.names import ARTIFACTS_BUCKET

logger = logging.getLogger(__name__)

CLONE_FORMAT = 1  # of the `.npz`: arrays `format`, `engine`, `gpt_latents`, `speaker_embedding`
CLONE_FILE = "xtts-conditioning.npz"


class VoiceCloner(Protocol):
    """A speech backend that computes a cloned voice from clips (`gpu_worker.backends.xtts.XttsSpeech`)."""

    name: str
    sample_rate: int  # of the clips `condition` takes

    def condition(self, clips: list[np.ndarray], rate: int) -> ClonedVoice:
        """The cloned voice of the speaker of `clips` (mono float samples at `rate`)."""
        ...


def clone_uri(profile_id: str) -> str:
    """`s3://artifacts/profiles/<profile id>/voice/xtts-conditioning.npz`."""
    return f"s3://{ARTIFACTS_BUCKET}/profiles/{profile_id}/voice/{CLONE_FILE}"


def clone_voice(
    cloner: VoiceCloner, store: Store, profile_id: str, clips: list[dict[str, Any]], work_dir: Path
) -> dict[str, Any]:
    """Compute the profile's cloned voice from its clips and upload it.

    Every clip is decoded again at the cloner's rate and scaled by the gain its analysis measured,
    so loud and quiet recordings condition the model alike (speech at -20 dBFS RMS).

    Args:
        cloner: The configured cloning backend.
        store: Object storage.
        profile_id: Whose voice it is.
        clips: The analysed clips (`uri` and `gain_db` of each), all of which passed the clip checks.
        work_dir: Scratch directory.

    Returns:
        The `clone` entry for `voice.json`.
    """
    samples = []
    for index, clip in enumerate(clips):
        uri = clip["uri"]
        decoded = decode(fetch(store, uri, work_dir / "clone", index), uri, rate=cloner.sample_rate)
        samples.append(np.clip(decoded * np.float32(10 ** (clip["gain_db"] / 20)), -1.0, 1.0))
    voice = cloner.condition(samples, cloner.sample_rate)
    uri = save_clone(store, clone_uri(profile_id), voice)
    logger.info("cloned voice of profile %s (%s, %d clips): %s", profile_id, voice.engine, len(clips), uri)
    return {"engine": voice.engine, "uri": uri, "format": CLONE_FORMAT}


def save_clone(store: Store, uri: str, voice: ClonedVoice) -> str:
    """Upload a cloned voice as a versioned `.npz`; returns its URI."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        format=np.array(CLONE_FORMAT),
        engine=np.array(voice.engine),
        gpt_latents=voice.gpt_latents.astype(np.float32),
        speaker_embedding=voice.speaker_embedding.astype(np.float32),
    )
    with tempfile.TemporaryDirectory(prefix="clone-") as tmp:
        local = Path(tmp) / CLONE_FILE
        local.write_bytes(buffer.getvalue())
        return store.put_file(ARTIFACTS_BUCKET, parse_s3_uri(uri)[1], local)[0]


def load_clone(store: Store, uri: str) -> ClonedVoice:
    """Read a cloned voice back.

    Raises:
        ValueError: The object is not a cloned voice of a format this code reads.
    """
    with tempfile.TemporaryDirectory(prefix="clone-") as tmp:
        local = store.download(uri, Path(tmp) / CLONE_FILE)
        try:
            with np.load(local, allow_pickle=False) as data:
                version = int(data["format"])
                if version != CLONE_FORMAT:
                    raise ValueError(f"format {version}, this worker reads format {CLONE_FORMAT}")
                return ClonedVoice(
                    engine=str(data["engine"]),
                    gpt_latents=np.array(data["gpt_latents"], np.float32),
                    speaker_embedding=np.array(data["speaker_embedding"], np.float32),
                )
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{uri} is not a readable cloned voice: {err}") from err
