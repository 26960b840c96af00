"""Telemetry against the real stack: one trace per job, the stage histogram on `/metrics`."""

import logging
import re

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.telemetry import ActivityContextFilter, setup_telemetry
from tests.conftest import wait_for_status


@pytest.mark.integration
async def test_one_job_is_one_trace_and_metrics_show_its_stages(stack_factory, settings) -> None:
    exporter = InMemorySpanExporter()
    assert setup_telemetry(settings.telemetry, span_exporter=exporter) is setup_telemetry(settings.telemetry)
    async with stack_factory() as stack:
        response = await stack.api.post("/api/generate", json={"topic": "traced", "options": {"durationSeconds": 5}})
        job_id = response.json()["jobId"]
        status = await wait_for_status(stack.api, job_id)
        assert status["status"] == "completed", status

        spans = exporter.get_finished_spans()
        start = next(s for s in spans if s.name == "StartWorkflow:PipelineWorkflow")
        in_trace = [s for s in spans if s.context.trace_id == start.context.trace_id]
        names = {s.name for s in in_trace}
        assert "POST /api/generate" in names and "RunWorkflow:PipelineWorkflow" in names, names
        ran = [s for s in in_trace if s.name.startswith("RunActivity:")]
        assert sorted(s.attributes["temporalActivityID"] for s in ran) == sorted(n["id"] for n in status["nodes"])
        assert {s.attributes["temporalWorkflowID"] for s in ran} == {job_id}

        text = (await stack.api.get("/metrics")).text
        assert "myspinbot_stage_duration_seconds_bucket{" in text
        assert 'task="render_video",variant="svd"' in text
        assert "myspinbot_jobs_started_total{" in text and "myspinbot_jobs_completed_total{" in text
        # The in-process GPU worker's heartbeats reach the same registry.
        assert re.search(r'myspinbot_heartbeats_total\{[^}]*task="render_video"', text)
        assert re.search(r'myspinbot_heartbeat_progress_percent\w*\{[^}]*stage="upload"[^}]*task="render_video"', text)
    exporter.clear()


def test_log_records_carry_job_node_and_attempt_placeholders_outside_activities() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert ActivityContextFilter().filter(record)
    assert (record.job_id, record.node_id, record.attempt) == ("-", "-", "-")
