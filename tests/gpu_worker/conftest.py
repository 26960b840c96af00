"""Fixtures shared by the GPU worker's test packages: the tiny XTTS model folder (built once per session)."""

from pathlib import Path

import pytest

from tests.gpu_worker.tiny_xtts import save_tiny_xtts


@pytest.fixture(scope="session")
def xtts_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`APP_GPU__COQUI_MODEL_DIR` pointing at a tiny random XTTS v2 (`en`, `de`)."""
    return save_tiny_xtts(tmp_path_factory.mktemp("xtts") / "xtts_v2")
