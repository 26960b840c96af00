"""An entry whose files come from several Hub repositories, each into its own sub-folder (MuseTalk's shape).

The real `huggingface_hub` client pulls from the fake Hub; `pull`, `verify`, `list` and `rm` see
one entry, one folder and one lock record, and a failure in any repository installs nothing.
"""

import re
from pathlib import Path

import pytest

from gpu_worker.models.catalogue import Commercial, Entry, HubRepo
from gpu_worker.models.cli import main
from gpu_worker.models.errors import FAILED, ModelsError
from gpu_worker.models.lock import Lock
from gpu_worker.models.pull import STAGING, pull

from .entries import noise, sha
from .fake_hub import FakeHub, Repo

COMMITS = {"test/unet": "1" * 40, "test/vae": "2" * 40, "test/audio": "3" * 40}
FILES = {
    "test/unet": {"unet/unet.pth": noise(3000), "unet/config.json": b'{"unet": 1}', "README.md": b"not pulled"},
    "test/vae": {
        "config.json": b'{"vae": 1}',
        "diffusion_pytorch_model.safetensors": noise(2048, 1),
        "diffusion_pytorch_model.bin": noise(2048, 2),  # the same weights as a pickle: not pulled
    },
    "test/audio": {"config.json": b'{"audio": 1}', "model.safetensors": noise(1500, 3), "tokenizer.json": b"{}"},
}
# What the entry's folder holds once pulled: each repository's files under its `into`.
EXPECTED = {
    "unet/unet.pth": FILES["test/unet"]["unet/unet.pth"],
    "unet/config.json": FILES["test/unet"]["unet/config.json"],
    "vae/config.json": FILES["test/vae"]["config.json"],
    "vae/diffusion_pytorch_model.safetensors": FILES["test/vae"]["diffusion_pytorch_model.safetensors"],
    "audio/config.json": FILES["test/audio"]["config.json"],
    "audio/model.safetensors": FILES["test/audio"]["model.safetensors"],
}


def layered(commercial: Commercial = "yes") -> Entry:
    return Entry(
        name="layered",
        folder="layered",
        runtime="layered",
        license="Test Licence 1.0",
        license_url="https://example.invalid/licence",
        commercial=commercial,
        hub=(
            HubRepo("test/unet", "", ("unet/*",)),
            HubRepo("test/vae", "", ("config.json", "diffusion_pytorch_model.safetensors"), into="vae"),
            HubRepo("test/audio", "", ("config.json", "model.safetensors"), into="audio"),
        ),
    )


def serve(hub: FakeHub) -> None:
    for repo, files in FILES.items():
        hub.repos[repo] = Repo(dict(files), commit=COMMITS[repo])


def on_disk(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def downloads(hub: FakeHub) -> list[str]:
    return [s.path for s in hub.seen if s.method == "GET" and "/resolve/" in s.path]


def test_every_repository_is_pulled_into_its_sub_folder_and_locked_as_one_entry(hub: FakeHub, models_dir: Path) -> None:
    serve(hub)

    record = pull(layered(), models_dir, endpoint=hub.url)

    assert on_disk(models_dir / "layered") == EXPECTED, "only the patterns' files, nothing of the client's cache"
    assert record.source == "; ".join(f"hf:{repo}@{commit}" for repo, commit in COMMITS.items())
    assert {rel: (f.size, f.sha256) for rel, f in record.files.items()} == {
        rel: (len(data), sha(data)) for rel, data in EXPECTED.items()
    }
    assert Lock(models_dir).records["layered"] == record
    assert not (models_dir / STAGING / "layered").exists()
    fetched = len(downloads(hub))
    assert pull(layered(), models_dir, endpoint=hub.url) == record  # the same commits: nothing fetched again
    assert len(downloads(hub)) == fetched


def test_verify_list_and_rm_treat_the_repositories_as_one_backend(
    hub: FakeHub, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(hub)
    catalogue = (layered(),)

    def cli(*args: str) -> int:
        return main(["--models-dir", str(models_dir), *args], catalogue=catalogue, endpoint=hub.url)

    assert cli("pull", "layered") == 0
    capsys.readouterr()
    assert cli("verify", "layered") == 0
    assert "layered: ok (6 files" in capsys.readouterr().out

    assert cli("list") == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("layered ")]
    assert row.split()[1] == "yes" and all(f"hf:{repo}@main" in row for repo in COMMITS)

    weights = models_dir / "layered" / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[7] ^= 1  # same size: only a hash sees it
    weights.write_bytes(bytes(data))
    assert cli("verify") == FAILED
    assert "layered: FAILED: vae/diffusion_pytorch_model.safetensors has SHA-256" in capsys.readouterr().out

    assert cli("rm", "layered") == 0
    assert f"layered: removed {models_dir / 'layered'}" in capsys.readouterr().out
    assert not (models_dir / "layered").exists() and "layered" not in Lock(models_dir).records


def test_a_file_missing_from_one_repository_fails_before_anything_is_downloaded(hub: FakeHub, models_dir: Path) -> None:
    serve(hub)
    del hub.repos["test/audio"].files["model.safetensors"]

    with pytest.raises(ModelsError) as info:
        pull(layered(), models_dir, endpoint=hub.url)

    assert info.value.exit_code == FAILED
    assert f"test/audio@{COMMITS['test/audio']} has no file matching model.safetensors" in str(info.value)
    assert downloads(hub) == [], "every repository is listed before the first download"
    assert not (models_dir / "layered").exists() and "layered" not in Lock(models_dir).records


def test_a_bad_file_in_one_repository_installs_nothing_and_the_next_pull_keeps_what_was_fetched(
    hub: FakeHub, models_dir: Path
) -> None:
    serve(hub)
    hub.repos["test/vae"].corrupt.add("diffusion_pytorch_model.safetensors")

    with pytest.raises(ModelsError, match=re.escape("vae/diffusion_pytorch_model.safetensors does not match")):
        pull(layered(), models_dir, endpoint=hub.url)
    assert not (models_dir / "layered").exists() and "layered" not in Lock(models_dir).records

    hub.repos["test/vae"].corrupt.clear()
    pull(layered(), models_dir, endpoint=hub.url)
    assert on_disk(models_dir / "layered") == EXPECTED
    assert len([path for path in downloads(hub) if path.endswith("unet/unet.pth")]) == 1, "kept from the first run"


def test_files_fetched_by_hand_come_in_from_a_folder_laid_out_like_the_entry(models_dir: Path, tmp_path: Path) -> None:
    by_hand = tmp_path / "by-hand"
    for rel, data in EXPECTED.items():
        (by_hand / rel).parent.mkdir(parents=True, exist_ok=True)
        (by_hand / rel).write_bytes(data)
    (by_hand / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"matches no pattern")

    record = pull(layered(), models_dir, from_dir=by_hand)

    assert record.source == f"local:{by_hand.resolve()}"
    assert on_disk(models_dir / "layered") == EXPECTED
