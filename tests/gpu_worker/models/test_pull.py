"""`pull` against a local server speaking the Hub's protocol, with the real `huggingface_hub` client end to end."""

import io
import json
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from gpu_worker.models.catalogue import Asset, HubRepo, Pin
from gpu_worker.models.errors import FAILED, USAGE, ModelsError
from gpu_worker.models.lock import LOCK_NAME, Lock
from gpu_worker.models.pull import STAGING, pull

from .entries import TINY, MiB, asset_entry, hub_entry, noise, sha
from .fake_hub import COMMIT, FakeHub, Repo


def test_pull_installs_the_files_and_locks_their_digests(hub: FakeHub, models_dir: Path) -> None:
    hub.repos["test/tiny"] = Repo(dict(TINY))
    entry = hub_entry("tiny", "test/tiny", patterns=("config.json", "weights.safetensors", "sub/*"))

    record = pull(entry, models_dir, endpoint=hub.url)

    folder = models_dir / "tiny"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "config.json",
        "sub/notes.txt",
        "weights.safetensors",
    ]
    assert (folder / "weights.safetensors").read_bytes() == TINY["weights.safetensors"]
    assert record.source == f"hf:test/tiny@{COMMIT}"
    assert {rel: (f.size, f.sha256) for rel, f in record.files.items()} == {
        rel: (len(TINY[rel]), sha(TINY[rel])) for rel in ("config.json", "sub/notes.txt", "weights.safetensors")
    }
    assert Lock(models_dir).records["tiny"] == record
    assert json.loads((models_dir / LOCK_NAME).read_text())["models"]["tiny"]["source"] == record.source
    assert not (models_dir / STAGING / "tiny").exists()
    downloads = len([s for s in hub.seen if "/resolve/" in s.path])
    pull(entry, models_dir, endpoint=hub.url)  # the same commit is already there: nothing is fetched again
    assert len([s for s in hub.seen if "/resolve/" in s.path]) == downloads


def test_a_download_cut_mid_file_resumes_with_a_range_request(hub: FakeHub, models_dir: Path) -> None:
    # The client writes in 10 MiB chunks and resumes from what it wrote: cut after the first chunk.
    big = noise(14 * MiB, 2)
    hub.repos["test/big"] = Repo({"big.safetensors": big}, cut_once={"big.safetensors": 11 * MiB})

    record = pull(hub_entry("big", "test/big"), models_dir, endpoint=hub.url)

    resumed = [int(r.removeprefix("bytes=").removesuffix("-")) for r in hub.ranges("big.safetensors")]
    assert resumed and resumed[0] > 0, hub.ranges("big.safetensors")
    assert (models_dir / "big" / "big.safetensors").read_bytes() == big
    assert record.files["big.safetensors"].sha256 == sha(big)


@pytest.mark.parametrize("who", ["the Hub's file list", "the catalogue"])
def test_a_digest_mismatch_is_an_error_and_installs_nothing(hub: FakeHub, models_dir: Path, who: str) -> None:
    corrupt = {"weights.safetensors"} if who == "the Hub's file list" else set()
    hub.repos["test/tiny"] = Repo(dict(TINY), corrupt=corrupt)
    pins = (Pin("weights.safetensors", sha256="0" * 64),) if who == "the catalogue" else ()
    entry = hub_entry("tiny", "test/tiny", patterns=("config.json", "weights.safetensors"), pins=pins)

    with pytest.raises(ModelsError) as info:
        pull(entry, models_dir, endpoint=hub.url)

    assert info.value.exit_code == FAILED
    assert f"weights.safetensors does not match {who}" in str(info.value) and "nothing was installed" in str(info.value)
    assert not (models_dir / "tiny").exists() and "tiny" not in Lock(models_dir).records
    assert not (models_dir / STAGING / "tiny" / "weights.safetensors").exists(), "the bad download is deleted"


def test_files_that_changed_since_the_lock_are_refused(hub: FakeHub, models_dir: Path) -> None:
    hub.repos["test/tiny"] = Repo(dict(TINY))
    entry = hub_entry("tiny", "test/tiny", patterns=("weights.safetensors",))
    pull(entry, models_dir, endpoint=hub.url)
    (models_dir / "tiny" / "weights.safetensors").write_bytes(b"truncated")  # so the next pull fetches again
    hub.repos["test/tiny"].files["weights.safetensors"] = noise(4096, 7)  # same commit, other bytes

    with pytest.raises(ModelsError, match=r"does not match models\.lock"):
        pull(entry, models_dir, endpoint=hub.url)


