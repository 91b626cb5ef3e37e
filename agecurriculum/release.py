"""The release format: trained weights for inference, in a folder of their own.

A release folder holds ``model.safetensors`` (the weights) and ``config.json``; :func:`save_release` writes both,
:func:`load_release` rebuilds the :class:`~agecurriculum.model.DualClassifier` (or
:class:`~agecurriculum.model.EnsembleClassifier`) from them, :func:`read_release_config` reads the config alone.
``agecurriculum train`` leaves one in ``RUN/release``; the library's own model ships as one inside the package
(:data:`~agecurriculum.inference.DEFAULT_RELEASE_DIR`). ``config.json`` holds::

    format, library_version   # RELEASE_FORMAT, the agecurriculum version that wrote it
    model                     # the model's constructor arguments (an ensemble: {"members": [...]})
    age_bins, age_labels      # AgeBins.to_dict() and its labels, in class order
    preprocessing             # Preprocessing.to_dict(): what an image goes through before the network
    extra                     # anything else: rep_ages, rep_ages_method, datasets, temperature, members, ...

Training (:mod:`agecurriculum.train`) writes releases and inference (:mod:`agecurriculum.inference`) reads them;
both depend on this module, which depends on neither. A new preprocessing entry is one field of
:class:`Preprocessing`: it is written, read (with its default for the releases written before it) and compared
from there.

Temperatures (``extra.temperature``, e.g. ``{"gender": 1.4, "age": 1.1}``) are fitted on validation predictions
with :func:`~agecurriculum.evaluation.calibration.fit_temperature` and stored into an existing release with
:func:`write_release_temperature`; the :class:`~agecurriculum.inference.Predictor` then applies them to the
network's probabilities (``p ** (1 / T)`` renormalised). A release without them predicts exactly as before.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agecurriculum._version import __version__
from agecurriculum.bins import AgeBins, representative_ages
from agecurriculum.checks import as_int
from agecurriculum.data.records import FEMALE, MALE
from agecurriculum.fileio import atomic_write
from agecurriculum.model.config import member_configs

if TYPE_CHECKING:
    import torch
    from torch import nn

    from agecurriculum.model import DualClassifier, EnsembleClassifier

__all__ = [
    "GENDER_NAMES",
    "ONNX_FILE",
    "RELEASE_CONFIG",
    "RELEASE_FORMAT",
    "RELEASE_WEIGHTS",
    "SHARED_PREPROCESSING",
    "TEMPERATURE_HEADS",
    "Preprocessing",
    "ReleaseInfo",
    "check_release_config",
    "load_release",
    "preprocessing_mismatch",
    "read_release_config",
    "save_release",
    "update_release_extra",
    "write_release_temperature",
]

RELEASE_FORMAT = "agecurriculum-release"
RELEASE_WEIGHTS = "model.safetensors"
RELEASE_CONFIG = "config.json"
#: Where the onnx backend looks for the exported model inside a release folder.
ONNX_FILE = "model.onnx"
# The preprocessing entries of a release that decide what crop its model sees: two models can share input batches
# (ensemble members, a teacher and its student) only when these agree.
SHARED_PREPROCESSING = ("image_size", "mean", "std", "padding", "alignment")
# Gender class index -> name, as the data layer labels them (records.MALE = 0, records.FEMALE = 1).
GENDER_NAMES = {MALE: "male", FEMALE: "female"}
# The heads a release's extra.temperature may scale; a head it leaves out keeps T = 1.
TEMPERATURE_HEADS = ("gender", "age")
# The padding of releases written before it was recorded: AlignConfig's default then.
_PADDING_BEFORE_RECORDED = 0.25


@dataclass(frozen=True)
class Preprocessing:
    """What an image goes through before the network: the face crop and its normalisation (``preprocessing`` of a
    release config).

    :meth:`from_dict` reads the entry of any release, also of those written before a field existed (the field's
    default stands for what they were made with); :meth:`to_dict` writes it. A new field is one line here, with a
    default for the older releases and its check in ``__post_init__``.

    Attributes:
        image_size: side of the square model input, in pixels; faces are aligned at this size.
        mean: per-channel mean the input is normalised with ([0, 1] RGB), the backbone's.
        std: per-channel standard deviation the input is normalised with.
        padding: border around the face in the aligned crop (dlib face-chip padding, see
            :class:`~agecurriculum.data.AlignConfig`).
        alignment: how the training faces were framed: dataset name -> framing for the datasets trained on as
            ready-made crops, and ``"other"``: the framing of every other dataset and of every photo at prediction
            (see :attr:`~agecurriculum.data.sources.DatasetSource.framing`); None for a release that does not say.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    padding: float = _PADDING_BEFORE_RECORDED
    alignment: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        # Normalised in place (a frozen dataclass): JSON gives lists and ints as floats, the backbone tuples.
        set_ = object.__setattr__
        set_(self, "image_size", as_int(self.image_size, "image_size"))
        set_(self, "mean", tuple(float(v) for v in self.mean))
        set_(self, "std", tuple(float(v) for v in self.std))
        set_(self, "padding", float(self.padding))
        if self.alignment is not None:
            if not isinstance(self.alignment, Mapping):
                raise ValueError(f"alignment must be a mapping of dataset name to framing, got {self.alignment!r}")
            set_(self, "alignment", dict(self.alignment))
        if self.image_size < 1 or len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"needs image_size >= 1 and 3 means and 3 positive stds, got {self.to_dict()}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "release config") -> Preprocessing:
        """Reads a release's ``preprocessing`` entry; entries this version does not know are ignored.

        Raises:
            ValueError: ``image_size``, ``mean`` or ``std`` is missing, or a value is malformed; the message names
                ``source``.
        """
        data = data or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: preprocessing must be a mapping, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as e:  # a field without a default is missing, or a value is not iterable/numeric
            raise ValueError(f"{source}: preprocessing needs image_size, mean and std: {e}") from e
        except ValueError as e:
            raise ValueError(f"{source}: preprocessing {e}") from e

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of a release config (fields that are None are left out)."""
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    @property
    def photo_framing(self) -> Any:
        """How a photo is framed at prediction: ``alignment["other"]`` (None when the release does not say)."""
        return (self.alignment or {}).get("other")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return dict(value) if isinstance(value, Mapping) else value


def preprocessing_mismatch(
    ours: Preprocessing | Mapping[str, Any], theirs: Preprocessing | Mapping[str, Any]
) -> str | None:
    """The first :data:`SHARED_PREPROCESSING` entry on which two releases' preprocessing differs, or None.

    Of ``alignment`` only the framing of photos (``"other"``) counts: the one every release applies at prediction.
    Which datasets a release was trained on as ready-made crops does not change what it is given.

    Raises:
        ValueError: a mapping is not a valid ``preprocessing`` entry (see :meth:`Preprocessing.from_dict`).
    """
    ours, theirs = (p if isinstance(p, Preprocessing) else Preprocessing.from_dict(p) for p in (ours, theirs))

    def value(pre: Preprocessing, key: str) -> Any:
        return pre.photo_framing if key == "alignment" else getattr(pre, key)

    return next((key for key in SHARED_PREPROCESSING if value(ours, key) != value(theirs, key)), None)


def save_release(
    model: nn.Module,
    path_dir: str | Path,
    bins: AgeBins,
    preprocessing: Preprocessing | Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    weights_dtype: torch.dtype | None = None,
) -> Path:
    """Writes trained weights for inference: ``path_dir/model.safetensors`` and ``path_dir/config.json``.

    Both files are written atomically; write each release to its own folder so that the pair always matches.

    Args:
        model: a :class:`~agecurriculum.model.DualClassifier` or
            :class:`~agecurriculum.model.EnsembleClassifier` (or a DDP wrapper of one).
        path_dir: the release folder, created if needed.
        bins: the age bins the age head predicts.
        preprocessing: what an input image must go through: a :class:`Preprocessing`, or a mapping, stored as
            given (JSON-able; inference needs at least ``image_size``, ``mean`` and ``std``).
        extra: anything else to keep (training data, metrics, licence); JSON-able.
        weights_dtype: the floating-point type the weights are stored in (default ``torch.float32``);
            ``torch.float16`` halves the file (integer buffers stay as they are). :func:`load_release` loads them
            into a float32 model either way.

    Returns:
        ``path_dir`` as a Path.

    Raises:
        TypeError: the model has no ``config()``.
        ValueError: the model's age classes differ from ``len(bins)``, ``preprocessing``/``extra`` is not JSON-able,
            or ``weights_dtype`` is not a floating-point type.
    """
    # Here, not at the top: reading a release (its config, for ONNX Runtime) runs without torch.
    import safetensors.torch
    import torch

    from agecurriculum.devices import unwrap_model

    weights_dtype = torch.float32 if weights_dtype is None else weights_dtype
    model = unwrap_model(model)
    if not callable(getattr(model, "config", None)):
        raise TypeError(f"{type(model).__name__} has no config(); save_release needs a DualClassifier")
    if not weights_dtype.is_floating_point:
        raise ValueError(f"weights_dtype must be a floating-point type, got {weights_dtype}")
    model_config = model.config()
    for member in member_configs(model_config):
        if member.get("age_classes", len(bins)) != len(bins):
            raise ValueError(f"the model predicts {member['age_classes']} age classes but bins has {len(bins)}")
    config = {
        "format": RELEASE_FORMAT,
        "library_version": __version__,
        "model": model_config,
        "age_bins": bins.to_dict(),
        "age_labels": bins.labels(),
        "preprocessing": preprocessing.to_dict() if isinstance(preprocessing, Preprocessing) else dict(preprocessing),
        "extra": dict(extra or {}),
    }
    try:
        text = json.dumps(config, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise ValueError(f"release config must be JSON-able (check preprocessing and extra): {e}") from e
    # Own copies: safetensors refuses tensors that share storage, which some state dicts hand out.
    tensors = {
        k: v.detach().cpu().to(weights_dtype if v.is_floating_point() else v.dtype).contiguous().clone()
        for k, v in model.state_dict().items()
    }
    path_dir = Path(path_dir)
    atomic_write(path_dir / RELEASE_WEIGHTS, safetensors.torch.save(tensors, {"format": "pt"}))
    atomic_write(path_dir / RELEASE_CONFIG, text.encode("utf-8"))
    return path_dir


def read_release_config(path_dir: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a release folder, without loading any weights.

    Raises:
        FileNotFoundError: ``config.json`` is missing.
        ValueError: it is not valid JSON or not a release config (the message names the file).
    """
    path = Path(path_dir) / RELEASE_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"release file not found: {path}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    return check_release_config(config, str(path))


