"""Music beds, ducking and loudness, measured on the stems and on the decoded MP4 (pyloudnorm, not ffmpeg's report)."""

import subprocess
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample_poly

from gpu_worker.media.encode import encode_frames, ffmpeg_exe
from gpu_worker.media.loudness import (
    limit_peaks,
    loudness_normalise,
    measure_loudness,
    rotate_phase,
    write_wav,
)
from gpu_worker.media.music import decode_audio, loop_seconds, music_bed, music_track
from gpu_worker.media.sound import Stems, compress_speech, duck_envelope, finish_soundtrack, mix_stems, speech_spans
from gpu_worker.media.speech import SpeechResult, VoiceParams
from gpu_worker.media.voices import synthesize

RATE = 22050
LONG_NARRATIVE = (
    "Waves begin far out at sea, where the wind pushes on the water. "
    "The longer it blows, the bigger they grow. Near the shore they slow down and break on the sand."
)


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> SpeechResult:
    """About 9 s of speech padded to 15 s: long pauses and a closing silence where the bed comes back up."""
    return synthesize(LONG_NARRATIVE, tmp_path_factory.mktemp("long") / "speech.wav", VoiceParams(), 15)


@pytest.fixture(scope="module")
def tone_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1.5 s stereo MP3 upload: a 440 Hz tone."""
    path = tmp_path_factory.mktemp("upload") / "tone.mp3"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1.5:sample_rate=44100",
         "-ac", "2", "-b:a", "128k", str(path)],
        check=True,
    )  # fmt: skip
    return path


def _db(x: np.ndarray) -> float:
    return float(20 * np.log10(max(float(np.sqrt(np.mean(x**2))), 1e-9)))


def _frames_rms(x: np.ndarray, hop: int) -> np.ndarray:
    return np.sqrt(np.mean(x[: x.size // hop * hop].reshape(-1, hop) ** 2, axis=1))


@pytest.mark.parametrize("kind", ["calm", "upbeat"])
def test_music_bed_is_a_seamless_unclipped_loop(kind):
    n = int(round(loop_seconds(kind) * RATE))
    bed = music_bed(kind, 2 * loop_seconds(kind), RATE, seed=3)
    assert bed.shape == (2 * n,)
    assert np.abs(bed).max() < 0.95 and _db(bed) == pytest.approx(-18, abs=0.5)
    np.testing.assert_array_equal(bed[:n], bed[n:])  # it tiles
    steps = np.abs(np.diff(bed))
    assert abs(bed[n] - bed[n - 1]) <= np.percentile(steps, 99.5)  # the seam is no bigger a step than any other
    assert (_frames_rms(bed, RATE // 10) > 10 ** (-40 / 20)).all()  # music all through, no dropouts
    np.testing.assert_array_equal(bed, music_bed(kind, 2 * loop_seconds(kind), RATE, seed=3))  # deterministic


def test_music_beds_are_tonal_and_differ():
    calm, upbeat = (music_bed(k, 10, RATE, seed=0) for k in ("calm", "upbeat"))
    for bed in (calm, upbeat):  # notes, not noise: the spectrum is peaky, not flat
        power = np.abs(np.fft.rfft(bed)) ** 2 + 1e-20
        assert np.exp(np.mean(np.log(power))) / np.mean(power) < 0.01
    # Calm has no sharp edges (no clicks: almost nothing above 8 kHz); upbeat's hi-hats are its only highs.
    freqs = np.fft.rfftfreq(calm.size, 1 / RATE)
    highs = [
        np.sum(np.abs(np.fft.rfft(b))[freqs > 8000] ** 2) / np.sum(np.abs(np.fft.rfft(b)) ** 2) for b in (calm, upbeat)
    ]
    assert highs[0] < 1e-6 < highs[1]
    # Upbeat moves faster: its loudness changes more from one 50 ms frame to the next.
    flux = [
        np.mean(np.abs(np.diff(_frames_rms(b, RATE // 20)))) / np.mean(_frames_rms(b, RATE // 20))
        for b in (calm, upbeat)
    ]
    assert flux[1] > 2 * flux[0]
    assert not np.allclose(music_bed("calm", 10, RATE, seed=0), music_bed("calm", 10, RATE, seed=1))


def test_uploaded_track_is_looped_and_faded(tone_file: Path):
    bed = music_track(tone_file, 5.0, RATE)
    assert bed.shape == (5 * RATE,)
    level = _frames_rms(bed, RATE // 50)  # 20 ms frames
    steady = np.median(level[60:-110])
    assert level[0] < 0.1 * steady and level[-1] < 0.1 * steady  # faded in and out
    assert level[25] < level[45] < 1.05 * steady  # the fade-in lasts about a second
    assert level[-50] < 0.9 * steady  # the fade-out about two
    assert level[55:-105].min() > 0.8 * steady  # no gap or dip where the 1.5 s tone loops
    trimmed = music_track(tone_file, 1.0, RATE)
    assert trimmed.shape == (RATE,) and np.abs(trimmed[: RATE // 100]).max() < 0.05


def test_upload_without_audio_is_rejected(tmp_path: Path):
    image = tmp_path / "still.png"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "color=c=red:s=16x16", "-frames:v", "1",
                    str(image)], check=True)  # fmt: skip
    with pytest.raises(ValueError, match="no audio"):
        decode_audio(image, RATE)
    garbage = tmp_path / "song.mp3"
    garbage.write_bytes(b"not audio at all" * 100)
    with pytest.raises(ValueError, match="does not decode"):
        music_track(garbage, 5, RATE)


def _speech_mask(stems: Stems, speech: SpeechResult) -> np.ndarray:
    t = np.arange(stems.speech.size) / stems.sample_rate
    return np.any([(t >= s.start) & (t < s.end) for s in speech.segments], axis=0)


@pytest.mark.parametrize(("music", "volume"), [("calm", 0.25), ("upbeat", 0.25), ("calm", 1.0), ("upload", 0.6)])
def test_music_is_ducked_under_speech(long_speech: SpeechResult, tone_file: Path, music, volume):
    chosen = tone_file if music == "upload" else music
    stems = mix_stems(long_speech, chosen, volume, seed=1)
    assert stems.music.shape == stems.speech.shape
    speaking = _speech_mask(stems, long_speech)
    speech_db = _db(stems.speech[speaking])
    assert _db(stems.music[speaking]) <= speech_db - 10
    # The gain on the bed: away from speech (pauses and the closing silence, clear of the ramps) it
    # brings the bed to `volume` times the speech's level; under speech it is at least 6 dB lower.
    bed = music_track(chosen, long_speech.duration, stems.sample_rate, seed=1)
    t = np.arange(stems.speech.size) / stems.sample_rate
    near = np.any([(t > a - 0.3) & (t < b + 0.3) for a, b in stems.spans], axis=0)
    clear = ~near & (np.abs(bed) > 1e-3)
    assert clear.sum() > stems.sample_rate  # enough of it to measure

    def gain_db(where: np.ndarray) -> float:
        return float(20 * np.log10(np.median(np.abs(stems.music[where] / bed[where]))))

    assert gain_db(clear) == pytest.approx(speech_db + 20 * np.log10(volume) - _db(bed), abs=0.5)
    assert gain_db(clear) - gain_db(speaking & (np.abs(bed) > 1e-3)) == pytest.approx(stems.duck_db, abs=0.1)
    assert stems.duck_db >= 6


def test_duck_envelope_ramps_smoothly_before_speech():
    rate = 1000
    env = duck_envelope([(1.0, 2.0)], 4 * rate, rate)
    assert env[: int(0.8 * rate)].max() == 0 and env[int(0.95 * rate) : int(2.05 * rate)].min() == 1
    assert env[int(2.3 * rate) :].max() == 0
    assert np.abs(np.diff(env)).max() < 2.0 / (0.08 * rate)  # ramps of about 100-150 ms, no jumps


def _decoded_loudness(path: Path) -> tuple[float, float]:
    """Integrated loudness (pyloudnorm) and true peak (4x oversampled) of the decoded audio stream."""
    import av

    with av.open(str(path)) as container:
        rate = container.streams.audio[0].codec_context.sample_rate
    samples = decode_audio(path, rate)
    integrated = pyloudnorm.Meter(rate).integrated_loudness(samples)
    true_peak = 20 * np.log10(np.abs(resample_poly(samples, 4, 1)).max())
    return float(integrated), float(true_peak)


def _mux(audio: Path, out: Path) -> Path:
    """The audio muxed into an MP4 by the renderer's own encoder, under a still picture."""
    seconds = decode_audio(audio, 8000).size / 8000
    frames = [np.zeros((32, 32, 3), np.uint8)] * (int(seconds * 10) + 1)
    encode_frames(frames, (32, 32), 10, out, audio=audio, preset="ultrafast")
    return out


