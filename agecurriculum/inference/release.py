"""What inference needs to know about a release: where it is, its age bins, representative ages and preprocessing.

A release is the folder :func:`~agecurriculum.train.save_release` writes (``model.safetensors`` + ``config.json``);
``agecurriculum train`` leaves one in ``RUN/release``. The library's own trained model is meant to ship as a
release inside the package, at :data:`DEFAULT_RELEASE_DIR`; every inference entry point takes a release path and
falls back to that folder when given none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agecurriculum.bins import AgeBins
from agecurriculum.data.records import FEMALE, MALE
from agecurriculum.evaluation.metrics import representative_ages
from agecurriculum.model.ensemble import member_configs
# Reading and checking a release config lives with the format's writer; inference re-exports it.
from agecurriculum.train.checkpoint import RELEASE_CONFIG, check_release_config, read_release_config

__all__ = ["DEFAULT_RELEASE_DIR", "GENDER_NAMES", "ReleaseInfo", "check_release_config", "read_release_config",
           "resolve_release"]

# The trained default model: a release folder shipped with the package (model.safetensors + config.json).
DEFAULT_RELEASE_DIR = Path(__file__).resolve().parents[1] / "weights" / "default"

# Gender class index -> name, as the data layer labels them (records.MALE = 0, records.FEMALE = 1).
GENDER_NAMES = {MALE: "male", FEMALE: "female"}


def resolve_release(path: str | Path | None) -> Path:
    """The release folder or file to use: ``path``, or :data:`DEFAULT_RELEASE_DIR` when it is None.

    Raises:
        FileNotFoundError: ``path`` is None and no default model is installed (the message says so), or
            ``path`` does not exist.
    """
    if path is None:
        if not (DEFAULT_RELEASE_DIR / RELEASE_CONFIG).is_file():
            raise FileNotFoundError(
                f"no default model is installed (expected a release in {DEFAULT_RELEASE_DIR}); pass a release "
                "folder instead, e.g. the RUN/release folder that `agecurriculum train` writes (--model DIR)"
            )
        return DEFAULT_RELEASE_DIR
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    return path


@dataclass(frozen=True)
class ReleaseInfo:
    """The parts of a release config that turn an image into a prediction.

    Attributes:
        bins: the age bins the age head predicts, in class order.
        rep_ages: ``(K,)`` representative age of each bin in years: the expected age of a face is
            ``sum_k age_probs[k] * rep_ages[k]``. Taken from the release's ``extra.rep_ages`` (``agecurriculum
            train`` stores the mean training age in each bin); a release without them uses
            :func:`~agecurriculum.evaluation.metrics.representative_ages` of the bins (midpoints, last bin's lower
            end + 10).
        image_size: side of the square model input, in pixels; faces are aligned at this size.
        padding: border around the face in the aligned crop (dlib face-chip padding, see
            :class:`~agecurriculum.data.AlignConfig`).
        mean: per-channel mean the input is normalised with ([0, 1] RGB).
        std: per-channel standard deviation the input is normalised with.
        config: the whole release config.
    """

    bins: AgeBins
    rep_ages: np.ndarray
    image_size: int
    padding: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    config: Mapping[str, Any]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "release config") -> ReleaseInfo:
        """Reads the fields from a release config.

        Raises:
            ValueError: a field is missing or malformed; the message names ``source`` and the field.
        """
        config = check_release_config(config, source)
        for model in member_configs(config["model"]):
            if model.get("gender_classes", 2) != len(GENDER_NAMES):
                raise ValueError(f"{source}: the model predicts {model['gender_classes']} gender classes, "
                                 f"inference knows {len(GENDER_NAMES)} ({', '.join(GENDER_NAMES.values())})")
        try:
            bins = AgeBins.from_dict(config["age_bins"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: age_bins missing or malformed: {e}") from e
        pre = config.get("preprocessing") or {}
        try:
            image_size = int(pre["image_size"])
            mean = tuple(float(v) for v in pre["mean"])
            std = tuple(float(v) for v in pre["std"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: preprocessing needs image_size, mean and std: {e}") from e
        if image_size < 1 or len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"{source}: preprocessing needs image_size >= 1 and 3 means and 3 positive stds, "
                             f"got {pre}")
        rep = (config.get("extra") or {}).get("rep_ages")
        rep_ages = representative_ages(bins) if rep is None else np.asarray(rep, dtype=float)
        if rep_ages.shape != (len(bins),):
            raise ValueError(f"{source}: extra.rep_ages has {rep_ages.size} values for {len(bins)} age bins")
        padding = float(pre.get("padding", 0.25))  # AlignConfig's default, what releases without it were made with
        return cls(bins, rep_ages, image_size, padding, mean, std, config)

    @property
    def architecture(self) -> str:
        """The network in words: its backbone (``"efficientnet-lite0"``), or for an ensemble its members'
        (``"ensemble of 2: efficientnet-lite0, efficientnet-lite0"``); ``"custom"`` for a custom backbone."""
        model = self.config["model"]
        names = [m.get("backbone") or "custom" for m in member_configs(model)]
        return f"ensemble of {len(names)}: {', '.join(names)}" if "members" in model else names[0]
