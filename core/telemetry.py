"""OpenTelemetry for every process: traces, metrics (Prometheus text and OTLP) and log context.

Tracing: `temporalio.contrib.opentelemetry.TracingInterceptor` sits on the one client built in
`core.temporal.connect` (workers built from it inherit it) and FastAPI is instrumented, so a job is
one trace: HTTP request → StartWorkflow → RunWorkflow → StartActivity/RunActivity per node.

Metrics (OTel SDK, read by a Prometheus reader and, when configured, pushed over OTLP):
- `myspinbot_stage_duration_seconds` (task, variant) and `myspinbot_stage_failures_total`
  (task, error_type): around every activity execution, by `StageMetricsInterceptor` on both workers.
  The variant is the job's, carried from the workflow to each activity in a header.
- `myspinbot_jobs_started_total` (variant): a `PipelineWorkflow` start the server accepted from one of
  our clients (API submit, resubmit; a reset-retry is not a new start).
- `myspinbot_jobs_{completed,failed,cancelled}_total` (variant): counted by the CPU worker when a
  `PipelineWorkflow` run ends, never while replaying history (a job that ends on a replayed task after
  a worker restart is still counted once, by the worker that produced the final command).

`setup_telemetry` is idempotent: OTel's global providers can be set once per process, so later calls
only add span exporters (tests pass an `InMemorySpanExporter`).
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.client import OutboundInterceptor, StartWorkflowInput, WorkflowHandle
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import PayloadConverter
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from core.settings import TelemetrySettings
from schemas import names

logger = logging.getLogger(__name__)

VARIANT_HEADER = "myspinbot-variant"
_JOB_ENDED_EXTERN = "__myspinbot_job_ended"
_STAGE_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]

_meter = metrics.get_meter("myspinbot")
# Proxies until `setup_telemetry` installs the SDK provider; no-ops in a process that never does.
STAGE_DURATION = _meter.create_histogram(
    "myspinbot_stage_duration_seconds",
    unit="s",
    description="Duration of one activity execution (one node attempt), by task and job variant.",
    explicit_bucket_boundaries_advisory=_STAGE_BUCKETS,
)
STAGE_FAILURES = _meter.create_counter(
    "myspinbot_stage_failures", description="Activity executions that raised, by task and error type."
)
JOBS_STARTED = _meter.create_counter("myspinbot_jobs_started", description="PipelineWorkflow starts accepted.")
HEARTBEAT_PROGRESS = _meter.create_gauge(
    "myspinbot_heartbeat_progress_percent",
    unit="%",
    description="Last progress a running GPU activity heartbeated, by task and stage.",
)
HEARTBEATS = _meter.create_counter("myspinbot_heartbeats", description="Heartbeats sent by GPU activities, by task.")
JOBS_ENDED = {
    outcome: _meter.create_counter(f"myspinbot_jobs_{outcome}", description=f"Jobs whose workflow run {outcome}.")
    for outcome in ("completed", "failed", "cancelled")
}


@dataclass
class _State:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporters: list[SpanExporter] = field(default_factory=list)


_state: _State | None = None
_lock = threading.Lock()


def setup_telemetry(settings: TelemetrySettings, span_exporter: SpanExporter | None = None) -> TracerProvider:
    """Install the global tracer and meter providers once; add `span_exporter` (synchronously) if given."""
    global _state
    with _lock:
        if _state is None:
            _state = _install(settings)
        if span_exporter is not None and span_exporter not in _state.exporters:
            _state.exporters.append(span_exporter)
            _state.tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        return _state.tracer_provider


def _install(settings: TelemetrySettings) -> _State:
    resource = Resource.create({SERVICE_NAME: settings.service_name})
    tracer_provider = TracerProvider(resource=resource)
    readers: list[MetricReader] = [PrometheusMetricReader()]  # registers on prometheus_client's REGISTRY
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = settings.otlp_endpoint.rstrip("/")
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics")))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    logger.info("telemetry: service %s, OTLP %s", settings.service_name, settings.otlp_endpoint or "off")
    return _State(tracer_provider, meter_provider)


def start_metrics_server(settings: TelemetrySettings) -> None:
    """Serve Prometheus text on `:<metrics_port>/metrics` (workers; off when no port is set)."""
    if settings.metrics_port is None:
        return
    from prometheus_client import start_http_server

    start_http_server(settings.metrics_port)
    logger.info("metrics on :%d/metrics", settings.metrics_port)


def temporal_runtime(settings: TelemetrySettings) -> Runtime | None:
    """A Temporal runtime exposing the SDK's own metrics (Prometheus) when `sdk_metrics_address` is set."""
    if not settings.sdk_metrics_address:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=settings.sdk_metrics_address)))


