"""The catalogue itself: one entry per model backend, in the folders the backends load, with sources that parse."""

from urllib.parse import urlsplit

import pytest

from gpu_worker.backends.comfyui import ComfyUiScene
from gpu_worker.backends.coqui import CoquiSpeech
from gpu_worker.backends.diffusers_sd import DiffusersScene
from gpu_worker.backends.sadtalker import SadTalker
from gpu_worker.backends.svd import SVD_SUBDIR, DiffusersImageToVideo
from gpu_worker.backends.wav2lip import Wav2Lip
from gpu_worker.models.catalogue import CATALOGUE, COMMIT, SD15, SHA256, SVD_XT, Entry, select
from gpu_worker.models.errors import USAGE, ModelsError
from gpu_worker.models.pull import check_license
from gpu_worker.training.components import SD_SUBDIR


def test_every_weights_backend_has_one_entry_in_its_own_folder() -> None:
    from gpu_worker.backends.esrgan import RealEsrgan

    backends = {DiffusersScene, DiffusersImageToVideo, Wav2Lip, SadTalker, RealEsrgan, CoquiSpeech}
    assert sorted(entry.runtime for entry in CATALOGUE) == sorted(b.name for b in backends)
    assert ComfyUiScene.name not in {entry.runtime for entry in CATALOGUE}, "a service, not weights"
    assert len({entry.name for entry in CATALOGUE}) == len({entry.folder for entry in CATALOGUE}) == len(CATALOGUE)
    [sd15, svd] = select([SD15, SVD_XT])
    assert (sd15.folder, svd.folder) == (SD_SUBDIR, SVD_SUBDIR)


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda e: e.name)
def test_sources_are_well_formed_and_filled_only_where_known(entry: Entry) -> None:
    assert (
        entry.commercial in ("yes", "no", "conditional") and entry.license and entry.license_url.startswith("https://")
    )
    assert (entry.hub is None) != (not entry.assets), "a Hub repository or release assets, not both"
    if entry.hub is not None:
        assert entry.hub.revision == "" or COMMIT.fullmatch(entry.hub.revision)
        assert entry.hub.patterns and entry.sources == [f"hf:{entry.hub.repo}@{entry.hub.revision or 'main'}"]
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
    assert "xtts" not in " ".join(by_name), "XTTS v2 (non-commercial) is not loadable by the Coqui backend"
