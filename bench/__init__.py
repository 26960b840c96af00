"""Benchmarks that print tables (`python -m bench.orchestration`, `python -m bench.status`); never tests."""
