"""Combines trained releases into one ensemble release (see :class:`~agecurriculum.model.EnsembleClassifier`).

The result is an ordinary release folder: the predictor, ``--backend onnx``, export and evaluation take it as they
take a single model. Its members must predict the same age bins from the same preprocessing, since one aligned
crop feeds them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from agecurriculum.model import EnsembleClassifier
from agecurriculum.release import load_release, save_release

__all__ = ["ensemble_releases"]


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