def check_release_config(config: Any, source: str) -> dict[str, Any]:
    """``config`` if it is a release config (see :func:`save_release`), else ValueError naming ``source``."""
    if not isinstance(config, dict) or config.get("format") != RELEASE_FORMAT or "model" not in config:
        raise ValueError(f"{source}: not an agecurriculum release config")
    return config


def load_release(path_dir: str | Path, **overrides: Any) -> tuple[DualClassifier | EnsembleClassifier, ReleaseInfo]:
    """Rebuilds a released model in eval mode, on the CPU, in float32 (whatever type the weights are stored in).

    Args:
        path_dir: a folder written by :func:`save_release`.
        **overrides: constructor arguments for :meth:`DualClassifier.from_config` (for an ensemble: for each
            member), e.g. ``backbone=module`` for a model saved with a custom backbone.

    Returns:
        ``(model, info)``: the model and its :class:`ReleaseInfo` (bins, representative ages, preprocessing,
        temperatures; ``info.config`` is the parsed ``config.json``).

    Raises:
        FileNotFoundError: a release file is missing (the message names it).
        ValueError: a file is unreadable, malformed or does not fit the model; the message names it.
    """
    path_dir = Path(path_dir)
    config_path, weights_path = path_dir / RELEASE_CONFIG, path_dir / RELEASE_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"release file not found: {path}")
    # Here, not at the top: reading a release's config (for ONNX Runtime) runs without torch.
    import safetensors.torch

    from agecurriculum.model.ensemble import classifier_from_config

    config = read_release_config(path_dir)
    info = ReleaseInfo.from_config(config, str(config_path))  # a malformed config fails before the weights load
    # The weights come from the release: never download or read the backbone's original ones.
    model = classifier_from_config(config["model"], **{"pretrained": False, "weights_path": None, **overrides})
    try:
        model.load_state_dict(safetensors.torch.load_file(weights_path))
    except Exception as e:  # safetensors' own error for a corrupt file; RuntimeError for mismatched keys/shapes
        raise ValueError(f"{weights_path}: cannot load the weights into the model of {config_path}: {e}") from e
    return model.eval(), info


@dataclass(frozen=True)
class ReleaseInfo:
    """The parts of a release config that turn an image into a prediction.

    Attributes:
        bins: the age bins the age head predicts, in class order.
        rep_ages: ``(K,)`` representative age of each bin in years: the expected age of a face is
            ``sum_k age_probs[k] * rep_ages[k]``. Taken from the release's ``extra.rep_ages`` (``agecurriculum
            train`` stores them); a release without them uses :func:`~agecurriculum.bins.representative_ages` of
            the bins (midpoints, last bin's lower end + 10), in ``predict`` and ``evaluate`` alike.
        preprocessing: the release's :class:`Preprocessing` (also reachable as :attr:`image_size`,
            :attr:`padding`, :attr:`mean` and :attr:`std`).
        config: the whole release config.
        temperature: ``{"gender": T, "age": T}``, the calibration temperature of each head's probabilities, from
            the release's ``extra.temperature``; 1.0 (no change) for a head it does not name, or without it.
        rep_ages_method: how ``rep_ages`` were chosen: ``extra.rep_ages_method`` (``train_mean`` for a release
            that has rep_ages and does not say), or ``midpoints`` for a release without them.
        datasets: the datasets it was trained on (``extra.datasets``; empty when it does not say).
    """

    bins: AgeBins
    rep_ages: np.ndarray
    preprocessing: Preprocessing
    config: Mapping[str, Any]
    temperature: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(TEMPERATURE_HEADS, 1.0))
    rep_ages_method: str = "midpoints"
    datasets: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "release config") -> ReleaseInfo:
        """Reads the fields from a release config.

        Raises:
            ValueError: a field is missing or malformed; the message names ``source`` and the field.
        """
        config = check_release_config(config, source)
        for model in member_configs(config["model"]):
            if model.get("gender_classes", 2) != len(GENDER_NAMES):
                raise ValueError(
                    f"{source}: the model predicts {model['gender_classes']} gender classes, "
                    f"inference knows {len(GENDER_NAMES)} ({', '.join(GENDER_NAMES.values())})"
                )
        try:
            bins = AgeBins.from_dict(config["age_bins"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: age_bins missing or malformed: {e}") from e
        preprocessing = Preprocessing.from_dict(config.get("preprocessing"), source)
        extra = config.get("extra") or {}
        rep = extra.get("rep_ages")
        rep_ages = representative_ages(bins) if rep is None else np.asarray(rep, dtype=float)
        if rep_ages.shape != (len(bins),):
            raise ValueError(f"{source}: extra.rep_ages has {rep_ages.size} values for {len(bins)} age bins")
        method = "midpoints" if rep is None else str(extra.get("rep_ages_method", "train_mean"))
        datasets = tuple(str(d) for d in extra.get("datasets") or ())
        return cls(bins, rep_ages, preprocessing, config, _temperature(config, source), method, datasets)

    @property
    def extra(self) -> Mapping[str, Any]:
        """The release's ``extra`` entry (what training recorded beyond the fields above), empty when absent."""
        return self.config.get("extra") or {}

    def check_compatible(
        self,
        bins: AgeBins,
        preprocessing: Preprocessing | None = None,
        *,
        source: str,
        against: str,
        hint: str = "",
        any_image_size: bool = False,
    ) -> None:
        """Raises ValueError unless this release predicts ``bins`` and reads faces as ``preprocessing`` says.

        The one check behind every use of a release next to other data or models: a fine-tuning start
        (``model.init_from``), a distillation teacher, the members of an ensemble, the two sides of the gate.

        Args:
            bins: the bins it must predict.
            preprocessing: what its input must be (None: not checked); see :func:`preprocessing_mismatch`.
            source: names this release in the message (its folder).
            against: names the other side, e.g. ``"this run"`` or another release's folder.
            hint: appended to a bins message, e.g. how to set the run's bins.
            any_image_size: the image size may differ (a teacher reads its student's batches resized).

        Raises:
            ValueError: ``"{source}: predicts the age bins [...], {against} [...]"`` or
                ``"{source}: preprocessing.{key} is {value!r}, {against} has {value!r}"``.
        """
        if self.bins.groups != bins.groups:
            raise ValueError(f"{source}: predicts the age bins {self.bins.labels()}, {against} {bins.labels()}{hint}")
        if preprocessing is None:
            return
        theirs = dataclasses.replace(preprocessing, image_size=self.image_size) if any_image_size else preprocessing
        key = preprocessing_mismatch(self.preprocessing, theirs)
        if key is not None:
            mine, other = self.preprocessing.to_dict().get(key), theirs.to_dict().get(key)
            raise ValueError(f"{source}: preprocessing.{key} is {mine!r}, {against} has {other!r}")

    @property
    def image_size(self) -> int:
        """Side of the square model input, in pixels; faces are aligned at this size."""
        return self.preprocessing.image_size

    @property
    def padding(self) -> float:
        """Border around the face in the aligned crop (see :attr:`Preprocessing.padding`)."""
        return self.preprocessing.padding

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel mean the input is normalised with ([0, 1] RGB)."""
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, float, float]:
        """Per-channel standard deviation the input is normalised with."""
        return self.preprocessing.std

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
        raise ValueError(
            f"{source}: extra.temperature must be a mapping with keys among "
            f"{', '.join(TEMPERATURE_HEADS)}, got {given!r}"
        )
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
    :func:`save_release` writes; the weights are not touched. The entry replaces any earlier one whole: a head left
    out of ``temperature`` goes back to T = 1. The ONNX cache is keyed by the config's content, so a release
    exported on demand picks the temperatures up; a ``model.onnx`` already in the folder holds the old config and
    must be exported again (a warning says so).

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
    temperature = dict(temperature)
    path = Path(release_dir) / RELEASE_CONFIG
    _temperature({"extra": {"temperature": temperature}}, f"{path} (new temperature)")  # nothing invalid is written
    return update_release_extra(release_dir, {"temperature": {h: float(t) for h, t in temperature.items()}})


def update_release_extra(release_dir: str | Path, entries: Mapping[str, Any]) -> Path:
    """Replaces entries of an existing release's ``extra`` (e.g. ``rep_ages``, ``temperature``), keeping the others.

    The whole ``config.json`` is rewritten atomically, in the format :func:`save_release` writes; the weights are not
    touched, and the new config must still read as a release (:meth:`ReleaseInfo.from_config`) or nothing is
    written. A ``model.onnx`` already in the folder holds the old config: a warning says to export it again.

    Returns:
        The path of the rewritten ``config.json``.

    Raises:
        FileNotFoundError: the release has no ``config.json``.
        ValueError: the config is not a release config, or the new entries make it unreadable.
    """
    release_dir = Path(release_dir)
    config = read_release_config(release_dir)
    path = release_dir / RELEASE_CONFIG
    config["extra"] = {**(config.get("extra") or {}), **entries}
    ReleaseInfo.from_config(config, f"{path} (new extra {sorted(entries)})")
    atomic_write(path, (json.dumps(config, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    if (release_dir / ONNX_FILE).is_file():
        warnings.warn(
            f"{release_dir / ONNX_FILE} holds the release config it was exported with, not the new "
            f"{', '.join(sorted(entries))}; export it again (agecurriculum export) for the onnx backend to use them",
            stacklevel=2,
        )
    return path
