"""The model manager: the catalogue of backend weights, `models.lock`, and `python -m gpu_worker.models`.

The one CLI inside a runtime package (ARCHITECTURE.md, "Tool packages"): the worker reads the
same catalogue and lock at start-up to decide which model backends it has.
"""
