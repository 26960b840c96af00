"""Replay: golden histories of both graph shapes replay with the current code; a changed workflow does not.

The golden histories in `tests/histories/` are real runs of this test module's capture tests.
Recapture them (after a deliberate change guarded by `workflow.patched()`, or for a new graph
shape) with

    RECAPTURE_HISTORIES=1 python -m pytest tests/workflows/test_replay.py -k capture

which runs one job of each shape on the real stack and writes `tests/histories/<graph_id>.json`
with `WorkflowHistory.to_json()`. Keep the previous files under another name (e.g.
`generate_v1.before-<change>.json`): every `*.json` there is replayed, so histories from before
a change keep proving that the patched code still replays them. `*.with-voices-and-rendering.json` are
the shapes since issue 11 (chosen voice id, the writer's pace in the script node, `Video.rendering`,
the typed render plan), recaptured after the `cancel-cpu-nodes-at-once` patch. `generate_v1.reviewed.json`
is a job with `options.review` whose script was edited, then approved (the `reviewScript` Update and the
review's timer); recapture it with `-k capture_a_reviewed`.
"""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory

from ops import replay
from schemas import names
from schemas.tasks import PipelineInput, PipelineResult
from workflows.pipeline import PipelineWorkflow

HISTORIES = Path(__file__).parent.parent / "histories"
GOLDEN = {
    "generate_v1": HISTORIES / "generate_v1.json",
    "train_and_generate_v1": HISTORIES / "train_and_generate_v1.json",
}
REVIEWED = HISTORIES / "generate_v1.reviewed.json"
ROOT = Path(__file__).parents[2]


@workflow.defn(name=names.PIPELINE_WORKFLOW)
class AuditedPipelineWorkflow(PipelineWorkflow):
    """A deliberately incompatible change: an extra activity before the graph, without `patched()`."""

    @workflow.run
    async def run(self, job: PipelineInput) -> PipelineResult:
        """Record the start, then run the graph."""
        await workflow.execute_activity(
            "audit.recordStart", job.job_id, activity_id="audit", start_to_close_timeout=timedelta(seconds=5)
        )
        return await super().run(job)


@workflow.defn(name=names.PIPELINE_WORKFLOW, sandboxed=True)
class SandboxedPipelineWorkflow(PipelineWorkflow):
    """`PipelineWorkflow` as the sandbox runs it (workers run it unsandboxed: see its definition)."""

    @workflow.run
    async def run(self, job: PipelineInput) -> PipelineResult:
        """The same run."""
        return await super().run(job)


def golden(graph_id: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(graph_id, GOLDEN[graph_id].read_text())


async def test_golden_histories_replay_with_the_current_code(capsys) -> None:
    assert all(path.exists() for path in GOLDEN.values()), "capture them: see this module's docstring"
    paths = sorted(HISTORIES.glob("*.json"))
    assert await replay.run(["--file", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"ok {p}" for p in paths]


async def test_every_golden_job_history_replays_inside_the_sandbox() -> None:
    """The sandbox would refuse a non-deterministic call (the clock, randomness, I/O) on these paths."""
    assert not workflow._Definition.must_from_class(PipelineWorkflow).sandboxed
    assert workflow._Definition.must_from_class(SandboxedPipelineWorkflow).sandboxed
    replayer = replay._replayer([SandboxedPipelineWorkflow])
    jobs = [p for p in sorted(HISTORIES.glob("*.json")) if json.loads(p.read_text())["events"][0]
            ["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] == names.PIPELINE_WORKFLOW]  # fmt: skip
    assert len(jobs) >= 5
    for path in jobs:
        await replayer.replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))


@pytest.mark.parametrize("graph_id", sorted(GOLDEN))
async def test_a_changed_workflow_is_reported_nondeterministic(graph_id, capsys) -> None:
    with pytest.raises(workflow.NondeterminismError):
        await replay._replayer([AuditedPipelineWorkflow]).replay_workflow(golden(graph_id))

    code = await replay.run(["--file", str(GOLDEN[graph_id])], workflows=[AuditedPipelineWorkflow])
    assert code == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"NONDETERMINISTIC {GOLDEN[graph_id]}: ")
    assert "audit" in line and "script" in line, line


def _tampered(tmp_path: Path) -> Path:
    """The generate history as if an older code had called the `select` node `choose`."""
    data = json.loads(GOLDEN["generate_v1"].read_text())
    for event in data["events"]:
        attrs = event.get("activityTaskScheduledEventAttributes")
        if attrs and attrs["activityId"] == "select":
            attrs["activityId"] = "choose"
    path = tmp_path / "generate_v1_renamed_node.json"
    path.write_text(json.dumps(data))
    return path


def test_the_replay_command_exits_0_on_good_histories_and_1_on_a_mismatch(tmp_path) -> None:
    def command(*paths: Path) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "ops.replay"] + [a for p in paths for a in ("--file", str(p))]
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    good = command(*GOLDEN.values())
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines() == [f"ok {p}" for p in GOLDEN.values()]

    tampered = _tampered(tmp_path)
    bad = command(GOLDEN["generate_v1"], tampered)
    assert bad.returncode == 1, bad.stderr
    ok, mismatch = bad.stdout.splitlines()
    assert ok == f"ok {GOLDEN['generate_v1']}"
    assert mismatch.startswith(f"NONDETERMINISTIC {tampered}: ") and "choose" in mismatch and "select" in mismatch
    assert "1 failed" in bad.stderr


