"""The catalogue of model weights: one entry per model backend, where its files come from, under what licence.

An entry's files come from Hub repositories (each into its own sub-folder of the entry's folder
when it has several, as MuseTalk's do) or from release assets. Revisions, sizes and SHA-256
digests are filled only from a source cited next to them; the rest stay empty, and `pull`
records what it downloaded in `models.lock` (trust on first use), which `verify` and the
worker's start-up check then hold the files to. Code checkouts (Wav2Lip, SadTalker) are
documented in `setup`, never pulled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gpu_worker.models.errors import USAGE, ModelsError

Commercial = Literal["yes", "no", "conditional"]
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")

SD15 = "sd15"
SVD_XT = "svd-xt"
ESRGAN = "esrgan"
WAV2LIP = "wav2lip"
SADTALKER = "sadtalker"
COQUI_VITS = "coqui-vits"
XTTS = "xtts-v2"
MUSETALK = "musetalk"


@dataclass(frozen=True)
class Pin:
    """What a cited source says one file is (either field may stay unknown)."""

    path: str
    size: int | None = None
    sha256: str = ""


@dataclass(frozen=True)
class HubRepo:
    """Files of a Hugging Face Hub model repository at a revision (`hf:<repo>@<revision>`)."""

    repo: str
    revision: str = ""  # a 40-hex commit from a cited source; empty = `main`, resolved and locked by `pull`
    patterns: tuple[str, ...] = ("*",)  # `fnmatch` patterns on repository paths; each must match a file
    pins: tuple[Pin, ...] = ()  # by repository path
    into: str = ""  # the sub-folder of the entry's folder its files land in ("": the folder itself)

    @property
    def source(self) -> str:
        """`hf:<repo>@<revision>` as the catalogue states it."""
        return f"hf:{self.repo}@{self.revision or 'main'}"

    def local(self, path: str) -> str:
        """Where a repository path lands, relative to the entry's folder."""
        return f"{self.into}/{path}" if self.into else path


@dataclass(frozen=True)
class Asset:
    """One file published outside the Hub (a release asset), or, without a URL, downloaded by hand."""

    path: str  # where it lands, relative to the entry's folder
    url: str = ""  # `url:` source; empty: only `pull --from DIR` can bring it (see `Entry.manual`)
    size: int | None = None
    sha256: str = ""
    unpack: bool = False  # a zip whose files are extracted, flat, into the folder (Coqui's release archives)

    @property
    def source(self) -> str:
        """`url:<asset>` or `manual`."""
        return f"url:{self.url}" if self.url else "manual"


@dataclass(frozen=True)
class Entry:
    """One backend's weights."""

    name: str  # what `pull`, `rm` and `APP_GPU__BACKENDS` take
    folder: str  # under `APP_GPU__MODELS_DIR`: the layout the backend loads
    runtime: str  # the runtime id the manifest advertises once the files are there
    license: str  # the licence, and where it is stated
    license_url: str
    commercial: Commercial
    hub: HubRepo | tuple[HubRepo, ...] | None = None  # several: each into its own sub-folder (`HubRepo.into`)
    assets: tuple[Asset, ...] = ()
    gated: bool = False  # the Hub asks each account to accept the licence before it serves the files
    manual: str = ""  # where to download the assets without a URL
    setup: str = ""  # what else the backend needs, by hand

    @property
    def repos(self) -> tuple[HubRepo, ...]:
        """The Hub repositories the files come from, in order (none for release assets)."""
        if self.hub is None:
            return ()
        return self.hub if isinstance(self.hub, tuple) else (self.hub,)

    @property
    def sources(self) -> list[str]:
        """Where the files come from, for `list` and messages."""
        if self.repos:
            return [repo.source for repo in self.repos]
        return sorted({asset.source for asset in self.assets})

    def pins(self) -> dict[str, Pin]:
        """Sizes and digests the catalogue knows, by path in the folder."""
        pins = [Pin(repo.local(pin.path), pin.size, pin.sha256) for repo in self.repos for pin in repo.pins]
        pins += [Pin(a.path, a.size, a.sha256) for a in self.assets if not a.unpack and (a.size or a.sha256)]
        return {pin.path: pin for pin in pins}


