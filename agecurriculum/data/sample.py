"""A tiny data root of generated faces, for trying the API without downloading a dataset.

:func:`write_sample_data` writes a UTKFace-style and a MORPH-II-style folder (the layout :func:`discover
<agecurriculum.data.sources.discover>` reads) whose images are all crops of one bundled photo, scikit-image's
portrait of astronaut Eileen Collins (NASA, public domain), shifted, mirrored and brightened a little so that no two
files are the same, and whose labels are made up: ages spread over the eight age bins of the paper and both
genders. A model trained on it learns nothing about age or gender; it is there so that code that loads, crops,
splits and trains (the README's snippet, the docs' examples, your own first script) runs in seconds on any machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

__all__ = ["SAMPLE_MORPH2_AGES", "SAMPLE_UTKFACE_AGES", "write_sample_data"]

#: The ages the UTKFace-style images cycle through, two or more in each of the paper's eight bins.
SAMPLE_UTKFACE_AGES = (1, 2, 4, 5, 9, 12, 16, 20, 26, 30, 37, 42, 48, 55, 63, 75)
#: The ages of the MORPH-II-style subjects at their first picture (MORPH-II's people are 16 to 77).
SAMPLE_MORPH2_AGES = (16, 19, 23, 28, 33, 41, 52, 64)

# The astronaut's face lies at about x 175-266, y 76-167 of the 512 x 512 photo.
_FACE_CROP = (30, 230, 120, 320)  # y0, y1, x0, x1: the face with a border, as UTKFace's aligned chips frame it
_PHOTO_CROP = (0, 260, 90, 350)  # a head-and-shoulders photo, in which the face must be found (MORPH-II)


def _variant(i: int, crop: tuple[int, int, int, int], size: int) -> Image.Image:
    """The ``i``-th variant of a crop of the astronaut photo: shifted by up to 15 px, every other one mirrored, its
    brightness scaled by 0.85-1.15, resized to ``size`` x ``size``."""
    y0, y1, x0, x1 = crop
    dx, dy = (i * 7) % 30 - 15, (i * 5) % 20 - 10
    photo = skdata.astronaut()
    pixels = photo[max(0, y0 + dy) : y1 + dy, max(0, x0 + dx) : x1 + dx].astype(np.float32)
    if i % 2:
        pixels = pixels[:, ::-1]
    pixels = np.clip(pixels * (0.85 + 0.3 * ((i * 3) % 11) / 10), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels)).resize((size, size))


def write_sample_data(folder: str | Path, utkface: int = 48, morph2: int = 32) -> Path:
    """Writes a tiny data root of generated faces into ``folder`` and returns its path.

    For trying the API, not for accuracy: every image is a crop of the same photo and the labels are made up (see
    the module docstring). The layout is the one the loaders read (``docs/data.rst``)::

        folder/utkface/UTKFace/AGE_GENDER_RACE_DATETIME.jpg.chip.jpg    100 x 100 face crops ("aligned" framing)
        folder/morph2/images/ID_PICNUM{M,F}AGE.JPG                       160 x 160 photos (faces are detected)

    UTKFace-style ages cycle through :data:`SAMPLE_UTKFACE_AGES` and alternate genders, so every bin holds images
    of both; the MORPH-II-style images are two pictures of each subject (a year apart, ages from
    :data:`SAMPLE_MORPH2_AGES`), so subject-disjoint splits have subjects to split. Writing again over the same
    folder rewrites the same files; about 0.5 MB for the defaults.

    Args:
        folder: the data root to write (created with its parents when missing).
        utkface: how many UTKFace-style images.
        morph2: how many MORPH-II-style images (an odd count leaves the last subject one picture).

    Raises:
        ValueError: a negative count.
    """
    if utkface < 0 or morph2 < 0:
        raise ValueError(f"image counts must be >= 0, got utkface={utkface}, morph2={morph2}")
    root = Path(folder)
    utk, morph = root / "utkface" / "UTKFace", root / "morph2" / "images"
    utk.mkdir(parents=True, exist_ok=True)
    morph.mkdir(parents=True, exist_ok=True)
    ages = SAMPLE_UTKFACE_AGES
    for i in range(utkface):
        age, gender = ages[i % len(ages)], (i + i // len(ages)) % 2  # genders swap each cycle over the ages
        name = f"{age}_{gender}_{i % 5}_20170116{i:09d}.jpg.chip.jpg"
        _variant(i, _FACE_CROP, 100).save(utk / name, quality=85)
    for i in range(morph2):
        subject, picture = i // 2, i % 2
        cycle, first_age = divmod(subject, len(SAMPLE_MORPH2_AGES))
        age, sex = SAMPLE_MORPH2_AGES[first_age] + picture, "MF"[(subject + cycle) % 2]
        name = f"{subject + 1:06d}_{picture}{sex}{age}.JPG"
        _variant(i + 100, _PHOTO_CROP, 160).save(morph / name, quality=85)
    return root