@pytest.mark.parametrize(
    ("clip", "music"), [("5s", "none"), ("5s", "calm"), ("15s", "none"), ("15s", "upbeat"), ("15s", "upload")]
)
def test_finished_soundtrack_is_at_minus_14_lufs_under_minus_1_dbtp(
    request: pytest.FixtureRequest, tmp_path: Path, tone_file: Path, clip: str, music: str
):
    speech: SpeechResult = request.getfixturevalue("speech" if clip == "5s" else "long_speech")
    chosen = tone_file if music == "upload" else music
    track = finish_soundtrack(speech, tmp_path / "soundtrack.wav", chosen, seed=2)
    assert track.loudness.mode == "linear"  # peaks were tamed enough for one linear gain
    video = _mux(track.path, tmp_path / "video.mp4")
    integrated, true_peak = _decoded_loudness(video)
    assert -15 <= integrated <= -13
    assert true_peak <= -1.0
    ebur_i, ebur_tp = measure_loudness(video)  # the worker's own measurement agrees
    assert ebur_i == pytest.approx(integrated, abs=0.3) and ebur_tp == pytest.approx(true_peak, abs=0.3)
    if music != "none":
        assert track.music_under_speech_db is not None and track.music_under_speech_db <= -10


def test_short_clip_under_three_seconds_is_normalised(tmp_path: Path):
    speech = synthesize("Hi there.", tmp_path / "hi.wav", VoiceParams(), 2)
    track = finish_soundtrack(speech, tmp_path / "soundtrack.wav", "calm")
    integrated, true_peak = _decoded_loudness(_mux(track.path, tmp_path / "video.mp4"))
    assert -15 <= integrated <= -13 and true_peak <= -1.0


