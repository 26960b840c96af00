"""Write the JSON Schema of every public contract to `schemas/json/` (`python -m schemas.export`)."""

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas import api, capabilities, plan, tasks

JSON_DIR = Path(__file__).parent / "json"

EXPORTED: dict[str, type[BaseModel]] = {
    "generate-request": api.GenerateRequest,
    "train-request": api.TrainRequest,
    "job-accepted": api.JobAccepted,
    "job-status": api.JobStatus,
    "job-record": api.JobRecord,
    "jobs-page": api.JobsPublic,
    "uploads": api.UploadsPublic,
    "profiles": api.ProfilesPublic,
    "preset": api.PresetIn,
    "presets": api.PresetsPublic,
    "batch-request": api.BatchRequest,
    "batch-accepted": api.BatchAccepted,
    "batch": api.BatchPublic,
    "batch-input": tasks.BatchInput,
    "graph-spec": plan.GraphSpec,
    "capabilities-manifest": capabilities.CapabilitiesManifest,
    "worker-manifest": capabilities.WorkerManifest,
    "script": tasks.Script,
    "pipeline-input": tasks.PipelineInput,
    "pipeline-result": tasks.PipelineResult,
    "script-input": tasks.ScriptInput,
    "script-result": tasks.ScriptResult,
    "profile-input": tasks.ProfileInput,
    "profile-ref": tasks.ProfileRef,
    "train-lora-input": tasks.TrainLoraInput,
    "train-lora-result": tasks.TrainLoraResult,
    "train-voice-input": tasks.TrainVoiceInput,
    "train-voice-result": tasks.TrainVoiceResult,
    "select-input": tasks.SelectInput,
    "render-plan": tasks.RenderPlan,
    "render-input": tasks.RenderInput,
    "render-result": tasks.RenderResult,
    "register-input": tasks.RegisterInput,
    "register-result": tasks.RegisterResult,
}


def render_all() -> dict[str, str]:
    """File name → JSON text, for every exported model (by alias, as it crosses the wire)."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(by_alias=True), indent=2, sort_keys=True) + "\n"
        for name, model in EXPORTED.items()
    }


def main() -> int:
    """Rewrite `schemas/json/` and drop files of contracts that no longer exist."""
    JSON_DIR.mkdir(exist_ok=True)
    files = render_all()
    for stale in {p.name for p in JSON_DIR.glob("*.schema.json")} - set(files):
        (JSON_DIR / stale).unlink()
    for name, text in files.items():
        (JSON_DIR / name).write_text(text)
    sys.stdout.write(f"wrote {len(files)} schemas to {JSON_DIR}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
