"""Benchmarks run inside the test process: each must leave its settings behind, and its log levels are put back."""

import logging
import os
from collections.abc import Iterator

import pytest


def _app_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key.startswith("APP_")}


@pytest.fixture(autouse=True)
def _leaves_no_trace() -> Iterator[None]:
    env = _app_env()
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    levels = {logger: logger.level for logger in loggers}
    yield
    for logger, level in levels.items():
        logger.setLevel(level)
    assert _app_env() == env, "the benchmark left APP_* variables pointing at its stopped servers"