CATALOGUE: tuple[Entry, ...] = (
    Entry(
        name=SD15,
        folder="stable-diffusion",
        runtime="diffusers-sd",
        # Revision: pinned as `stable-diffusion-v1-5/stable-diffusion-v1-5@451f4fe16113bff5a5d2269ed5ad43b0592e9a14`
        # by several unrelated public repositories (found by code search); the Hub's own page for that commit was
        # not at hand. Full-precision files: LoRA training loads them without a variant.
        hub=HubRepo(
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "451f4fe16113bff5a5d2269ed5ad43b0592e9a14",
            (
                "model_index.json",
                "scheduler/scheduler_config.json",
                "feature_extractor/preprocessor_config.json",
                "tokenizer/*",
                "text_encoder/config.json",
                "text_encoder/model.safetensors",
                "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
            ),
        ),
        # Model card (huggingface.co/runwayml/stable-diffusion-v1-5, commit cca18361): "You may re-distribute the
        # weights and use the model commercially and/or as a service. If you do, ... you have to include the same
        # use restrictions as the ones in the license".
        license="CreativeML OpenRAIL-M: commercial use allowed if its use restrictions (Attachment A) are passed on",
        license_url="https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5",
        commercial="conditional",
        setup="Also the base model of the `standard` LoRA training preset.",
    ),
    Entry(
        name=SVD_XT,
        folder="stable-video-diffusion",
        runtime="diffusers-svd",
        # Revision: the Hub's tree page huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt/tree/
        # 73f66ee1e2809f07cfac237618b88379a1b866e6/unet lists the diffusers weights (fp16 UNet 3.05 GB).
        # Only the fp16 variant files: the backend loads them as `variant="fp16"`.
        hub=HubRepo(
            "stabilityai/stable-video-diffusion-img2vid-xt",
            "73f66ee1e2809f07cfac237618b88379a1b866e6",
            (
                "model_index.json",
                "scheduler/scheduler_config.json",
                "feature_extractor/preprocessor_config.json",
                "image_encoder/config.json",
                "image_encoder/*.fp16.safetensors",
                "unet/config.json",
                "unet/*.fp16.safetensors",
                "vae/config.json",
                "vae/*.fp16.safetensors",
            ),
        ),
        # Licence tag `stable-video-diffusion-community` on the Hub; the Stability AI Community License (July 5,
        # 2024) "preserves free access to the Models for people or organizations generating annual revenue of less
        # than US $1,000,000"; above that an Enterprise licence is needed.
        license="Stability AI Community License: free below US$1M annual revenue, else an Enterprise licence",
        license_url="https://stability.ai/license",
        commercial="conditional",
        gated=True,
        setup="It makes 25 frames; set APP_GPU__SVD_NUM_FRAMES=25 to use them all (default 14).",
    ),
    Entry(
        name=ESRGAN,
        folder="esrgan",
        runtime="realesrgan",
        # URL: Real-ESRGAN's own inference script and README (release v0.1.0 asset).
        assets=(
            Asset(
                "RealESRGAN_x4plus.pth",
                "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
            ),
        ),
        license="MIT (LICENSE of xinntao/Real-ESRGAN at 4dc033d); weights released with the code",
        license_url="https://github.com/xinntao/Real-ESRGAN",
        commercial="yes",
    ),
    Entry(
        name=WAV2LIP,
        folder="wav2lip",
        runtime="wav2lip",
        # Wav2Lip's README: the face detector from adrianbulat.com (to be placed at
        # face_detection/detection/sfd/s3fd.pth); the GAN checkpoint only behind a SharePoint/Drive link.
        assets=(
            Asset("wav2lip_gan.pth"),
            Asset("s3fd.pth", "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"),
        ),
        manual="the 'Wav2Lip + GAN' link under 'Getting the weights' in https://github.com/Rudrabha/Wav2Lip",
        # README, "License and Citation": "The software can only be used for personal/research/non-commercial
        # purposes"; "Disclaimer": trained on LRS2, "any form of commercial use is strictly prohibited".
        license="Wav2Lip: personal/research/non-commercial use only (README, trained on LRS2)",
        license_url="https://github.com/Rudrabha/Wav2Lip#license-and-citation",
        commercial="no",
        setup=(
            "A Wav2Lip checkout with its own environment (APP_GPU__WAV2LIP_DIR); it reads the face detector "
            "from its own tree: ln -s <models>/wav2lip/s3fd.pth <checkout>/face_detection/detection/sfd/s3fd.pth"
        ),
    ),
    Entry(
        name=SADTALKER,
        folder="sadtalker",
        runtime="sadtalker",
        # URLs: OpenTalker/SadTalker scripts/download_models.sh (the "new links" and the enhancer weights).
        assets=tuple(
            Asset(f"checkpoints/{name}", f"https://github.com/OpenTalker/SadTalker/releases/download/v0.0.2-rc/{name}")
            for name in (
                "mapping_00109-model.pth.tar",
                "mapping_00229-model.pth.tar",
                "SadTalker_V0.0.2_256.safetensors",
                "SadTalker_V0.0.2_512.safetensors",
            )
        )
        + (
            Asset(
                "gfpgan/weights/alignment_WFLW_4HG.pth",
                "https://github.com/xinntao/facexlib/releases/download/v0.1.0/alignment_WFLW_4HG.pth",
            ),
            Asset(
                "gfpgan/weights/detection_Resnet50_Final.pth",
                "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
            ),
            Asset(
                "gfpgan/weights/GFPGANv1.4.pth",
                "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
            ),
            Asset(
                "gfpgan/weights/parsing_parsenet.pth",
                "https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
            ),
        ),
        # SadTalker's LICENSE (OpenTalker/SadTalker at bc214d7) is MIT; the face weights come from GFPGAN and
        # facexlib under their own terms, which this catalogue has not reviewed: accept before commercial use.
        license="SadTalker code MIT; face-alignment/enhancer weights from GFPGAN and facexlib under their own terms",
        license_url="https://github.com/OpenTalker/SadTalker",
        commercial="conditional",
        setup=(
            "A SadTalker checkout with its own environment (APP_GPU__SADTALKER_DIR); it reads gfpgan/weights "
            "relative to the checkout: ln -s <models>/sadtalker/gfpgan <checkout>/gfpgan"
        ),
    ),
    Entry(
        name=COQUI_VITS,
        folder="coqui",
        runtime="coqui",
        # URL and licence: coqui-tts 0.28.0's own model list (TTS/.models.json, tts_models/en/vctk/vits:
        # "license": "apache 2.0"). The zip holds config.json, the checkpoint and the speaker list.
        assets=(
            Asset(
                "tts_models--en--vctk--vits.zip",
                "https://github.com/coqui-ai/TTS/releases/download/v0.6.1_models/tts_models--en--vctk--vits.zip",
                unpack=True,
            ),
        ),
        license="Apache 2.0 (coqui-tts model list); trained on VCTK (CC BY 4.0)",
        license_url="https://github.com/idiap/coqui-ai-TTS",
        commercial="yes",
        setup="VCTK speakers p225…p376: pick one with APP_GPU__COQUI_SPEAKER (default the first).",
    ),
    Entry(
        name=XTTS,
        folder="xtts",
        runtime="coqui-xtts",
        # Revision: the head of `main` when Coqui stopped updating it ("Rename speakers.pth to speakers_xtts.pth",
        # 2023-12-11, the last commit in the Hub's history of `main`'s speakers_xtts.pth); several public projects
        # pin it or load from `models--coqui--XTTS-v2/snapshots/6c2b0d75…` (found by code search). Only what
        # `Xtts.load_checkpoint` needs: it loads speakers_xtts.pth only when present (Coqui's studio speakers,
        # unused here), and dvae.pth / mel_stats.pth are for training.
        hub=HubRepo(
            "coqui/XTTS-v2", "6c2b0d75eae4b7047358e3b6bd9325f857d43f77", ("config.json", "model.pth", "vocab.json")
        ),
        # Licence: the Hub's model card (`license: other`, coqui-public-model-license) and its LICENSE.txt, the
        # Coqui Public Model License 1.0.0: "allows only non-commercial use of a machine learning model and its
        # outputs". Not gated: no Hub page of the repository asks to accept terms, and public scripts download
        # resolve/main/… anonymously; the acceptance prompt users meet comes from Coqui's own `TTS` client.
        license="Coqui Public Model License 1.0.0: non-commercial use of the model and its outputs only",
        license_url="https://huggingface.co/coqui/XTTS-v2/blob/main/LICENSE.txt",
        commercial="no",
        setup=(
            "It speaks only in profiles' cloned voices (train_voice clones them). With coqui-vits also enabled, "
            "speech uses XTTS v2: choose with APP_GPU__BACKENDS."
        ),
    ),
    Entry(
        name=MUSETALK,
        folder="musetalk",
        runtime="musetalk-1.5",
        # MuseTalk's own `models/` layout (its download_weights.sh: the whole TMElyralab/MuseTalk repository, then
        # sd-vae-ft-mse into sd-vae/ and whisper-tiny into whisper/), limited to what our implementation loads:
        # the 1.5 UNet, the VAE and Whisper's encoder + feature extractor, as safetensors where the Hub has them.
        # Revisions: each pinned by several unrelated public projects (found by code search), TMElyralab/MuseTalk
        # @3ef28bc5 also linked as the Hub's tree page of that commit, sd-vae-ft-mse@31f26fd and whisper-tiny
        # @169d4a4 also as `snapshots/<commit>` folders of the Hub client's cache (what `main` resolved to).
        # Pins: SHA-256 as stated, for these commits, by at least two of those projects each (with sizes: musetalk.json
        # 748 B, unet.pth 3,400,074,924 B, the VAE's safetensors 334,643,276 B, whisper-tiny's config.json 1,983 B and
        # preprocessor_config.json 184,990 B). Digests only: a pinned size would also be required of a folder laid out
        # by hand, which MuseTalk's own download script fills with the .bin files instead. The Whisper weights and the
        # VAE config stay trust-on-first-use.
        hub=(
            HubRepo(
                "TMElyralab/MuseTalk",
                "3ef28bc5cff08c90ad8178a25f1b570cd800170f",
                ("musetalkV15/musetalk.json", "musetalkV15/unet.pth"),
                (
                    Pin(
                        "musetalkV15/musetalk.json",
                        sha256="5b6923aee04d71692e0e9846c471e0a4ea07a4f686d39545e472bd4ba17e1b47",
                    ),
                    Pin(
                        "musetalkV15/unet.pth",
                        sha256="7ebf6c98c181e20838e4c0054e96e944ac60d5d692cc01db42839fe11b787007",
                    ),
                ),
            ),
            HubRepo(
                "stabilityai/sd-vae-ft-mse",
                "31f26fdeee1355a5c34592e401dd41e45d25a493",
                ("config.json", "diffusion_pytorch_model.safetensors"),
                (
                    Pin(
                        "diffusion_pytorch_model.safetensors",
                        sha256="a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815",
                    ),
                ),
                into="sd-vae",
            ),
            HubRepo(
                "openai/whisper-tiny",
                "169d4a4341b33bc18d8881c4b69c2e104e1cc0af",
                ("config.json", "preprocessor_config.json", "model.safetensors"),
                (
                    Pin("config.json", sha256="ffdccec4f3211f4c63310f2b7098f309fe70f3952cedc5e4d11e43f5b2379b98"),
                    Pin(
                        "preprocessor_config.json",
                        sha256="9b5cd03a36fbb8a627c64d98a5b5b126ead95a77720723944487311f0110b666",
                    ),
                ),
                into="whisper",
            ),
        ),
        # MuseTalk's README ("Disclaimer/License", TMElyralab/MuseTalk at 058f7dd): code MIT, "The trained model are
        # available for any purpose, even commercially", other models "must comply with their license". But the
        # Hub's model card of TMElyralab/MuseTalk states `creativeml-openrail-m` for the weights pulled here, whose
        # use restrictions pass on (as for sd15). sd-vae-ft-mse: MIT (Hub card; also in MuseTalk's LICENSE).
        # whisper-tiny: Apache-2.0 (Hub card).
        license=(
            "MuseTalk weights: CreativeML OpenRAIL-M on the Hub card (README: any purpose, even commercially); "
            "SD VAE MIT; Whisper tiny Apache-2.0"
        ),
        license_url="https://github.com/TMElyralab/MuseTalk#disclaimerlicense",
        commercial="conditional",
        setup="Lip-sync in the worker's own process; preferred to Wav2Lip when both are enabled.",
    ),
)


def select(names: list[str], catalogue: tuple[Entry, ...] = CATALOGUE) -> list[Entry]:
    """The entries called `names`, in that order.

    Raises:
        ModelsError: A name is not in the catalogue (usage error, listing the known ones).
    """
    by_name = {entry.name: entry for entry in catalogue}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ModelsError(
            f"unknown model {', '.join(map(repr, unknown))}: the catalogue has {', '.join(by_name)}", USAGE
        )
    return [by_name[name] for name in dict.fromkeys(names)]
