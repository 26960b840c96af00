"""Which uploads a stored job request keeps alive: retention must not delete what a retry would need."""

from core.retention import uploads_named


def test_every_kind_of_upload_a_request_names_is_kept() -> None:
    request = {
        "images": ["s3://uploads/u/a.png"],
        "audio": ["s3://uploads/u/b.wav"],
        "portrait": "s3://uploads/u/face.jpg",
        "options": {"media": ["s3://uploads/u/c.mp4", "s3://uploads/u/d.jpg"], "music": "s3://uploads/u/music-1.mp3"},
    }
    assert sorted(uploads_named(request)) == sorted(
        [
            "s3://uploads/u/a.png",
            "s3://uploads/u/b.wav",
            "s3://uploads/u/face.jpg",
            "s3://uploads/u/c.mp4",
            "s3://uploads/u/d.jpg",
            "s3://uploads/u/music-1.mp3",
        ]
    )


def test_a_synthesised_bed_and_missing_fields_name_nothing() -> None:
    assert uploads_named({"options": {"music": "calm"}}) == []
    assert uploads_named({"portrait": None}) == []
