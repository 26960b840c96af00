"""The face mesh on real photos: where its points land, its regions, faces it must not find, and the vendored models."""

import hashlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from gpu_worker.media.facedetect import ASSETS, detect_faces
from gpu_worker.media.facemesh import FaceMesh, face_mesh
from gpu_worker.media.faces import EYE_LINE, EYE_X, LIP_LINE, anchored_box, detect_face
from gpu_worker.media.presenter import NoFaceInPortrait, builtin_portrait, find_face, frame_portrait

# Where Eileen Collins's face is in `skimage.data.astronaut()` (hairline to chin, cheek to cheek), by eye.
ASTRONAUT_FACE = (175, 65, 100, 110)


def _inside(points: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.0) -> bool:
    x, y, w, h = box
    xy = points[:, :2]
    return bool(np.all((xy >= (x - margin, y - margin)) & (xy <= (x + w + margin, y + h + margin))))


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def mesh(astronaut: np.ndarray) -> FaceMesh:
    found = face_mesh(astronaut)
    assert found is not None
    return found


def _warped(image: np.ndarray, angle: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned and scaled about its centre on a grey ground, and the 2x3 matrix that did it."""
    import cv2

    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    warped = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    return warped, matrix


def test_the_mesh_lies_on_the_astronauts_face(mesh: FaceMesh) -> None:
    assert mesh.points.shape == (468, 3) and np.isfinite(mesh.points).all() and mesh.score > 0.9
    face = mesh.face_box()
    assert _iou(face, ASTRONAUT_FACE) > 0.75, face
    assert _inside(mesh.points, face, margin=2)
    (right_eye, left_eye), mouth = mesh.eye_centres(), mesh.mouth_box()
    assert right_eye[0] < left_eye[0], "the subject's right eye is on the image's left"
    assert max(right_eye[1], left_eye[1]) < mouth[1], "eyes above the mouth"
    assert 0.4 < mesh.mouth_width() / face[2] < 0.65  # she smiles: a wide mouth
    assert _inside(mesh.points[[13, 14, 61, 291]], mouth, margin=1)
    assert 0.08 < mesh.mouth_openness() < 0.25  # parted lips, teeth showing (measured 0.154)
    assert all(0.15 < e < 0.4 for e in mesh.eye_openness())  # open eyes (measured 0.26 and 0.26)


def test_the_mesh_follows_a_turned_and_smaller_copy(astronaut: np.ndarray, mesh: FaceMesh) -> None:
    turned, matrix = _warped(astronaut, angle=20, scale=0.7)
    found = face_mesh(turned)
    assert found is not None
    # Point centres to OpenCV's pixel indices and back, around the warp.
    expected = (mesh.points[:, :2] - 0.5) @ matrix[:, :2].T + matrix[:, 2] + 0.5
    error = np.hypot(*(found.points[:, :2] - expected).T)
    assert error.mean() < 1.5 and error.max() < 5, (error.mean(), error.max())
    assert found.mouth_openness() == pytest.approx(mesh.mouth_openness(), abs=0.03)


def test_a_small_face_is_found_in_tiles(astronaut: np.ndarray, mesh: FaceMesh) -> None:
    small, matrix = _warped(astronaut, angle=0, scale=0.5)  # a face ~50 px wide in 512 px
    found = face_mesh(small)
    assert found is not None
    expected = (mesh.points[:, :2] - 0.5) @ matrix[:, :2].T + matrix[:, 2] + 0.5
    assert np.hypot(*(found.points[:, :2] - expected).T).mean() < 1.5


@pytest.mark.parametrize(
    "image",
    [
        data.coffee(),
        data.chelsea(),  # a cat's face is not a face here
        np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3)),
        np.full((120, 160, 3), 128, np.uint8),
    ],
    ids=["coffee", "cat", "gradient", "grey"],
)
def test_no_face_is_found_where_there_is_none(image: np.ndarray) -> None:
    assert detect_faces(image) == []
    assert face_mesh(image) is None and detect_face(image) is None


def test_the_anchored_box_puts_the_eyes_and_lips_where_the_edits_expect_them(mesh: FaceMesh) -> None:
    x, y, w, h = anchored_box(mesh)
    (right_eye, left_eye), seam = mesh.eye_centres(), mesh.lip_seam()
    assert right_eye[0] == pytest.approx(x + EYE_X[0] * w, abs=1.5)
    assert left_eye[0] == pytest.approx(x + EYE_X[1] * w, abs=1.5)
    assert (right_eye[1] + left_eye[1]) / 2 == pytest.approx(y + EYE_LINE * h, abs=1.5)
    assert seam[1] == pytest.approx(y + LIP_LINE * h, abs=1.5)
    # On the built-in presenter the box is the frontal-face box that framing was tuned with.
    assert _iou((x, y, w, h), (177, 67, 93, 93)) > 0.9


def test_the_framed_presenter_keeps_her_face_where_the_box_says() -> None:
    framed, box = frame_portrait(builtin_portrait(), (320, 240))
    found = detect_face(np.asarray(framed))
    assert found is not None and _iou(found, box) > 0.8


def test_concurrent_calls_give_the_same_mesh(astronaut: np.ndarray) -> None:
    images = [astronaut, _warped(astronaut, 15, 0.8)[0]] * 4
    expected = [face_mesh(image) for image in images[:2]] * 4
    start = threading.Barrier(len(images))

    def run(image: np.ndarray) -> FaceMesh | None:
        start.wait()
        return face_mesh(image)

    with ThreadPoolExecutor(len(images)) as pool:
        results = list(pool.map(run, images))
    for got, want in zip(results, expected, strict=True):
        assert got is not None and want is not None and np.array_equal(got.points, want.points)


def test_a_portrait_without_a_face_is_refused_for_good() -> None:
    cat = Image.fromarray(data.chelsea())
    with pytest.raises(NoFaceInPortrait) as info:
        find_face(cat)
    assert info.value.type == "NoFaceInPortrait" and info.value.non_retryable
    with pytest.raises(NoFaceInPortrait):
        frame_portrait(cat, (320, 240))
    box, lips = find_face(builtin_portrait())
    assert 0.08 < lips.openness(box) < 0.25  # her parted lips, measured in the face box


def test_vendored_models_match_their_provenance() -> None:
    provenance = (ASSETS / "PROVENANCE.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", provenance, flags=re.MULTILINE))
    vendored = {p.name for p in Path(ASSETS).iterdir() if p.suffix in (".tflite", ".jpg")}
    assert vendored <= set(listed), f"not in PROVENANCE.md: {vendored - set(listed)}"
    for name, digest in listed.items():
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == digest, name
