"""The GPU queue's training tasks (`train_lora`, `train_voice`) as activities: sync, heartbeating, resumable, bad input non-retryable.

Register on the GPU worker (sync activities need a `ThreadPoolExecutor`):

    warm_up()  # import torch/diffusers before the first task, so a resumed attempt starts at once
    training = TrainingActivities(
        store, settings.gpu.work_dir, default_components_factory(settings.gpu.models_dir), voice_cloner=voice_cloner(backends.speech)
    )
    Worker(
        ...,
        activities=[training.train_lora, training.train_voice],
        activity_executor=executor,
        max_heartbeat_throttle_interval=timedelta(seconds=2),
    )

and advertise `presets_available(settings.gpu.models_dir)` as the manifest's `training_presets`.
The SDK sends heartbeats to the server at most every 0.8 × heartbeat timeout by default (24 s
for 30 s), and a cancellation only arrives in a heartbeat's reply: the 2 s throttle makes
cancellation prompt and keeps the server's copy of the last checkpoint fresh.
Cancellation is cooperative (`no_thread_cancel_exception=True`): the SDK must not raise
`CancelledError` at an arbitrary line, because the trainers first upload a final checkpoint.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from gpu_worker.progress import Heartbeater
from gpu_worker.training.checkpoints import checkpoint_prefix
from gpu_worker.training.components import sd_model_dir, training_available
from gpu_worker.training.errors import InvalidInputError, MissingWeightsError
from gpu_worker.training.inputs import Store
from gpu_worker.training.lora import PRESETS, ComponentsFactory, LoraTrainer
from gpu_worker.training.voice import train_voice
from gpu_worker.training.voice_clone import VoiceCloner
from schemas import names
from schemas.names import ARTIFACTS_BUCKET
from schemas.tasks import TrainLoraInput, TrainLoraResult, TrainVoiceInput, TrainVoiceResult

logger = logging.getLogger(__name__)


def presets_available(models_dir: Path | None) -> list[str]:
    """Training presets this worker can run, preferred first (the planner takes the first).

    Args:
        models_dir: The configured models directory, or None.

    Returns:
        `["standard", "tiny", "tiny-long"]` with a local Stable Diffusion, else the tiny ones; none
        without the `gpu` extra.
    """
    if not training_available():
        return []
    has_weights = sd_model_dir(models_dir) is not None
    return [name for name, preset in PRESETS.items() if has_weights or not preset.needs_weights]


def _resume_from() -> dict[str, Any] | None:
    """The previous attempt's last heartbeat details, if it sent any."""
    details = activity.info().heartbeat_details
    first = details[0] if details else None
    return first if isinstance(first, dict) else None


class TrainingActivities:
    """`train_lora` and `train_voice` with their storage, scratch space and base-model factory injected."""

    def __init__(
        self,
        store: Store,
        work_dir: Path,
        components_factory: ComponentsFactory,
        heartbeat_interval: float = 0.0,
        voice_cloner: VoiceCloner | None = None,
    ) -> None:
        """Keep the clients the activities use.

        Args:
            store: Object storage (`core.storage.ObjectStore` or a fake).
            work_dir: Where each attempt gets a scratch directory (removed when it ends).
            components_factory: Preset → base model components (`default_components_factory(models_dir)`).
            heartbeat_interval: Minimum seconds between heartbeats; 0 hands every step to the SDK,
                which throttles what reaches the server.
            voice_cloner: The configured XTTS backend: `train_voice` then also clones the voice.
        """
        self._store = store
        self._work_dir = work_dir
        self._lora = LoraTrainer(components_factory)
        self._heartbeat_interval = heartbeat_interval
        self._voice_cloner = voice_cloner

    @contextmanager
    def _attempt(self, job_id: str, node_id: str) -> Iterator[tuple[Path, Heartbeater]]:
        """Scratch directory + heartbeats for one attempt; known input and weight errors become non-retryable."""
        self._work_dir.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryDirectory(prefix=f"{job_id}-{node_id}-", dir=self._work_dir) as scratch,
            Heartbeater(min_interval=self._heartbeat_interval) as heartbeater,
        ):
            try:
                yield Path(scratch), heartbeater
            except InvalidInputError as err:
                raise ApplicationError(
                    str(err), self._produced(job_id, node_id), type=names.ERR_INVALID_INPUT, non_retryable=True
                ) from err
            except MissingWeightsError as err:
                raise ApplicationError(
                    str(err), self._produced(job_id, node_id), type=names.ERR_MISSING_WEIGHTS, non_retryable=True
                ) from err

    def _produced(self, job_id: str, node_id: str) -> list[dict[str, str]]:
        """The checkpoints already uploaded, as `Asset` dicts for the workflow's partial-output path."""
        try:
            keys = self._store.list_keys(ARTIFACTS_BUCKET, checkpoint_prefix(job_id, node_id))
        except Exception:  # the activity is failing anyway: report the input error, not the listing error
            logger.warning("could not list the checkpoints of %s/%s", job_id, node_id, exc_info=True)
            return []
        return [{"kind": "checkpoint", "uri": f"s3://{ARTIFACTS_BUCKET}/{key}"} for key in keys]

    @activity.defn(name=names.TRAIN_LORA, no_thread_cancel_exception=True)
    def train_lora(self, inp: TrainLoraInput) -> TrainLoraResult:
        """Train the profile's LoRA, resuming from the newest checkpoint of this job node.

        Args:
            inp: Job, node, profile, image URIs and preset.

        Returns:
            The LoRA weights' URI, steps and final loss.
        """
        with self._attempt(inp.job_id, inp.node_id) as (scratch, heartbeater):
            return self._lora.train(inp, self._store, scratch, heartbeater, _resume_from())

    @activity.defn(name=names.TRAIN_VOICE, no_thread_cancel_exception=True)
    def train_voice(self, inp: TrainVoiceInput) -> TrainVoiceResult:
        """Fit the profile's voice from its clips (and clone it), skipping clips a previous attempt measured.

        Args:
            inp: Job, node, profile and clip URIs.

        Returns:
            The `voice.json` URI.
        """
        with self._attempt(inp.job_id, inp.node_id) as (scratch, heartbeater):
            return train_voice(inp, self._store, scratch, heartbeater, _resume_from(), self._voice_cloner)
