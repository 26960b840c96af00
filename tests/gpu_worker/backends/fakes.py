"""Tiny random-weight models built from configs (SVD, RRDBNet, VITS) and fake Wav2Lip/SadTalker checkouts for the tests.

The fake checkouts' `inference.py` honour the real command lines (same arguments, same output
locations, `ffmpeg` called through the shell from the PATH as the real scripts do) and draw a
coloured box so a test can tell their output reached the final video. A `MODE` file in the
checkout makes them fail the ways real checkouts do: `broken` (a missing module), `crash`,
`hang`, `nooutput`.
"""

import textwrap
from pathlib import Path

import torch

_FAKE_WAV2LIP = """
import argparse, json, os, subprocess, sys, time

parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint_path", type=str, required=True)
parser.add_argument("--face", type=str, required=True)
parser.add_argument("--audio", type=str, required=True)
parser.add_argument("--outfile", type=str, default="results/result_voice.mp4")
parser.add_argument("--static", type=bool, default=False)
parser.add_argument("--fps", type=float, default=25.0)
parser.add_argument("--pads", nargs="+", type=int, default=[0, 10, 0, 0])
parser.add_argument("--face_det_batch_size", type=int, default=16)
parser.add_argument("--wav2lip_batch_size", type=int, default=128)
parser.add_argument("--resize_factor", default=1, type=int)
parser.add_argument("--nosmooth", default=False, action="store_true")
args = parser.parse_args()
here = os.path.dirname(os.path.abspath(sys.argv[0]))
mode = open(os.path.join(here, "MODE")).read().strip() if os.path.exists(os.path.join(here, "MODE")) else ""
json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, open(os.path.join(here, "last_call.json"), "w"))
if mode == "broken":
    import face_detection  # a checkout without its dependencies fails exactly like this
if mode == "crash":
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
    sys.exit(1)
if mode == "hang":
    time.sleep(120)
torch_state = open(args.checkpoint_path, "rb").read()  # the real script loads it with torch.load
print("Using cpu for inference.")
if mode != "nooutput":
    # Like the real script: frames go to temp/result.avi, then ffmpeg from the PATH muxes the audio in.
    subprocess.check_call(
        "ffmpeg -hide_banner -loglevel error -y -i {} -vf drawbox=x=0:y=0:w=iw/3:h=ih/3:color=red:t=fill "
        "-c:v mpeg4 -q:v 2 temp/result.avi".format(args.face),
        shell=True,
    )
    subprocess.call(
        "ffmpeg -hide_banner -loglevel error -y -i {} -i {} -strict -2 -q:v 1 {}".format(
            args.audio, "temp/result.avi", args.outfile
        ),
        shell=True,
    )
"""

