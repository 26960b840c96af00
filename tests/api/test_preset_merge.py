"""`api.submit.apply_preset`: what a body sets wins over its preset, option by option."""

from api.submit import apply_preset
from schemas.api import GenerateRequest, PresetIn, TrainRequest

PRESET = PresetIn.model_validate(
    {
        "name": "shorts",
        "variant": "sadtalker",
        "voice": "espeak-ng:en",
        "language": "en-us",
        "options": {"durationSeconds": 30, "aspectRatio": "9:16", "captions": True, "music": "calm"},
    }
)


def test_the_preset_fills_what_the_body_left_out() -> None:
    merged = apply_preset(GenerateRequest.model_validate({"topic": "tides", "preset": "shorts"}), PRESET)
    assert (merged.variant, merged.voice, merged.language) == ("sadtalker", "espeak-ng:en", "en-us")
    assert merged.options.duration_seconds == 30 and merged.options.aspect_ratio == "9:16"
    assert merged.options.captions and merged.options.music == "calm"
    assert merged.options.fps == 25 and merged.options.resolution == "480p"  # neither set them: defaults
    assert merged.topic == "tides" and merged.preset == "shorts"
    # The preset's duration counts as chosen (a user script then does not refit it).
    assert "duration_seconds" in merged.options.model_fields_set
    assert "fps" not in merged.options.model_fields_set


def test_fields_the_body_sets_override_the_preset_one_by_one() -> None:
    body = GenerateRequest.model_validate(
        {"topic": "tides", "variant": "svd", "preset": "shorts", "options": {"captions": False, "fps": 30}}
    )
    merged = apply_preset(body, PRESET)
    assert merged.variant == "svd" and merged.voice == "espeak-ng:en"
    options = merged.options
    assert (options.captions, options.fps) == (False, 30)  # the body's
    assert (options.duration_seconds, options.aspect_ratio, options.music) == (30, "9:16", "calm")  # the preset's


def test_a_value_equal_to_the_default_still_overrides_when_it_is_given() -> None:
    body = GenerateRequest.model_validate({"topic": "t", "options": {"durationSeconds": 12}, "language": "en"})
    merged = apply_preset(body, PRESET)
    assert merged.options.duration_seconds == 12 and merged.language == "en"


def test_a_preset_without_options_or_fields_changes_nothing() -> None:
    body = GenerateRequest.model_validate({"topic": "t", "options": {"fps": 30}})
    merged = apply_preset(body, PresetIn(name="empty"))
    assert merged == body and merged.options.model_fields_set == {"fps"}


def test_train_bodies_merge_the_same_way() -> None:
    body = TrainRequest.model_validate(
        {"images": ["s3://uploads/u/a.png"], "consent": True, "preset": "shorts", "options": {"fps": 30}}
    )
    merged = apply_preset(body, PRESET)
    assert isinstance(merged, TrainRequest) and merged.images == ["s3://uploads/u/a.png"] and merged.consent
    assert (merged.variant, merged.options.fps, merged.options.duration_seconds) == ("sadtalker", 30, 30)