async def _run_generate(stack, _tmp_path: Path) -> str:
    body = {"topic": "why leaves fall", "variant": "sadtalker", "options": {"durationSeconds": 5}}
    response = await stack.api.post("/api/generate", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


async def _run_train_and_generate(stack, tmp_path: Path) -> str:
    from tests.conftest import astronaut_png
    from tests.workflows.test_pipeline_e2e import _tiny_wav, _upload

    image = await _upload(stack.api, "face.png", astronaut_png(tmp_path / "face.png").read_bytes())
    clip = await _upload(stack.api, "voice.wav", _tiny_wav())
    body = {"topic": "t", "images": [image], "audio": [clip], "profileName": f"golden-{tmp_path.name}", "consent": True}
    response = await stack.api.post("/api/train", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


@pytest.mark.integration
@pytest.mark.parametrize("graph_id", sorted(GOLDEN))
async def test_capture_a_live_job_and_replay_it_by_id_and_by_query(stack_factory, tmp_path, graph_id, capsys) -> None:
    from tests.conftest import wait_for_status
    from tests.workflows.test_pipeline_e2e import overlapping_gpu_stubs

    # generate_v1 renders for real; training for real would take minutes, so its GPU nodes are stubs.
    stubs = overlapping_gpu_stubs(0.1) if graph_id == "train_and_generate_v1" else None
    start = _run_generate if graph_id == "generate_v1" else _run_train_and_generate
    async with stack_factory(gpu_activities=stubs) as stack:
        job_id = await start(stack, tmp_path)
        status = await wait_for_status(stack.api, job_id)
        assert status["status"] == "completed", status
        history = await stack.client.get_workflow_handle(job_id).fetch_history()
        assert json.loads(json.dumps(history.to_json_dict()))  # serialisable as the golden files are
        if os.environ.get("RECAPTURE_HISTORIES") == "1":
            GOLDEN[graph_id].write_text(history.to_json())

        assert await replay.run(["--job", job_id]) == 0
        assert await replay.run(["--query", f"WorkflowId='{job_id}' AND ExecutionStatus='Completed'"]) == 0
        assert capsys.readouterr().out.splitlines() == [f"ok {job_id} run {status['runId']}"] * 2


@pytest.mark.integration
async def test_capture_a_reviewed_job_and_replay_it(stack_factory, capsys) -> None:
    from tests.conftest import wait_for_status
    from tests.workflows.test_review import REVIEWED as BODY
    from tests.workflows.test_review import narrative_fitting, submit, wait_for_review

    assert REVIEWED.exists(), "capture it: see this module's docstring"
    async with stack_factory() as stack:
        job_id = await submit(stack.api, BODY)
        view = await wait_for_review(stack.api, job_id)
        edit = {"action": "edit", "narrative": narrative_fitting(view)}
        assert (await stack.api.post(f"/api/jobs/{job_id}/script", json=edit)).status_code == 200
        assert (await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "approve"})).status_code == 200
        status = await wait_for_status(stack.api, job_id, timeout=180)
        assert status["status"] == "completed", status
        if os.environ.get("RECAPTURE_HISTORIES") == "1":
            history = await stack.client.get_workflow_handle(job_id).fetch_history()
            REVIEWED.write_text(history.to_json())
        assert await replay.run(["--job", job_id]) == 0
        assert capsys.readouterr().out.splitlines() == [f"ok {job_id} run {status['runId']}"]
