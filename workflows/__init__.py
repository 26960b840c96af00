"""Deterministic workflow code: task registry, planner, graph compiler, `PipelineWorkflow`."""
