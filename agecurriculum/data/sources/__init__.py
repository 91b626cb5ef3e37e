"""Dataset loaders: each reads one dataset's own labelling scheme into :class:`FaceRecord` lists plus a report.

One module per dataset (UTKFace, Adience, MORPH-II, FairFace) and :func:`load_csv` for a user's own data.
:data:`DATASETS` knows where each dataset sits under a data root laid out like::

    root/utkface/UTKFace/                          UTKFace images (labels in the names)
    root/adience/fold_{0..4}_data.txt, faces/      Adience folds and face images
    root/morph2/images/, morph2_*.csv              MORPH-II images and/or the published label tables
    root/fairface/fairface_label_{val,train}.csv   FairFace tables (either or both) and their val/, train/ images

and :func:`discover` loads whichever are there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from agecurriculum.data.records import LoadResult, merge_results
from agecurriculum.data.sources.adience import (
    AdienceKey,
    AdienceSplit,
    ResolvedSplit,
    adience_age,
    adience_folds,
    adience_key,
    load_adience,
    load_adience_protocol,
    resolve_split,
)
from agecurriculum.data.sources.fairface import FAIRFACE_TABLES, load_fairface
from agecurriculum.data.sources.generic import load_csv
from agecurriculum.data.sources.morph2 import load_morph2, load_morph2_csv
from agecurriculum.data.sources.utkface import load_utkface

__all__ = [
    "AdienceKey",
    "AdienceSplit",
    "DATASETS",
    "DatasetSource",
    "HISTOGRAM_DATASETS",
    "ResolvedSplit",
    "WHY_NOT_HISTOGRAM",
    "adience_age",
    "adience_folds",
    "adience_key",
    "discover",
    "label_records",
    "load_dataset",
    "load_adience",
    "load_adience_protocol",
    "load_csv",
    "load_fairface",
    "load_morph2",
    "load_morph2_csv",
    "load_utkface",
    "resolve_split",
]


@dataclass(frozen=True)
class DatasetSource:
    """How to find and load one dataset in its folder (``root/<name>`` under a data root).

    Attributes:
        layout: what the dataset folder must hold, for help texts and error messages.
        load: ``load(folder, require_images)`` -> the dataset, or None when its layout is absent.
        framing: how its images become model inputs: ``"aligned"``, they are face crops framed as the aligner
            frames them already (only squared and resized, so no face is lost to the detector), or ``"detect"``,
            the face is found and aligned (:class:`~agecurriculum.data.FaceAligner`). A mode of
            :func:`~agecurriculum.data.cache.preprocess`.
    """

    layout: str
    load: Callable[[Path, bool], LoadResult | None]
    framing: str = "detect"


def _utkface(folder: Path, require_images: bool) -> LoadResult | None:
    # The dataset folder holds UTKFace/; accept the image folder itself too. The names are the labels, so
    # images always exist.
    images = folder / "UTKFace" if (folder / "UTKFace").is_dir() else folder
    return load_utkface(images) if any(images.glob("*.jpg")) else None


def _adience(folder: Path, require_images: bool) -> LoadResult | None:
    return load_adience(folder, require_images) if any(folder.glob("fold_[0-4]_data.txt")) else None


def _morph2(folder: Path, require_images: bool) -> LoadResult | None:
    images, tables = folder / "images", sorted(folder.glob("morph2_*.csv"))
    # With images, their names hold every label (and cover images the tables lack); without, the tables describe
    # all 55k MORPH-II images, which is what an age histogram wants.
    if require_images:
        return load_morph2(images) if images.is_dir() else None
    if tables:
        return load_morph2_csv(tables)
    return load_morph2(images) if images.is_dir() else None


def _fairface(folder: Path, require_images: bool) -> LoadResult | None:
    # Both published tables, validation first (the order older runs saw); the split is per image, so the images
    # of one table keep their part whether the other table is there or not.
    tables = [name for name in FAIRFACE_TABLES if (folder / name).is_file()]
    if not tables:
        return None
    return merge_results([load_fairface(folder, csv=name, require_images=require_images) for name in tables])


# FairFace's images are dlib face chips at padding 0.25 (its authors' detect_face.py), the framing the aligner gives
# at the default padding: taken as they are, none of them is lost to the detector (it missed 26% of them).
DATASETS: dict[str, DatasetSource] = {
    "utkface": DatasetSource("UTKFace/ with images named AGE_GENDER_RACE_DATETIME.jpg.chip.jpg", _utkface,
                             framing="aligned"),
    "adience": DatasetSource("fold_{0..4}_data.txt and faces/", _adience),
    "morph2": DatasetSource("images/ and/or morph2_*.csv", _morph2),
    "fairface": DatasetSource("fairface_label_val.csv and/or fairface_label_train.csv, with val/ and train/",
                              _fairface, framing="aligned"),
}
# The paper fits its age bins on these datasets' labels: exact ages, and Adience's groups.
HISTOGRAM_DATASETS = ("utkface", "adience", "morph2")
# Why every other dataset is left out of the bin fit, for the messages of the commands that fit bins. FairFace's
# decades that do fit (0-2, 60+) are left out too: counting them and not the rest would weigh the first and last
# bins with FairFace's images and the middle ones without, which skews the fit.
WHY_NOT_HISTOGRAM = {
    "fairface": "its age labels are decades, not exact ages, so they cannot fix bin boundaries: a decade that "
    "straddles the constraint groups has no bin until the boundaries exist, and one inside a group has that "
    "group's bin whatever they are",
}


def discover(
    root: str | Path, require_images: bool = True, datasets: Iterable[str] | None = None
) -> dict[str, LoadResult]:
    """Loads every known dataset found under ``root`` (layout in the module docstring).

    Args:
        root: the data root.
        require_images: keep only labels whose image exists; False gives the label-only view (all Adience fold
            rows, all MORPH-II table rows).
        datasets: names from :data:`DATASETS` to look for; default all.

    Returns:
        ``{name: LoadResult}`` for the datasets found, in :data:`DATASETS` order.

    Raises:
        ValueError: for an unknown dataset name, or when none is found (the message lists the expected layout).
    """
    root = Path(root)
    names = list(DATASETS) if datasets is None else list(datasets)
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; known: {list(DATASETS)}")
    found = {}
    for name in DATASETS:
        result = DATASETS[name].load(root / name, require_images) if name in names and root.is_dir() else None
        if result is not None:
            found[name] = result
    if not found:
        layouts = "\n".join(f"  {name}/: {DATASETS[name].layout}" for name in names)
        raise ValueError(f"{root}: no dataset found; expected at least one of:\n{layouts}")
    return found


def load_dataset(name: str, folder: str | Path, require_images: bool = True) -> LoadResult:
    """Loads the dataset ``name`` from its own folder (what sits at ``root/<name>`` in the layout above).

    Raises:
        ValueError: for an unknown name, or a folder that does not hold the dataset's layout.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {list(DATASETS)}")
    result = DATASETS[name].load(Path(folder), require_images)
    if result is None:
        raise ValueError(f"{folder}: not a {name} folder; expected {DATASETS[name].layout}")
    return result


def label_records(root: str | Path, datasets: Iterable[str] = HISTOGRAM_DATASETS) -> dict[str, LoadResult]:
    """The label-only view for the age histogram: UTKFace names, all Adience fold rows, all MORPH-II table rows."""
    return discover(root, require_images=False, datasets=datasets)
