"""The committed JSON Schemas must match the models (regenerate with `make schemas`)."""

from schemas.export import JSON_DIR, render_all


def test_committed_json_schemas_are_current() -> None:
    expected = render_all()
    committed = {p.name: p.read_text() for p in JSON_DIR.glob("*.schema.json")}
    stale = sorted(name for name in expected if committed.get(name) != expected[name])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, f"stale: {stale}, extra: {extra}; run `make schemas`"


def test_api_bodies_are_camel_case_on_the_wire() -> None:
    props = render_all()["generate-request.schema.json"]
    assert '"profileId"' in props and '"durationSeconds"' in props and "profile_id" not in props
