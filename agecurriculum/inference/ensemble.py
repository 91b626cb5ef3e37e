"""Combines trained releases: into one ensemble release (see :class:`~agecurriculum.model.EnsembleClassifier`), or
into one network whose weights lie between two (:func:`interpolate_releases`).

The result is an ordinary release folder: the predictor, ``--backend onnx``, export and evaluation take it as they
take a single model. Its members must predict the same age bins from the same preprocessing, since one aligned
crop feeds them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from agecurriculum.model import DualClassifier, EnsembleClassifier
from agecurriculum.release import load_release, save_release

__all__ = ["ensemble_releases", "interpolate_releases"]


def ensemble_releases(
    release_dirs: Sequence[str | Path], out_dir: str | Path, weights_dtype: torch.dtype = torch.float16
) -> Path:
    """Writes a release whose model averages the probabilities of the given releases' models.

    Args:
        release_dirs: two or more release folders (written by :func:`~agecurriculum.release.save_release`), each
            holding one :class:`~agecurriculum.model.DualClassifier`.
        out_dir: the ensemble's release folder (created; its files are replaced atomically).
        weights_dtype: the type the weights are stored in; float16 (the default) halves the file and moves the
            probabilities by up to about 0.01 (at most 0.006 on the default model's validation faces); they are
            loaded into a float32 model either way.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        FileNotFoundError: a release is missing.
        ValueError: fewer than two releases, a release that is itself an ensemble, or releases whose age bins or
            preprocessing differ (the message names the release and the field).
    """
    if len(release_dirs) < 2:
        raise ValueError(f"an ensemble needs at least two releases, got {len(release_dirs)}")
    members, infos = [], []
    for path in release_dirs:
        model, info = load_release(path)
        if isinstance(model, EnsembleClassifier):
            raise ValueError(f"{path}: is an ensemble already; list the releases it was made of instead")
        members.append(model)
        infos.append(info)
    first, first_path = infos[0], release_dirs[0]
    bins = first.bins
    for path, info in zip(release_dirs[1:], infos[1:], strict=True):  # an ensemble's members take the same input
        info.check_compatible(bins, first.preprocessing, source=str(path), against=str(first_path))
    extra = {"members": [{"release": str(path), **info.extra} for path, info in zip(release_dirs, infos, strict=True)]}
    reps = [info.extra.get("rep_ages") for info in infos]
    if all(rep is not None for rep in reps):
        # Each is the mean training age per bin of its run; runs over the same data give the same values.
        extra["rep_ages"] = [float(a) for a in np.mean(np.asarray(reps, dtype=float), axis=0)]
    return save_release(EnsembleClassifier(members), out_dir, bins, first.preprocessing, extra, weights_dtype)


def interpolate_releases(start: str | Path, end: str | Path, weight: float, out_dir: str | Path) -> Path:
    """Writes a release whose weights are ``(1 - weight) * start + weight * end``, tensor by tensor.

    Fine-tuning a release on new data moves it away from what it knew; the network halfway back along that line
    often keeps most of the gain and loses less of the rest (weight-space ensembling, "WiSE-FT": Wortsman et al.,
    2022). It runs at the cost of one network, unlike :func:`ensemble_releases`. The two releases must be the same
    network (``end`` fine-tuned from ``start``; an ``end`` that grew a gender branch from ``start`` interpolates
    with the copy of ``start``'s age path that branch began as) predicting the same bins from the same
    preprocessing. BatchNorm's
    running statistics are interpolated too; integer counters are taken from ``end``. The representative ages and
    temperatures of a network in between are neither release's: the new release keeps ``end``'s ``extra`` apart
    from them, so fit them again on validation data (:func:`~agecurriculum.train.run.refit_release`).

    Args:
        start: the release fine-tuning started from (``weight`` 0 gives it back).
        end: the fine-tuned release (``weight`` 1 gives it back).
        weight: in [0, 1].
        out_dir: the new release folder (its files are replaced atomically).

    Raises:
        ValueError: ``weight`` outside [0, 1]; an ensemble; releases of other networks, bins or preprocessing.
        FileNotFoundError: a release is missing.
    """
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    (first, first_info), (last, last_info) = load_release(start), load_release(end)
    for path, model in ((start, first), (end, last)):
        if isinstance(model, EnsembleClassifier):
            raise ValueError(f"{path}: is an ensemble; interpolate the weights of single networks")
    last_info.check_compatible(first_info.bins, first_info.preprocessing, source=str(end), against=str(start))
    stem = {k: v for k, v in last.config().items() if k != "gender_branch"}
    if last.gender_branch is not None and first.gender_branch is None and stem == first.config():
        # end grew a gender branch from start: start's branch is the copy of its age path end began from
        grown = DualClassifier.from_config(last.config(), pretrained=False)
        grown.load_state_dict_growing(first.state_dict())
        first = grown
    if first.config() != last.config():
        raise ValueError(f"{end}: is another network than {start} ({last.config()} against {first.config()})")
    a, b = first.state_dict(), last.state_dict()
    mixed = {k: torch.lerp(a[k], b[k], float(weight)) if b[k].is_floating_point() else b[k] for k in b}
    last.load_state_dict(mixed)
    extra = {
        k: v
        for k, v in last_info.extra.items()
        if k not in ("rep_ages", "rep_ages_method", "temperature", "calibration")
    }
    extra["interpolated"] = {"start": str(start), "end": str(end), "weight": float(weight)}
    return save_release(last, out_dir, last_info.bins, last_info.preprocessing, extra)
