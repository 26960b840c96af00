"""Batches without servers: expanding a batch body into generate bodies, and a batch's overall state."""

import pytest

from api.batches import expand, overall_state
from api.errors import FieldError
from schemas.api import BatchRequest


def test_the_product_runs_topic_then_variant_then_aspect_ratio_with_common_fields() -> None:
    body = BatchRequest.model_validate(
        {"topics": ["a", "b"], "variants": ["svd", "sadtalker"], "aspectRatios": ["9:16", "1:1"],
         "common": {"style": "calm", "options": {"durationSeconds": 6, "aspectRatio": "16:9"}}}
    )  # fmt: skip
    items = expand(body, max_items=8)
    combos = [(i.body.topic, i.body.variant, i.body.options.aspect_ratio) for i in items]
    assert combos[:4] == [
        ("a", "svd", "9:16"),
        ("a", "svd", "1:1"),
        ("a", "sadtalker", "9:16"),
        ("a", "sadtalker", "1:1"),
    ]
    assert len(combos) == 8 and combos[4][0] == "b"
    assert all(i.body.style == "calm" and i.body.options.duration_seconds == 6 for i in items)
    # What the body sets counts as set (a preset then does not override it); what it leaves out does not.
    assert "variant" in items[0].body.model_fields_set and "aspect_ratio" in items[0].body.options.model_fields_set
    plain = expand(BatchRequest.model_validate({"topics": ["a"]}), max_items=1)[0].body
    assert "variant" not in plain.model_fields_set and plain.options.aspect_ratio == "16:9"


def test_an_items_field_is_named_in_the_form_the_body_used() -> None:
    product = expand(BatchRequest.model_validate({"topics": ["a", "b"], "variants": ["svd", "sadtalker"]}), 4)
    last = product[3].where
    assert last(("body", "topic")) == ("body", "topics", 1)
    assert last(("body", "variant")) == ("body", "variants", 1)
    assert last(("body", "options", "aspectRatio")) == ("body", "common", "options", "aspectRatio")
    assert last(("body", "profileId")) == ("body", "common", "profileId")
    assert last(("graph", "nodes")) == ("graph", "nodes")
    items = expand(BatchRequest.model_validate({"items": [{"topic": "a"}, {"topic": "b"}]}), 2)
    assert items[1].where(("body", "options", "music")) == ("body", "items", 1, "options", "music")


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"topics": ["a", "b", "c"], "variants": ["svd", "sadtalker"]}, ("body", "topics"), "= 6 jobs"),
        ({"items": [{"topic": "a"}] * 5}, ("body", "items"), "5 jobs"),
        ({"items": [{"topic": "a"}], "common": {}}, ("body", "common"), "not both"),
        ({}, ("body", "items"), "or `topics`"),
    ],
)
def test_a_batch_in_neither_form_or_too_big_names_the_field(body, loc, words) -> None:
    with pytest.raises(FieldError) as err:
        expand(BatchRequest.model_validate(body), max_items=4)
    assert err.value.loc == loc and words in err.value.message


@pytest.mark.parametrize(
    ("states", "overall"),
    [
        (["queued", "queued"], "queued"),
        (["running", "queued"], "running"),
        (["completed", "queued"], "running"),  # one ended, the next waits for its slot
        (["completed", "completed"], "completed"),
        (["completed", "failed", "cancelled"], "failed"),
        (["completed", "cancelled"], "cancelled"),
        ([], "completed"),  # every job was deleted on its own
    ],
)
def test_overall_state(states, overall) -> None:
    assert overall_state(states) == overall
