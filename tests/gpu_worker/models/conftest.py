"""Fixtures for the model manager: a fake Hub on localhost, a models folder, the Hub client allowed online."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from .fake_hub import FakeHub


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test session sets `HF_HUB_OFFLINE=1` (tests/conftest.py); these tests talk to their own local Hub."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"
