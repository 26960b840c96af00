"""What workers can do: each worker's manifest and the per-plane intersection the planner uses."""

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.base import Contract
from schemas.plan import Plane

Commercial = Literal["yes", "no", "unclear"]
# A stage's runtimes per variant: `{"sadtalker": {"speech": ["piper:en_US-joe-medium", "espeak-ng"], ...}}`.
VariantRuntimes = dict[str, dict[str, list[str]]]
ANY_LANGUAGE = "*"  # in `languages`: the script writer can write any language (an LLM)


class VoiceInfo(Contract):
    """One voice a GPU worker can speak with (`GET /api/capabilities` → `gpu.voices`)."""

    id: str  # what a request's `voice` names, e.g. `piper:en_US-joe-medium`, `espeak-ng:de`
    language: str  # BCP-47, lower case (`en-us`, `de`, `pt-br`)
    engine: str  # the speech runtime id that speaks it (`piper`, `espeak-ng`, `coqui`)
    license: str
    commercial: Commercial
    words_per_minute: float  # measured pace at the default speed; the duration estimate uses it
    captions: bool = True  # whether the caption font can draw this language's script


class WorkerManifest(Contract):
    """What one worker process advertises (upserted into `worker_capabilities`)."""

    worker_id: str
    plane: Plane
    task_queue: str
    tasks: list[str]
    variants: list[str] = Field(default_factory=list)
    runtimes: VariantRuntimes = Field(default_factory=dict)
    voices: list[VoiceInfo] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)  # CPU: what the script writer can write (`*`: any)
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
    runtimes: VariantRuntimes = Field(default_factory=dict)
    voices: list[VoiceInfo] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    training_presets: list[str] = Field(default_factory=list)
    llm_mode: str | None = None


MIN_DURATION_SECONDS = 5.0


class Constraints(Contract):
    """Limits a request must fit (seed §4.1 `constraints`)."""

    max_duration_seconds: float
    resolutions: list[str]
    min_duration_seconds: float = MIN_DURATION_SECONDS


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

    variants = common([m.variants for m in manifests])
    runtimes: VariantRuntimes = {}
    for variant in variants:
        stages = common([sorted(m.runtimes.get(variant, {})) for m in manifests])
        runtimes[variant] = {s: common([m.runtimes[variant][s] for m in manifests]) for s in stages}
    voice_ids = common([[v.id for v in m.voices] for m in manifests])
    llm_modes = {m.llm_mode for m in manifests}
    return PlaneCapabilities(
        task_queue=manifests[0].task_queue,
        workers=len(manifests),
        tasks=common([m.tasks for m in manifests]),
        variants=variants,
        runtimes=runtimes,
        voices=[v for v in manifests[0].voices if v.id in voice_ids],
        languages=_common_languages([m.languages for m in manifests]),
        training_presets=common([m.training_presets for m in manifests]),
        llm_mode=llm_modes.pop() if len(llm_modes) == 1 else "mixed",
    )


def _common_languages(per_worker: list[list[str]]) -> list[str]:
    """Languages every worker has; `*` (any) gives way to a worker's explicit list."""
    explicit = [langs for langs in per_worker if ANY_LANGUAGE not in langs]
    if not explicit:
        return [ANY_LANGUAGE] if per_worker and all(per_worker) else []
    first, *rest = explicit
    return [lang for lang in first if all(lang in other for other in rest)]


def constraints_of(manifests: list[WorkerManifest]) -> Constraints:
    """The tightest duration and the shared resolutions of the GPU workers."""
    durations = [m.max_duration_seconds for m in manifests if m.max_duration_seconds]
    resolution_sets = [m.resolutions for m in manifests if m.resolutions]
    resolutions = [r for r in resolution_sets[0] if all(r in s for s in resolution_sets)] if resolution_sets else []
    return Constraints(max_duration_seconds=min(durations) if durations else 0, resolutions=resolutions)
