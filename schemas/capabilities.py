"""What workers can do: each worker's manifest and the per-plane intersection the planner uses."""

from datetime import datetime

from pydantic import Field

from schemas.base import Contract
from schemas.plan import Plane


class WorkerManifest(Contract):
    """What one worker process advertises (upserted into `worker_capabilities`)."""

    worker_id: str
    plane: Plane
    task_queue: str
    tasks: list[str]
    variants: list[str] = Field(default_factory=list)
    runtimes: dict[str, list[str]] = Field(default_factory=dict)
    training_presets: list[str] = Field(default_factory=list)
    resolutions: list[str] = Field(default_factory=list)
    max_duration_seconds: float | None = None
    llm_mode: str | None = None
    last_seen: datetime | None = None


class PlaneCapabilities(Contract):
    """What every live worker of one plane has in common."""

    task_queue: str
    workers: int
    tasks: list[str]
    variants: list[str] = Field(default_factory=list)
    runtimes: dict[str, list[str]] = Field(default_factory=dict)
    training_presets: list[str] = Field(default_factory=list)
    llm_mode: str | None = None


class Constraints(Contract):
    """Limits a request must fit (seed §4.1 `constraints`)."""

    max_duration_seconds: float
    resolutions: list[str]


class CapabilitiesManifest(Contract):
    """The live manifest (seed §4.1 shape with planes `cpu`/`gpu`); a plane is None with no live worker."""

    cpu: PlaneCapabilities | None
    gpu: PlaneCapabilities | None
    constraints: Constraints


def intersect(manifests: list[WorkerManifest]) -> PlaneCapabilities | None:
    """What every worker in `manifests` (one plane, one queue) can do, or None when empty."""
    if not manifests:
        return None

    def common(values: list[list[str]]) -> list[str]:
        first, *rest = values
        return [v for v in first if all(v in other for other in rest)]

    stages = common([sorted(m.runtimes) for m in manifests])
    llm_modes = {m.llm_mode for m in manifests}
    return PlaneCapabilities(
        task_queue=manifests[0].task_queue,
        workers=len(manifests),
        tasks=common([m.tasks for m in manifests]),
        variants=common([m.variants for m in manifests]),
        runtimes={s: common([m.runtimes[s] for m in manifests]) for s in stages},
        training_presets=common([m.training_presets for m in manifests]),
        llm_mode=llm_modes.pop() if len(llm_modes) == 1 else "mixed",
    )


def constraints_of(manifests: list[WorkerManifest]) -> Constraints:
    """The tightest duration and the shared resolutions of the GPU workers."""
    durations = [m.max_duration_seconds for m in manifests if m.max_duration_seconds]
    resolution_sets = [m.resolutions for m in manifests if m.resolutions]
    resolutions = [r for r in resolution_sets[0] if all(r in s for s in resolution_sets)] if resolution_sets else []
    return Constraints(max_duration_seconds=min(durations) if durations else 0, resolutions=resolutions)