_FAKE_SADTALKER = """
import json, os, shutil, subprocess, sys, time, uuid
from argparse import ArgumentParser
from glob import glob
from time import strftime

# The options of OpenTalker/SadTalker inference.py at cd4c0465 (names, types, defaults, choices).
parser = ArgumentParser()
parser.add_argument("--driven_audio", default="./examples/driven_audio/bus_chinese.wav")
parser.add_argument("--source_image", default="./examples/source_image/full_body_1.png")
parser.add_argument("--ref_eyeblink", default=None)
parser.add_argument("--ref_pose", default=None)
parser.add_argument("--checkpoint_dir", default="./checkpoints")
parser.add_argument("--result_dir", default="./results")
parser.add_argument("--pose_style", type=int, default=0)
parser.add_argument("--batch_size", type=int, default=2)
parser.add_argument("--size", type=int, default=256)
parser.add_argument("--expression_scale", type=float, default=1.0)
parser.add_argument("--input_yaw", nargs="+", type=int, default=None)
parser.add_argument("--input_pitch", nargs="+", type=int, default=None)
parser.add_argument("--input_roll", nargs="+", type=int, default=None)
parser.add_argument("--enhancer", type=str, default=None)
parser.add_argument("--background_enhancer", type=str, default=None)
parser.add_argument("--cpu", dest="cpu", action="store_true")
parser.add_argument("--face3dvis", action="store_true")
parser.add_argument("--still", action="store_true")
parser.add_argument("--preprocess", default="crop", choices=["crop", "extcrop", "resize", "full", "extfull"])
parser.add_argument("--verbose", action="store_true")
parser.add_argument("--old_version", action="store_true")
parser.add_argument("--net_recon", type=str, default="resnet50", choices=["resnet18", "resnet34", "resnet50"])
parser.add_argument("--init_path", type=str, default=None)
parser.add_argument("--use_last_fc", default=False)
parser.add_argument("--bfm_folder", type=str, default="./checkpoints/BFM_Fitting/")
parser.add_argument("--bfm_model", type=str, default="BFM_model_front.mat")
parser.add_argument("--focal", type=float, default=1015.0)
parser.add_argument("--center", type=float, default=112.0)
parser.add_argument("--camera_d", type=float, default=10.0)
parser.add_argument("--z_near", type=float, default=5.0)
parser.add_argument("--z_far", type=float, default=15.0)
args = parser.parse_args()
current_root_path = os.path.split(sys.argv[0])[0]
here = os.path.abspath(current_root_path)
mode = open(os.path.join(here, "MODE")).read().strip() if os.path.exists(os.path.join(here, "MODE")) else ""
call = {"argv": sys.argv[1:], "cwd": os.getcwd(), "loaded": []}
json.dump(call, open(os.path.join(here, "last_call.json"), "w"))


def load(path):  # the real script opens each of these with safetensors / torch.load
    open(path, "rb").close()
    call["loaded"].append(os.path.relpath(os.path.abspath(path), os.path.abspath(args.checkpoint_dir)))
    json.dump(call, open(os.path.join(here, "last_call.json"), "w"))


def weight(name, url):  # facexlib's load_file_from_url into the cwd-relative gfpgan/weights
    path = os.path.join("gfpgan/weights", name)
    if not os.path.isfile(path):
        print('Downloading: "{}" to {}'.format(url, os.path.abspath(path)))
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
    return path


def mux(video_filter, out):  # ffmpeg from the PATH; the muxed file is first a <uuid>.mp4 in the cwd
    temp = str(uuid.uuid4()) + ".mp4"
    subprocess.check_call(
        "ffmpeg -hide_banner -loglevel error -y -loop 1 -i {} -i {} -vf {} -r 25 -shortest -c:v libx264 "
        "-pix_fmt yuv420p -c:a aac {}".format(args.source_image, args.driven_audio, video_filter, temp),
        shell=True,
    )
    shutil.move(temp, out)


if mode == "broken":
    import face_alignment
if mode == "hang":
    time.sleep(120)
save_dir = os.path.join(args.result_dir, strftime("%Y_%m_%d_%H.%M.%S"))
os.makedirs(save_dir, exist_ok=True)
# init_path: the configs next to the script; the safetensors of --size unless there are none; the
# mapping network by --preprocess.
assert os.path.isdir(os.path.join(current_root_path, "src/config")), "configs are read relative to the script"
if not args.old_version and glob(os.path.join(args.checkpoint_dir, "*.safetensors")):
    load(os.path.join(args.checkpoint_dir, "SadTalker_V0.0.2_" + str(args.size) + ".safetensors"))
else:
    for name in ("wav2lip.pth", "auido2pose_00140-model.pth", "auido2exp_00300-model.pth",
                 "facevid2vid_00189-model.pth.tar", "epoch_20.pth"):
        load(os.path.join(args.checkpoint_dir, name))
full = "full" in args.preprocess
load(os.path.join(args.checkpoint_dir, "mapping_00109-model.pth.tar" if full else "mapping_00229-model.pth.tar"))
facexlib = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/"
weight("alignment_WFLW_4HG.pth", facexlib + "alignment_WFLW_4HG.pth")
weight("detection_Resnet50_Final.pth", facexlib + "detection_Resnet50_Final.pth")
print("3DMM Extraction for source image")
if not os.path.isfile(args.source_image):
    raise ValueError("input_path must be a valid path to video/image file")
if args.source_image.split(".")[-1] not in ["jpg", "png", "jpeg"]:
    raise ValueError("read as a video: " + args.source_image)
if mode == "nooutput":
    print("Can't get the coeffs of the input")
    sys.exit(0)
if mode == "crash":
    print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
    sys.exit(1)
video_name = "{}##{}".format(
    os.path.splitext(os.path.basename(args.source_image))[0], os.path.splitext(os.path.basename(args.driven_audio))[0]
)
box = "drawbox=x=0:y=0:w=iw/3:h=ih/3:color=lime:t=fill"
# The face crop is rendered --size wide; full/extfull paste it back into the whole picture.
crop = os.path.join(save_dir, video_name + ".mp4")
mux("scale={0}:{0},{1}".format(args.size, box), crop)
result = crop
if full:
    result = os.path.join(save_dir, video_name + "_full.mp4")
    mux(box, result)
if args.enhancer:
    if args.enhancer == "gfpgan":
        model = "GFPGANv1.4.pth"
    elif args.enhancer == "RestoreFormer":
        model = "RestoreFormer.pth"
    else:
        raise ValueError("Wrong model version {}.".format(args.enhancer))
    model_path = os.path.join("gfpgan/weights", model)
    if not os.path.isfile(model_path):
        model_path = os.path.join("checkpoints", model)
    if not os.path.isfile(model_path):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
    weight("detection_Resnet50_Final.pth", facexlib + "detection_Resnet50_Final.pth")
    weight("parsing_parsenet.pth", "https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth")
    enhanced = os.path.join(save_dir, video_name + "_enhanced.mp4")
    mux("scale=iw*2:ih*2," + box if full else "scale={0}:{0},{1}".format(args.size * 2, box), enhanced)
    result = enhanced
shutil.move(result, save_dir + ".mp4")
print("The generated video is named:", save_dir + ".mp4")
if not args.verbose:
    shutil.rmtree(save_dir)
"""