def test_quiet_smooth_audio_gets_one_linear_gain(tmp_path: Path):
    t = np.arange(6 * 48000) / 48000
    tone = 0.05 * np.sin(2 * np.pi * 330 * t) * (1 + 0.3 * np.sin(2 * np.pi * 0.5 * t))  # ~-30 LUFS, low crest
    src = tmp_path / "tone.wav"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "f64le", "-ar", "48000", "-ac", "1", "-i", "pipe:0",
                    "-c:a", "pcm_s16le", str(src)], input=tone.tobytes(), check=True)  # fmt: skip
    result = loudness_normalise(src, tmp_path / "out.wav")
    assert result.mode == "linear" and result.limited_db == 0
    integrated, true_peak = _decoded_loudness(result.path)
    assert integrated == pytest.approx(-14, abs=0.3) and true_peak <= -1.0
    out = decode_audio(result.path, 48000)
    gain = np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(tone**2))
    np.testing.assert_allclose(out[48000:96000], tone[48000:96000] * gain, atol=2e-3)  # the same waveform, louder


def test_a_codec_that_lifts_peaks_gets_a_lower_ceiling(speech: SpeechResult, tmp_path: Path):
    src = tmp_path / "speech.wav"
    write_wav(src, compress_speech(decode_audio(speech.path, 48000), 48000), 48000)
    lifting = ("-af", "volume=1.5dB", "-c:a", "pcm_s16le")  # a stand-in for a codec's overshoots
    result = loudness_normalise(src, tmp_path / "out.wav", codec=lifting)
    assert result.coded_true_peak_dbtp is not None and result.coded_true_peak_dbtp <= -1.0
    assert result.true_peak_dbtp <= -2.4 and result.integrated_lufs == pytest.approx(-14, abs=0.2)
    assert result.mode == "linear"