def test_a_gated_repo_without_a_token_names_the_licence_to_accept(
    hub: FakeHub, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.repos["test/gated"] = Repo(dict(TINY), token="hf_granted")
    entry = hub_entry("gated", "test/gated", patterns=("config.json",), gated=True, commercial="conditional")

    with pytest.raises(ModelsError) as info:
        pull(entry, models_dir, accepted=["gated"], endpoint=hub.url)

    message = str(info.value)
    assert info.value.exit_code == FAILED
    assert "refused the download (401)" in message and f"{hub.url}/test/gated" in message
    assert "Test Licence 1.0" in message and "HF_TOKEN" in message and "No HF_TOKEN is set" in message
    assert not (models_dir / "gated").exists()

    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    pull(entry, models_dir, accepted=["gated"], endpoint=hub.url)
    assert (models_dir / "gated" / "config.json").read_bytes() == TINY["config.json"]
    assert any(s.authorization == "Bearer hf_granted" for s in hub.seen if "/resolve/" in s.path)


def test_a_licence_that_is_not_accepted_is_refused_before_any_request(hub: FakeHub, models_dir: Path) -> None:
    hub.repos["test/tiny"] = Repo(dict(TINY))
    for commercial in ("no", "conditional"):
        entry = hub_entry("tiny", "test/tiny", patterns=("config.json",), commercial=commercial)
        with pytest.raises(ModelsError) as info:
            pull(entry, models_dir, endpoint=hub.url)
        assert info.value.exit_code == USAGE
        assert "Test Licence 1.0" in str(info.value) and "--accept-license tiny" in str(info.value)
    assert hub.seen == []
    pull(entry, models_dir, accepted=["tiny"], endpoint=hub.url)
    assert (models_dir / "tiny" / "config.json").exists()


def test_too_little_free_space_stops_before_downloading(
    hub: FakeHub, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    hub.repos["test/tiny"] = Repo(dict(TINY))
    usage = shutil.disk_usage("/")
    monkeypatch.setattr("gpu_worker.models.pull.shutil.disk_usage", lambda _path: usage._replace(free=1000))

    with pytest.raises(ModelsError, match=r"not enough space for tiny in .*: it needs 4\.1 KB, 1\.0 KB are free"):
        pull(hub_entry("tiny", "test/tiny", patterns=("weights.safetensors",)), models_dir, endpoint=hub.url)
    assert not [s for s in hub.seen if "/resolve/" in s.path]


def test_a_release_asset_continues_the_part_file_of_an_interrupted_run(hub: FakeHub, models_dir: Path) -> None:
    weights = noise(3 * MiB, 3)
    hub.assets["w.pth"] = weights
    entry = asset_entry("asset", Asset("w.pth", f"{hub.url}/assets/w.pth"))
    part = models_dir / STAGING / "asset" / "w.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(weights[:MiB])  # what an interrupted run left

    record = pull(entry, models_dir)

    assert hub.ranges("w.pth") == [f"bytes={MiB}-"]
    assert (models_dir / "asset" / "w.pth").read_bytes() == weights
    assert record.source == f"url:{hub.url}/assets/w.pth" and record.files["w.pth"].sha256 == sha(weights)


def test_a_zipped_release_is_unpacked_flat_and_its_files_locked(hub: FakeHub, models_dir: Path) -> None:
    files = {"config.json": b"{}", "model_file.pth": noise(2048), "speaker_ids.json": b'{"p225": 0}'}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        for name, data in files.items():
            out.writestr(f"tts_models--en--vctk--vits/{name}", data)
    hub.assets["voice.zip"] = archive.getvalue()
    entry = asset_entry("voice", Asset("voice.zip", f"{hub.url}/assets/voice.zip", unpack=True))

    record = pull(entry, models_dir)

    assert {p.name: p.read_bytes() for p in (models_dir / "voice").iterdir()} == files
    assert {rel: f.sha256 for rel, f in record.files.items()} == {name: sha(data) for name, data in files.items()}
    assert record.archives == {"voice.zip": sha(archive.getvalue())}


def test_weights_without_a_download_link_come_from_a_folder(hub: FakeHub, models_dir: Path, tmp_path: Path) -> None:
    hub.assets["s3fd.pth"] = noise(1024)
    entry = asset_entry("lips", Asset("lips_gan.pth"), Asset("s3fd.pth", f"{hub.url}/assets/s3fd.pth"))

    with pytest.raises(ModelsError) as info:
        pull(entry, models_dir)
    assert info.value.exit_code == USAGE
    assert "lips_gan.pth cannot be downloaded automatically" in str(info.value)
    assert "https://example.invalid/download-page" in str(info.value) and "--from" in str(info.value)

    by_hand = tmp_path / "downloads"
    by_hand.mkdir()
    (by_hand / "lips_gan.pth").write_bytes(b"gan weights")
    (by_hand / "s3fd.pth").write_bytes(hub.assets["s3fd.pth"])
    record = pull(entry, models_dir, from_dir=by_hand)
    assert record.source == f"local:{by_hand.resolve()}"
    assert (models_dir / "lips" / "lips_gan.pth").read_bytes() == b"gan weights"
    assert (by_hand / "lips_gan.pth").exists(), "--from copies, it does not take the user's files"


def test_offline_mode_is_a_clear_error(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelsError, match="HF_HUB_OFFLINE is set"):
        pull(hub_entry("tiny", "test/tiny"), models_dir)


def test_an_unreachable_hub_says_how_to_continue(models_dir: Path) -> None:
    with pytest.raises(ModelsError) as info:
        pull(hub_entry("tiny", "test/tiny"), models_dir, endpoint="http://127.0.0.1:9")
    assert info.value.exit_code == FAILED and "Run the same pull again" in str(info.value)


@pytest.mark.parametrize(
    ("hub_repo", "message"),
    [
        (
            HubRepo("test/tiny", "", ("config.json", "vae/*")),
            "test/tiny@0123456789abcdef0123456789abcdef01234567 has no file matching vae/*",
        ),
        (HubRepo("test/tiny", "f" * 40), "is not on the Hub (404): the catalogue no longer fits it"),
        (HubRepo("test/gone"), "is not on the Hub (404)"),
    ],
    ids=["pattern", "revision", "repository"],
)
def test_a_catalogue_entry_the_hub_no_longer_fits_is_named(
    hub: FakeHub, models_dir: Path, hub_repo: HubRepo, message: str
) -> None:
    hub.repos["test/tiny"] = Repo(dict(TINY))
    with pytest.raises(ModelsError, match=re.escape(message)):
        pull(replace(hub_entry("tiny", "test/tiny"), hub=hub_repo), models_dir, endpoint=hub.url)
    assert not (models_dir / "tiny").exists()
