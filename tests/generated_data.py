"""Pieces of the generated data roots that the end-to-end tests (train, ablate, protocol, loaders) share."""

from PIL import Image
from skimage import data as skdata

# Exact ages that cover all eight paper bins, cycled over generated UTKFace / MORPH-II files.
AGES = [1, 4, 9, 17, 22, 28, 33, 40, 47, 55, 63, 75]
# One age label per Adience group, as the fold files spell them ("(8, 12)" is how they write 8-13).
ADIENCE_AGES = ["(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)"]
ADIENCE_HEADER = "\t".join(
    "user_id original_image face_id age gender x y dx dy tilt_ang fiducial_yaw_angle fiducial_score".split()
)


def shifted_face(i: int, size: int) -> Image.Image:
    """The ``i``-th face image: a crop around the astronaut's face (about x 175-266, y 76-167), shifted a little
    with ``i`` so that every file differs, resized to ``size``."""
    dx, dy = (i * 7) % 30 - 15, (i * 5) % 20 - 10
    crop = skdata.astronaut()[30 + dy : 230 + dy, 120 + dx : 320 + dx]
    return Image.fromarray(crop).resize((size, size))
