"""The catalogue itself: one entry per model backend, in the folders the backends load, with sources that parse."""

from urllib.parse import urlsplit

import pytest

from gpu_worker.backends.comfyui import ComfyUiScene
from gpu_worker.backends.coqui import CoquiSpeech
from gpu_worker.backends.diffusers_sd import DiffusersScene
from gpu_worker.backends.musetalk import MUSETALK_SUBDIR, VAE_FOLDERS, MuseTalk
from gpu_worker.backends.sadtalker import SadTalker
from gpu_worker.backends.svd import SVD_SUBDIR, DiffusersImageToVideo
from gpu_worker.backends.wav2lip import Wav2Lip
from gpu_worker.backends.xtts import MODEL_FILES, XttsSpeech
from gpu_worker.models.catalogue import (
    CATALOGUE,
    COMMIT,
    MUSETALK,
    SD15,
    SHA256,
    SVD_XT,
    XTTS,
    Entry,
    HubRepo,
    select,
)
from gpu_worker.models.errors import USAGE, ModelsError
from gpu_worker.models.pull import check_license
from gpu_worker.training.components import SD_SUBDIR


def test_every_weights_backend_has_one_entry_in_its_own_folder() -> None:
    from gpu_worker.backends.esrgan import RealEsrgan

    backends = {
        DiffusersScene, DiffusersImageToVideo, Wav2Lip, SadTalker, RealEsrgan, CoquiSpeech, XttsSpeech, MuseTalk,
    }  # fmt: skip
    assert sorted(entry.runtime for entry in CATALOGUE) == sorted(b.name for b in backends)
    assert ComfyUiScene.name not in {entry.runtime for entry in CATALOGUE}, "a service, not weights"
    assert len({entry.name for entry in CATALOGUE}) == len({entry.folder for entry in CATALOGUE}) == len(CATALOGUE)
    [sd15, svd, musetalk] = select([SD15, SVD_XT, MUSETALK])
    assert (sd15.folder, svd.folder, musetalk.folder) == (SD_SUBDIR, SVD_SUBDIR, MUSETALK_SUBDIR)


def test_musetalk_and_xtts_pull_exactly_the_files_their_backends_load() -> None:
    [musetalk, xtts] = select([MUSETALK, XTTS])
    by_into = {repo.into: repo for repo in musetalk.repos}
    assert set(by_into) == {"", VAE_FOLDERS[0], "whisper"}
    assert set(by_into[""].patterns) == {"musetalkV15/musetalk.json", "musetalkV15/unet.pth"}
    assert set(by_into["sd-vae"].patterns) == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert set(by_into["whisper"].patterns) == {"config.json", "preprocessor_config.json", "model.safetensors"}
    assert "sd-vae/diffusion_pytorch_model.safetensors" in musetalk.pins(), "pins are keyed by path in the folder"
    assert all(pin.size is None for pin in musetalk.pins().values()), "a hand-made folder (.bin files) is not broken"
    [repo] = xtts.repos
    assert (xtts.folder, repo.repo, repo.patterns) == ("xtts", "coqui/XTTS-v2", MODEL_FILES)


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.name)
def test_sources_are_well_formed_and_filled_only_where_known(entry: Entry) -> None:
    assert (
        entry.commercial in ("yes", "no", "conditional") and entry.license and entry.license_url.startswith("https://")
    )
    assert (not entry.repos) != (not entry.assets), "Hub repositories or release assets, not both"
    for repo in entry.repos:
        assert repo.revision == "" or COMMIT.fullmatch(repo.revision)
        assert repo.patterns and f"hf:{repo.repo}@{repo.revision or 'main'}" in entry.sources
    intos = [repo.into for repo in entry.repos]
    assert len(set(intos)) == len(intos), "each repository of an entry has its own sub-folder"
    assert all(into == "" or (".." not in into.split("/") and not into.startswith("/")) for into in intos)
    for asset in entry.assets:
        assert asset.url == "" or urlsplit(asset.url).scheme == "https"
        assert asset.url or entry.manual, "an asset without a URL says where to download it by hand"
    for pin in entry.pins().values():
        assert pin.sha256 == "" or SHA256.fullmatch(pin.sha256)


@pytest.mark.parametrize("entry", [e for e in CATALOGUE if e.commercial != "yes"], ids=lambda e: e.name)
def test_restricted_licences_need_accepting_by_name(entry: Entry) -> None:
    with pytest.raises(ModelsError) as info:
        check_license(entry, accepted=["some-other-model"])
    assert info.value.exit_code == USAGE and entry.license in str(info.value)
    check_license(entry, accepted=[entry.name])


def test_the_licences_the_issue_names() -> None:
    by_name = {entry.name: entry for entry in CATALOGUE}
    assert by_name["svd-xt"].gated and by_name["svd-xt"].commercial == "conditional"
    assert by_name["wav2lip"].commercial == "no"
    assert by_name["esrgan"].commercial == "yes"
    assert by_name["xtts-v2"].commercial == "no" and not by_name["xtts-v2"].gated
    assert "Coqui Public Model License" in by_name["xtts-v2"].license
    assert by_name["musetalk"].commercial == "conditional", "README: any purpose; Hub card: OpenRAIL-M"
    assert isinstance(by_name["musetalk"].hub, tuple) and isinstance(by_name["sd15"].hub, HubRepo)
