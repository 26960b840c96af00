"""A tiny XTTS v2 with random weights, saved as a Coqui model folder (`config.json`, `model.pth`, `vocab.json`).

The knobs are XTTS's own (`XttsArgs`): a one-layer GPT of width 32 with 2 heads, 32 audio codes,
at most 24 audio tokens per sentence (random weights never pick the stop token, so this bounds
every sentence to about a second), and a 32-wide decoder input. Coqui's HiFi-GAN and speaker
encoder take no size knobs (`Xtts.init_models` builds them at their published sizes, 22 M
parameters), so the folder weighs ~90 MB. The BPE vocabulary is trained here with `tokenizers`
on a few sentences, with the special tokens Coqui's `VoiceBpeTokenizer` looks up.
"""

from pathlib import Path

import torch

XTTS_LANGUAGES = ("en", "de")
_CORPUS = [
    "hello there, this is a tiny voice for the tests.",
    "the quick brown fox jumps over the lazy dog!",
    "books are quiet friends; they never argue.",
]
_SPECIAL = ["[STOP]", "[UNK]", "[SPACE]", "[START]", *(f"[{lang}]" for lang in XTTS_LANGUAGES)]


def save_tiny_xtts(model_dir: Path, seed: int = 0, width: int = 32) -> Path:
    """Build the tiny XTTS under `torch.manual_seed(seed)` and save it to `model_dir`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = list("abcdefghijklmnopqrstuvwxyz.,;:!?'-")
    tokenizer.train_from_iterator(
        _CORPUS, trainers.BpeTrainer(vocab_size=120, special_tokens=_SPECIAL, initial_alphabet=alphabet)
    )
    tokenizer.save(str(model_dir / "vocab.json"))
    args = XttsArgs(
        gpt_layers=1, gpt_n_model_channels=width, gpt_n_heads=2, gpt_max_audio_tokens=24, gpt_max_text_tokens=200,
        gpt_max_prompt_tokens=16, gpt_num_audio_tokens=34, gpt_start_audio_token=32, gpt_stop_audio_token=33,
        gpt_use_perceiver_resampler=True, decoder_input_dim=width,
    )  # fmt: skip
    config = XttsConfig(model_args=args, audio=XttsAudioConfig(), languages=list(XTTS_LANGUAGES))
    config.gpt_cond_len, config.gpt_cond_chunk_len, config.max_ref_len = 6, 3, 10
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Xtts(config)
        model.tokenizer = VoiceBpeTokenizer(vocab_file=str(model_dir / "vocab.json"))
        model.init_models()  # the GPT is built once the vocabulary's size is known
    config.save_json(str(model_dir / "config.json"))  # with the text-token ids `init_models` filled in
    torch.save({"model": model.state_dict()}, model_dir / "model.pth")
    return model_dir


SPEAKER_TEXT = (
    "My grandmother kept a small garden behind her house, full of tomatoes, beans and sunflowers. "
    "Every summer we picked the vegetables together."
)


def speaker_wavs(root: Path) -> dict[str, Path]:
    """Two speakers' clips (a low male and a high female eSpeak NG voice, 22.05 kHz WAVs) that pass the clip checks."""
    from gpu_worker.media.speech import VoiceParams
    from gpu_worker.media.voices import synthesize

    root.mkdir(parents=True, exist_ok=True)
    voices = {"low": VoiceParams(voice="m3", pitch=25, rate_wpm=140), "high": VoiceParams(voice="f1", pitch=75)}
    return {name: synthesize(SPEAKER_TEXT, root / f"{name}.wav", voice).path for name, voice in voices.items()}