def test_limiter_caps_peaks_and_leaves_quiet_audio_alone():
    rate = 48000
    t = np.arange(rate) / rate
    x = 0.1 * np.sin(2 * np.pi * 200 * t)
    x[20000:22000] *= 8  # a 0.8 burst
    y = limit_peaks(x, rate, ceiling_db=-6)
    assert np.abs(y).max() <= 10 ** (-6 / 20) + 1e-9
    np.testing.assert_allclose(y[:18000], x[:18000])  # far from the burst: untouched
    np.testing.assert_allclose(y[44000:], x[44000:], rtol=5e-3)  # recovered after the ~80 ms release
    gain = np.abs(y[19000:24000]) / np.maximum(np.abs(x[19000:24000]), 1e-9)
    assert np.abs(np.diff(gain[np.abs(x[19000:24000]) > 0.05])).max() < 0.05  # no sudden gain steps


def test_phase_rotation_keeps_the_sound_and_lowers_speech_peaks(speech: SpeechResult):
    voice = decode_audio(speech.path, 48000)
    rotated = rotate_phase(voice, 48000)
    assert _db(rotated) == pytest.approx(_db(voice), abs=0.01)  # same energy (an all-pass)
    spectrum = [np.abs(np.fft.rfft(x)) for x in (voice, rotated)]
    bands = [np.add.reduceat(s, np.arange(0, s.size, s.size // 64)) for s in spectrum]
    np.testing.assert_allclose(bands[1], bands[0], rtol=0.05)  # same spectrum
    # Smaller peaks: by 1-2 dB on most narrations, less on some (Piper samples each one afresh).
    assert np.abs(rotated).max() < 0.97 * np.abs(voice).max()


def test_compressor_evens_out_loud_and_soft_speech(speech: SpeechResult):
    samples = decode_audio(speech.path, speech.sample_rate)
    squeezed = compress_speech(samples, speech.sample_rate)
    assert np.all(np.abs(squeezed) <= np.abs(samples) + 1e-12)  # it only turns down
    loud = _frames_rms(samples, 441) > 0.5 * _frames_rms(samples, 441).max()
    quiet = (_frames_rms(samples, 441) > 0.01) & ~loud
    reduction = _frames_rms(squeezed, 441) / np.maximum(_frames_rms(samples, 441), 1e-9)
    assert reduction[loud].mean() < 0.8 * reduction[quiet].mean()


def test_music_volume_outside_zero_to_one_is_rejected(speech: SpeechResult):
    with pytest.raises(ValueError, match="music volume"):
        mix_stems(speech, "calm", 1.5)


def test_without_a_timeline_speech_is_found_in_the_signal(speech: SpeechResult):
    untimed = SpeechResult(speech.path, speech.duration, speech.sample_rate)
    samples = decode_audio(speech.path, speech.sample_rate)
    spans = speech_spans(untimed, samples)
    for sentence in speech.segments:  # each sentence's middle is inside a span
        middle = (sentence.start + sentence.end) / 2
        assert any(a <= middle <= b for a, b in spans)
    assert spans[0][0] > 0.05 and spans[-1][1] < speech.duration  # the lead-in and tail are not speech
