"""Face boxes for framing and facial edits, anchored to the face mesh's eyes and lips.

A face box is a plain `(x, y, width, height)`, so it survives every crop, scale and camera move
of the renderer; `anchored_box` places it so that the eye centres and the lip seam of the mesh
sit at fixed fractions of it (`EYE_X`, `EYE_LINE`, `LIP_LINE`). The facial edits (`expressions`)
read the eyes and mouth back from those fractions, so they land on this face's own features.
"""

import numpy as np

from gpu_worker.media.facemesh import Box as Box  # the renderer imports `Box` from here
from gpu_worker.media.facemesh import FaceMesh, face_mesh

# The fractions of a face box where the anchors sit. These match the frontal-face box that
# framing and the edits were first tuned with (on the built-in presenter), so framing is unchanged.
EYE_X = (0.27, 0.73)  # eye centres across the box: the subject's right eye (left in the image), left eye
EYE_LINE = 0.38  # the eye centres, down the box
LIP_LINE = 0.845  # the seam between the lips, down the box


def anchored_box(mesh: FaceMesh) -> Box:
    """The face box whose anchor fractions fall on this mesh's eye centres and lip seam.

    Sizes come from distances in the face's own frame (eye to eye, eye line to lip seam), so a
    slightly tilted head still gets a box of the right size, centred between the eyes.

    Args:
        mesh: the face mesh.

    Returns:
        The face box in the mesh's image coordinates.
    """
    right, left = mesh.eye_centres()
    across = left - right
    eye_gap = float(np.hypot(*across))
    middle = (right + left) / 2
    # The lip seam's distance from the eye line, measured perpendicular to it.
    down = mesh.lip_seam() - middle
    lip_gap = abs(float(across[0] * down[1] - across[1] * down[0])) / max(eye_gap, 1e-6)
    w = max(eye_gap / (EYE_X[1] - EYE_X[0]), 1.0)
    h = max(lip_gap / (LIP_LINE - EYE_LINE), 1.0)
    x = middle[0] - w * (EYE_X[0] + EYE_X[1]) / 2
    y = middle[1] - h * EYE_LINE
    return round(x), round(y), round(w), round(h)


def detect_face(image: np.ndarray) -> Box | None:
    """Find the largest face and its anchored box.

    Args:
        image: an HxWx3 RGB (or HxW gray) uint8 array.

    Returns:
        The face box in `image` coordinates, or None when no face is found.
    """
    mesh = face_mesh(image)
    return anchored_box(mesh) if mesh is not None else None


def mouth_box(face: Box) -> Box:
    """Where the lips are inside a face box: around the lip line, a bit wider than a smile.

    Args:
        face: the face box.

    Returns:
        The mouth box.
    """
    x, y, w, h = face
    return x + int(w * 0.2), y + int(h * 0.7), int(w * 0.6), int(h * 0.28)


def eyes_box(face: Box) -> Box:
    """The band across both eyes inside a face box.

    Args:
        face: the face box.

    Returns:
        The eye band box.
    """
    x, y, w, h = face
    return x + int(w * 0.1), y + int(h * 0.28), int(w * 0.8), int(h * 0.2)
