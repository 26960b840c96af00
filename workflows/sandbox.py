"""The workflow sandbox settings every worker and replayer must share."""

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# LangGraph runs inside the workflow; these libraries are deterministic for our use (no I/O:
# no checkpointer, no tracing) but import modules the sandbox forbids, so they are loaded
# once from the host instead of re-imported per workflow run. `PipelineWorkflow` itself runs
# outside the sandbox (see its definition); `BatchWorkflow` and the tests' sandboxed replay of
# every job history run inside it with these settings.
PASSTHROUGH_MODULES = (
    "langgraph",
    "langchain_core",
    "langsmith",
    "requests",
    "urllib3",
    "httpx",
    "pydantic",
    "pydantic_core",
    "typing_extensions",
    "schemas",
    "workflows",
    "opentelemetry",  # the tracing interceptor's workflow side (temporalio.contrib.opentelemetry)
)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner with LangGraph passed through."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )
