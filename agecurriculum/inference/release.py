"""What inference needs to know about a release: where it is, its age bins, representative ages, preprocessing and
calibration temperatures.

A release is the folder :func:`~agecurriculum.train.save_release` writes (``model.safetensors`` + ``config.json``);
``agecurriculum train`` leaves one in ``RUN/release``. The library's own trained model is meant to ship as a
release inside the package, at :data:`DEFAULT_RELEASE_DIR`; every inference entry point takes a release path and
falls back to that folder when given none.

Temperatures (``extra.temperature``, e.g. ``{"gender": 1.4, "age": 1.1}``) are fitted on validation predictions
with :func:`~agecurriculum.evaluation.calibration.fit_temperature` and stored into an existing release with
:func:`write_release_temperature`; the :class:`~agecurriculum.inference.Predictor` then applies them to the
network's probabilities (``p ** (1 / T)`` renormalised). A release without them predicts exactly as before.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agecurriculum.bins import AgeBins
from agecurriculum.data.records import FEMALE, MALE
from agecurriculum.evaluation.metrics import representative_ages
from agecurriculum.fileio import atomic_write
from agecurriculum.model.ensemble import member_configs
# Reading and checking a release config lives with the format's writer; inference re-exports it.
from agecurriculum.train.checkpoint import RELEASE_CONFIG, check_release_config, read_release_config

__all__ = ["DEFAULT_RELEASE_DIR", "GENDER_NAMES", "ONNX_FILE", "TEMPERATURE_HEADS", "ReleaseInfo",
           "check_release_config", "read_release_config", "resolve_release", "write_release_temperature"]

# The trained default model: a release folder shipped with the package (model.safetensors + config.json).
DEFAULT_RELEASE_DIR = Path(__file__).resolve().parents[1] / "weights" / "default"

# Gender class index -> name, as the data layer labels them (records.MALE = 0, records.FEMALE = 1).
GENDER_NAMES = {MALE: "male", FEMALE: "female"}

# The heads a release's extra.temperature may scale; a head it leaves out keeps T = 1.
TEMPERATURE_HEADS = ("gender", "age")
ONNX_FILE = "model.onnx"  # where the onnx backend looks for the exported model inside a release folder


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
        temperature: ``{"gender": T, "age": T}``, the calibration temperature of each head's probabilities, from
            the release's ``extra.temperature``; 1.0 (no change) for a head it does not name, or without it.
    """

    bins: AgeBins
    rep_ages: np.ndarray
    image_size: int
    padding: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    config: Mapping[str, Any]
    temperature: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(TEMPERATURE_HEADS, 1.0))

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
        temperature = _temperature(config, source)
        return cls(bins, rep_ages, image_size, padding, mean, std, config, temperature)

    @property
    def architecture(self) -> str:
        """The network in words: its backbone (``"efficientnet-lite0"``), or for an ensemble its members'
        (``"ensemble of 2: efficientnet-lite0, efficientnet-lite0"``); ``"custom"`` for a custom backbone."""
        model = self.config["model"]
        names = [m.get("backbone") or "custom" for m in member_configs(model)]
        return f"ensemble of {len(names)}: {', '.join(names)}" if "members" in model else names[0]


def _temperature(config: Mapping[str, Any], source: str) -> dict[str, float]:
    """The release's ``extra.temperature`` with every head of :data:`TEMPERATURE_HEADS` filled in (1.0 if absent)."""
    given = (config.get("extra") or {}).get("temperature")
    if given is None:
        return dict.fromkeys(TEMPERATURE_HEADS, 1.0)
    if not isinstance(given, Mapping) or not set(given) <= set(TEMPERATURE_HEADS):
        raise ValueError(f"{source}: extra.temperature must be a mapping with keys among "
                         f"{', '.join(TEMPERATURE_HEADS)}, got {given!r}")
    temperature = {}
    for head in TEMPERATURE_HEADS:
        value = given.get(head, 1.0)
        # bool is an int to Python: "true" is no temperature.
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{source}: extra.temperature.{head} must be a positive finite number, got {value!r}")
        temperature[head] = float(value)
    return temperature


def write_release_temperature(release_dir: str | Path, temperature: Mapping[str, float]) -> Path:
    """Stores calibration temperatures in an existing release's ``config.json`` (``extra.temperature``).

    The whole file is rewritten atomically (a reader sees the old config or the new one), in the format
    :func:`~agecurriculum.train.save_release` writes; the weights are not touched. The entry replaces any earlier
    one whole: a head left out of ``temperature`` goes back to T = 1. The ONNX cache is keyed by the config's
    content, so a release exported on demand picks the temperatures up; a ``model.onnx`` already in the folder
    holds the old config and must be exported again (a warning says so).

    Args:
        release_dir: the release folder.
        temperature: ``{"gender": T, "age": T}`` or either alone, e.g. from
            :func:`~agecurriculum.evaluation.calibration.fit_temperature` on the validation predictions.

    Returns:
        The path of the rewritten ``config.json``.

    Raises:
        FileNotFoundError: the release has no ``config.json``.
        ValueError: the config is not a release config, or a temperature is not a positive finite number of a
            known head; the file is then left as it was.
    """
    release_dir = Path(release_dir)
    config = read_release_config(release_dir)
    path = release_dir / RELEASE_CONFIG
    temperature = dict(temperature)
    _temperature({"extra": {"temperature": temperature}}, f"{path} (new temperature)")  # nothing invalid is written
    config["extra"] = {**(config.get("extra") or {}), "temperature": {h: float(t) for h, t in temperature.items()}}
    atomic_write(path, (json.dumps(config, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    if (release_dir / ONNX_FILE).is_file():
        warnings.warn(f"{release_dir / ONNX_FILE} holds the release config it was exported with, without the new "
                      "temperature; export it again (agecurriculum export) for the onnx backend to apply it",
                      stacklevel=2)
    return path