# --- logs ---------------------------------------------------------------------------------------

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [job=%(job_id)s node=%(node_id)s attempt=%(attempt)s]: %(message)s"


class ActivityContextFilter(logging.Filter):
    """Adds `job_id`, `node_id`, `attempt` to every record (`-` outside an activity)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate, never drop."""
        job_id, node_id, attempt = "-", "-", "-"
        if activity.in_activity():
            info = activity.info()
            job_id, node_id, attempt = info.workflow_id or "-", info.activity_id, str(info.attempt)
        record.job_id, record.node_id, record.attempt = job_id, node_id, attempt
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """The workers' log setup: job id, node id and attempt on every line."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ActivityContextFilter())


# --- worker interceptor: stage metrics, variant header, job outcomes --------------------------


def _variant_of(job: Any) -> str:
    request = getattr(job, "request", None)
    return str(getattr(request, "variant", None) or "unknown")


def _job_ended(outcome: str, variant: str) -> None:
    JOBS_ENDED[outcome].add(1, {"variant": variant})


class StageMetricsInterceptor(Interceptor):
    """Worker interceptor: times every activity and counts job outcomes (add to `interceptors=`)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Time and count each activity execution."""
        return _StageActivityInbound(next)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        """Carry the variant to activities; report how each run ended (through a host function)."""
        input.unsafe_extern_functions[_JOB_ENDED_EXTERN] = _job_ended
        return _JobWorkflowInbound


class _StageActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        payload = input.headers.get(VARIANT_HEADER)
        variant = PayloadConverter.default.from_payloads([payload])[0] if payload else "unknown"
        start = time.monotonic()
        try:
            return await super().execute_activity(input)
        except Exception as err:
            error_type = err.type if isinstance(err, ApplicationError) and err.type else type(err).__name__
            STAGE_FAILURES.add(1, {"task": info.activity_type, "error_type": error_type})
            raise
        finally:
            STAGE_DURATION.record(time.monotonic() - start, {"task": info.activity_type, "variant": str(variant)})


class _JobWorkflowInbound(WorkflowInboundInterceptor):
    _variant = "unknown"

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_VariantOutbound(outbound, self))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if workflow.info().workflow_type != names.PIPELINE_WORKFLOW:
            return await super().execute_workflow(input)
        self._variant = _variant_of(input.args[0]) if input.args else "unknown"
        try:
            result = await super().execute_workflow(input)
        except BaseException as err:
            if is_cancelled_exception(err):
                self._report("cancelled")
            elif isinstance(err, FailureError):  # anything else fails the workflow task, not the job
                self._report("failed")
            raise
        self._report("completed")
        return result

    def _report(self, outcome: str) -> None:
        if not workflow.unsafe.is_replaying():
            ended: Callable[[str, str], None] = workflow.extern_functions()[_JOB_ENDED_EXTERN]
            ended(outcome, self._variant)


class _VariantOutbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, inbound: _JobWorkflowInbound) -> None:
        super().__init__(next)
        self._inbound = inbound

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with_variant(input.headers, self._inbound._variant)
        return super().start_activity(input)


def _with_variant(headers: Mapping[str, Payload], variant: str) -> Mapping[str, Payload]:
    return {**headers, VARIANT_HEADER: PayloadConverter.default.to_payloads([variant])[0]}


# --- client interceptor: jobs started ----------------------------------------------------------


class JobsStartedInterceptor(ClientInterceptor):
    """Client interceptor: counts `PipelineWorkflow` starts the server accepted."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        """Wrap `start_workflow`."""
        return _JobsStartedOutbound(next)


class _JobsStartedOutbound(OutboundInterceptor):
    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        handle = await super().start_workflow(input)
        if input.workflow == names.PIPELINE_WORKFLOW:
            JOBS_STARTED.add(1, {"variant": _variant_of(input.args[0]) if input.args else "unknown"})
        return handle


def client_interceptors() -> list[ClientInterceptor]:
    """What `core.temporal.connect` puts on every client: tracing (inherited by workers) and job starts."""
    return [TracingInterceptor(), JobsStartedInterceptor()]