def fake_wav2lip(root: Path, mode: str = "") -> Path:
    """A Wav2Lip checkout: `inference.py` and `checkpoints/wav2lip_gan.pth`."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "wav2lip_gan.pth").write_bytes(b"not really a checkpoint")
    (root / "inference.py").write_text(textwrap.dedent(_FAKE_WAV2LIP))
    if mode:
        (root / "MODE").write_text(mode)
    return root


def fake_sadtalker(root: Path, mode: str = "") -> Path:
    """A SadTalker checkout as its `scripts/download_models.sh` leaves it (256 weights, both mapping networks).

    `checkpoints/` holds `SadTalker_V0.0.2_256.safetensors` and both mapping networks;
    `gfpgan/weights/` the face alignment, detection and parsing weights and `GFPGANv1.4.pth`.
    """
    for folder in ("checkpoints", "src/config", "gfpgan/weights"):
        (root / folder).mkdir(parents=True)
    for name in ("SadTalker_V0.0.2_256.safetensors", "mapping_00109-model.pth.tar", "mapping_00229-model.pth.tar"):
        (root / "checkpoints" / name).write_bytes(b"not really weights")
    for name in ("alignment_WFLW_4HG.pth", "detection_Resnet50_Final.pth", "parsing_parsenet.pth", "GFPGANv1.4.pth"):
        (root / "gfpgan" / "weights" / name).write_bytes(b"not really weights")
    (root / "src" / "config" / "facerender_still.yaml").write_text("model_params: {}\n")
    (root / "inference.py").write_text(textwrap.dedent(_FAKE_SADTALKER))
    if mode:
        (root / "MODE").write_text(mode)
    return root


def save_tiny_svd(model_dir: Path, seed: int = 0) -> Path:
    """A Stable Video Diffusion pipeline with random weights from diffusers' own test configs, saved to `model_dir`.

    The CLIP vision encoder takes 224×224 inputs (what the pipeline resizes a PIL image to) in 32-pixel patches.
    """
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=8,
            out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            cross_attention_dim=32,
            num_attention_heads=8,
            projection_class_embeddings_input_dim=96,
            addition_time_embed_dim=32,
        )
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=[32, 64],
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            latent_channels=4,
        )
        vision = CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=224,
            intermediate_size=37,
            patch_size=32,
        )
        image_encoder = CLIPVisionModelWithProjection(vision)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    pipe.save_pretrained(model_dir)
    return model_dir


def save_tiny_esrgan(path: Path, scale: int = 4, seed: int = 0) -> Path:
    """A random tiny RRDBNet saved like the official release (`{"params_ema": state_dict}`)."""
    from gpu_worker.backends.esrgan import RRDBNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RRDBNet(scale=scale, num_feat=8, num_block=2, num_grow_ch=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": model.state_dict()}, path)
    return path


VITS_SPEAKERS = ("alice", "bob")


def save_tiny_vits(model_dir: Path, mode: str = "embedding", seed: int = 0) -> Path:
    """A tiny VITS with random weights saved as a Coqui model folder (`config.json` + `model.pth`), 16 kHz.

    `embedding`: two speakers named in the config, graphemes (no phonemizer). `dvector`: the same
    speakers as d-vectors in `speakers.pth` beside it (the config names that file by absolute path,
    as Coqui's model manager writes it). `phonemes`: one speaker, espeak phonemes.
    """
    from TTS.tts.configs.shared_configs import BaseAudioConfig, CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits, VitsCharacters

    model_dir.mkdir(parents=True, exist_ok=True)
    speaker_args: dict[str, object] = {}
    extra: dict[str, object] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if mode == "embedding":
            speaker_args = {"use_speaker_embedding": True, "speaker_embedding_channels": 16}
            extra = {"speakers": list(VITS_SPEAKERS)}
        elif mode == "dvector":
            vectors = {f"{s}.wav": {"name": s, "embedding": torch.randn(8).tolist()} for s in VITS_SPEAKERS}
            torch.save(vectors, model_dir / "speakers.pth")
            files = {"use_d_vector_file": True, "d_vector_file": str(model_dir / "speakers.pth"), "d_vector_dim": 8}
            speaker_args, extra = files, files
        if mode == "phonemes":  # VITS's own symbol set holds letters and IPA alike, so the weights fit either way
            text: dict[str, object] = {"text_cleaner": "phoneme_cleaners", "characters": VitsCharacters().to_config()}
        else:
            characters = CharactersConfig(
                characters_class="TTS.tts.models.vits.VitsCharacters", pad="_", eos="", bos="", blank=None,
                characters="abcdefghijklmnopqrstuvwxyz", punctuations="!'(),-.:;? ", phonemes="", is_unique=True,
                is_sorted=True,
            )  # fmt: skip
            text = {"text_cleaner": "english_cleaners", "characters": characters}
        config = VitsConfig(
            audio=BaseAudioConfig(sample_rate=16000, fft_size=512, win_length=512, hop_length=128, num_mels=40,
                                  mel_fmin=0, mel_fmax=None, do_trim_silence=False),
            model_args=VitsArgs(
                out_channels=257, hidden_channels=32, hidden_channels_ffn_text_encoder=64, num_heads_text_encoder=2,
                num_layers_text_encoder=2, num_layers_posterior_encoder=2, num_layers_flow=2,
                resblock_type_decoder="2", resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3]],
                upsample_rates_decoder=[8, 4, 4], upsample_kernel_sizes_decoder=[16, 8, 8],  # product: hop_length
                upsample_initial_channel_decoder=32, use_sdp=False, init_discriminator=False, **speaker_args,
            ),
            add_blank=True,
            use_phonemes=False,
            **text,
            **extra,
        )  # fmt: skip
        model = Vits(config).eval()  # built on graphemes: building it needs no phonemizer
    if mode == "phonemes":
        config.use_phonemes, config.phonemizer, config.phoneme_language = True, "espeak", "en-us"
    config.save_json(str(model_dir / "config.json"))
    torch.save({"model": model.state_dict()}, model_dir / "model.pth")
    return model_dir
