"""Contracts shared by every MySpinBot process: pydantic models and names only."""

from schemas.api import GenerateRequest, JobAccepted, JobRecord, JobStatus, NodeStatus, TrainRequest
from schemas.capabilities import CapabilitiesManifest, WorkerManifest
from schemas.plan import GraphSpec, PlanEdge, PlanNode
from schemas.tasks import JobRequest, PipelineInput, PipelineResult

__all__ = [
    "CapabilitiesManifest",
    "GenerateRequest",
    "GraphSpec",
    "JobAccepted",
    "JobRecord",
    "JobRequest",
    "JobStatus",
    "NodeStatus",
    "PipelineInput",
    "PipelineResult",
    "PlanEdge",
    "PlanNode",
    "TrainRequest",
    "WorkerManifest",
]
