"""`python -m gpu_worker.models`: list, verify, rm, exit statuses, and whole runs as a subprocess (HF_ENDPOINT, Ctrl-C)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu_worker.models.catalogue import CATALOGUE
from gpu_worker.models.cli import main
from gpu_worker.models.lock import LOCK_NAME, Lock

from .entries import TINY, MiB, noise, sha
from .fake_hub import FakeHub, Repo
from .run_cli import CATALOGUE as TEST_CATALOGUE

ROOT = Path(__file__).resolve().parents[3]


def cli(models_dir: Path, *args: str, endpoint: str | None = None) -> int:
    return main(["--models-dir", str(models_dir), *args], catalogue=TEST_CATALOGUE, endpoint=endpoint)


def subprocess_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "APP_GPU__MODELS_DIR")}
    return env | {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": str(ROOT)}


def test_list_shows_licence_commercial_use_presence_and_size(
    hub: FakeHub, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.repos["test/tiny"] = Repo(dict(TINY))
    assert cli(models_dir, "pull", "tiny", endpoint=hub.url) == 0
    capsys.readouterr()

    assert cli(models_dir, "list") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "PRESENT", "ON", "DISK"]
    tiny = next(line for line in lines if line.startswith("tiny "))
    assert tiny.split()[1:4] == ["yes", "4.1", "KB"] and "Test Licence 1.0" in tiny and "hf:test/tiny@main" in tiny
    assert next(line for line in lines if line.startswith("big ")).split()[1:3] == ["no", "-"]


def test_the_real_catalogue_lists_every_backend_through_the_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gpu_worker.models", "--models-dir", str(tmp_path), "list"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for entry in CATALOGUE:
        row = next(line for line in result.stdout.splitlines() if line.startswith(f"{entry.name} "))
        assert f" {entry.commercial} " in row and entry.license in row


def test_verify_rehashes_against_the_lock_and_fails_on_a_changed_byte(
    hub: FakeHub, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.repos["test/tiny"] = Repo(dict(TINY))
    assert cli(models_dir, "pull", "tiny", endpoint=hub.url) == 0
    capsys.readouterr()
    assert cli(models_dir, "verify") == 0
    assert "tiny: ok (2 files" in capsys.readouterr().out

    weights = models_dir / "tiny" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 1  # same size: only a hash sees it
    weights.write_bytes(bytes(data))
    assert cli(models_dir, "verify", "tiny") == 1
    out = capsys.readouterr().out
    assert "tiny: FAILED: weights.safetensors has SHA-256" in out and sha(TINY["weights.safetensors"]) in out


def test_rm_frees_the_files_and_forgets_them(
    hub: FakeHub, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.repos["test/tiny"] = Repo(dict(TINY))
    assert cli(models_dir, "pull", "tiny", endpoint=hub.url) == 0
    capsys.readouterr()

    assert cli(models_dir, "rm", "tiny") == 0

    assert f"tiny: removed {models_dir / 'tiny'} (4.1 KB freed)" in capsys.readouterr().out
    assert not (models_dir / "tiny").exists() and "tiny" not in Lock(models_dir).records


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pull", "tinny"], "unknown model 'tinny': the catalogue has big, tiny"),
        (["rm", "tinny"], "unknown model 'tinny'"),
        (["pull", "tiny", "--accept-license", "tinny"], "unknown model 'tinny'"),
    ],
)
def test_an_unknown_name_is_a_usage_error(
    models_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cli(models_dir, *args) == 2
    assert message in capsys.readouterr().err


def test_a_refused_licence_is_a_usage_error(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--models-dir", str(models_dir), "pull", "sd15"])  # the real catalogue: OpenRAIL-M, conditional
    assert code == 2
    err = capsys.readouterr().err
    assert "CreativeML OpenRAIL-M" in err and "--accept-license sd15" in err


def test_no_models_folder_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")} | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "gpu_worker.models", "verify"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "set APP_GPU__MODELS_DIR or pass --models-dir" in result.stderr


def test_a_subprocess_pull_finds_the_hub_through_hf_endpoint(hub: FakeHub, models_dir: Path, tmp_path: Path) -> None:
    hub.repos["test/tiny"] = Repo(dict(TINY))
    result = subprocess.run(
        [sys.executable, "-m", "tests.gpu_worker.models.run_cli", "--models-dir", str(models_dir), "pull", "tiny"],
        capture_output=True, text=True, cwd=ROOT, env=subprocess_env(hub, tmp_path), timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "tiny installed in" in result.stderr
    locked = json.loads((models_dir / LOCK_NAME).read_text())["models"]["tiny"]
    assert locked["files"]["weights.safetensors"]["sha256"] == sha(TINY["weights.safetensors"])


def test_an_interrupted_pull_installs_nothing_and_the_next_one_finishes(
    hub: FakeHub, models_dir: Path, tmp_path: Path
) -> None:
    big = noise(14 * MiB, 4)
    hub.repos["test/big"] = Repo({"big.safetensors": big}, stall={"big.safetensors": 2 * MiB})
    command = [sys.executable, "-m", "tests.gpu_worker.models.run_cli", "--models-dir", str(models_dir), "pull", "big"]
    env = subprocess_env(hub, tmp_path)
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while hub.sent.get("big.safetensors", 0) < 2 * MiB:
        assert child.poll() is None and time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)

    child.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the file
    _, err = child.communicate(timeout=60)

    assert child.returncode == 130, err
    assert "interrupted: nothing half-written was installed" in err and "the same pull again" in err
    assert not (models_dir / "big").exists() and "big" not in Lock(models_dir).records
    hub.repos["test/big"].stall.clear()
    hub.released.set()
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert sha((models_dir / "big" / "big.safetensors").read_bytes()) == sha(big)
