"""Dataset loaders: each reads one dataset's own labelling scheme into :class:`FaceRecord` lists plus a report.

One module per dataset (UTKFace, Adience, MORPH-II, FairFace) and :func:`load_csv` for a user's own data.
:data:`DATASETS` knows where each dataset sits under a data root laid out like::

    root/utkface/UTKFace/                          UTKFace images (labels in the names)
    root/adience/fold_{0..4}_data.txt, faces/      Adience folds and face images
    root/morph2/images/, morph2_*.csv              MORPH-II images and/or the published label tables
    root/fairface/fairface_label_{val,train}.csv   FairFace tables (either or both) and their val/, train/ images

and :func:`discover` loads whichever are there. Everything the rest of the library needs to know about a dataset is
a trait of its :class:`DatasetSource` (its framing, its comparison protocols, whether its labels count for the age
histogram), so a new dataset is one loader module plus one :data:`DATASETS` entry (``docs/add_dataset.rst``).
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
    "PHOTO_FRAMING",
    "ResolvedSplit",
    "WHY_NOT_HISTOGRAM",
    "adience_age",
    "adience_folds",
    "adience_key",
    "alignment_record",
    "discover",
    "histogram_datasets",
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
    "why_not_histogram",
]

# How a face is framed when its dataset says nothing else, and how every photo is framed at prediction: the face is
# detected and aligned.
PHOTO_FRAMING = "detect"


@dataclass(frozen=True)
class DatasetSource:
    """How to find and load one dataset in its folder (``root/<name>`` under a data root), and its traits.

    Attributes:
        layout: what the dataset folder must hold, for help texts and error messages.
        load: ``load(folder, require_images)`` -> the dataset, or None when its layout is absent.
        framing: how its images become model inputs: ``"aligned"``, they are face crops framed as the aligner
            frames them already (only squared and resized, so no face is lost to the detector), or ``"detect"``
            (:data:`PHOTO_FRAMING`), the face is found and aligned (:class:`~agecurriculum.data.FaceAligner`). A
            mode of :func:`~agecurriculum.data.cache.preprocess`; a release records it (:func:`alignment_record`).
        title: the dataset's name in reports, e.g. ``"UTKFace"``.
        protocols: the comparison protocols its test predictions are also scored with, keys of
            :data:`~agecurriculum.evaluation.protocols.PROTOCOLS` (e.g. ``"seven_groups"``).
        not_in_histogram: None when its age labels count for the age histogram the bins are fitted on; else why
            they cannot (for the messages of the commands that fit bins).
    """

    layout: str
    load: Callable[[Path, bool], LoadResult | None]
    framing: str = PHOTO_FRAMING
    title: str = ""
    protocols: tuple[str, ...] = ()
    not_in_histogram: str | None = None


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


# The paper fits its age bins on the labels of UTKFace, Adience and MORPH-II: exact ages, and Adience's groups.
# FairFace's images are dlib face chips at padding 0.25 (its authors' detect_face.py), the framing the aligner gives
# at the default padding: taken as they are, none of them is lost to the detector (it missed 26% of them). Its
# decades that do fit the constraint groups (0-2, 60+) are left out of the bin fit too: counting them and not the
# rest would weigh the first and last bins with FairFace's images and the middle ones without, which skews the fit.
DATASETS: dict[str, DatasetSource] = {
    "utkface": DatasetSource(
        "UTKFace/ with images named AGE_GENDER_RACE_DATETIME.jpg.chip.jpg",
        _utkface,
        framing="aligned",
        title="UTKFace",
        protocols=("seven_groups",),
    ),
    "adience": DatasetSource(
        "fold_{0..4}_data.txt and faces/", _adience, title="Adience", protocols=("adience_groups",)
    ),
    "morph2": DatasetSource("images/ and/or morph2_*.csv", _morph2, title="MORPH-II"),
    "fairface": DatasetSource(
        "fairface_label_val.csv and/or fairface_label_train.csv, with val/ and train/",
        _fairface,
        framing="aligned",
        title="FairFace",
        not_in_histogram="its age labels are decades, not exact ages, so they cannot fix bin boundaries: a decade "
        "that straddles the constraint groups has no bin until the boundaries exist, and one inside a group has that "
        "group's bin whatever they are",
    ),
}


def histogram_datasets() -> tuple[str, ...]:
    """The datasets of :data:`DATASETS` whose age labels count for the age histogram the bins are fitted on."""
    return tuple(name for name, source in DATASETS.items() if source.not_in_histogram is None)


def why_not_histogram() -> dict[str, str]:
    """Every other dataset of :data:`DATASETS` -> why its labels are left out of the bin fit."""
    return {name: source.not_in_histogram for name, source in DATASETS.items() if source.not_in_histogram is not None}


# The registry as the library ships it; the functions above read it as it is at the time of the call.
HISTOGRAM_DATASETS = histogram_datasets()
WHY_NOT_HISTOGRAM = why_not_histogram()


def alignment_record() -> dict[str, str]:
    """A release's ``preprocessing.alignment``: the framing of each dataset of :data:`DATASETS` trained on aligned
    crops as they are, and ``"other"``: :data:`PHOTO_FRAMING`, how every other dataset's faces, and every photo at
    prediction, are framed."""
    return {**{name: s.framing for name, s in DATASETS.items() if s.framing != PHOTO_FRAMING}, "other": PHOTO_FRAMING}


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


def label_records(root: str | Path, datasets: Iterable[str] | None = None) -> dict[str, LoadResult]:
    """The label-only view for the age histogram: UTKFace names, all Adience fold rows, all MORPH-II table rows.

    ``datasets`` defaults to :func:`histogram_datasets`.
    """
    return discover(root, require_images=False, datasets=histogram_datasets() if datasets is None else datasets)
