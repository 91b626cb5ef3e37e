"""Exports a release to ONNX, for ONNX Runtime or any other ONNX consumer.

The exported graph takes ``images``: ``(N, 3, S, S)`` float32 face crops aligned and normalised as the release's
``preprocessing`` says (N dynamic, S = ``image_size``), and returns ``age_probs`` ``(N, K)`` and ``gender_probs``
``(N, 2)``: softmax probabilities rather than logits, so that a consumer needs no more maths than an argmax (class
order: the release's age bins; gender 0 male, 1 female). The release's ``config.json`` is embedded as the ONNX
metadata entry ``agecurriculum.release``, so the file alone is enough for
:class:`~agecurriculum.inference.OnnxBackend`.

It uses ``torch.onnx.export(dynamo=True)``, PyTorch's default exporter since 2.9 (it needs the ``onnx`` and
``onnxscript`` packages); the older TorchScript exporter needs neither but is deprecated and due for removal.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from agecurriculum.fileio import atomic_write
from agecurriculum.inference.backends import ONNX_INPUT, ONNX_OUTPUTS, ONNX_RELEASE_KEY
from agecurriculum.release import RELEASE_CONFIG, RELEASE_WEIGHTS, load_release

if TYPE_CHECKING:
    from torch import nn

__all__ = ["cached_onnx", "default_onnx_cache", "export_onnx"]


def _with_softmax(model: nn.Module) -> nn.Module:
    """The release's model with softmax on both heads: the function the ONNX file computes."""
    import torch  # here: a cached export is found (cached_onnx, for predict) without loading torch

    class Probabilities(torch.nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            age_logits, gender_logits = self.model(images)[:2]
            return age_logits.softmax(1), gender_logits.softmax(1)

    return Probabilities(model)


def export_onnx(release_dir: str | Path, out_path: str | Path) -> Path:
    """Writes the release's model as an ONNX file, atomically (a failed export leaves ``out_path`` as it was).

    Args:
        release_dir: a folder written by :func:`~agecurriculum.release.save_release`.
        out_path: the ``.onnx`` file to (over)write; its folder is created.

    Returns:
        ``out_path`` as a Path.

    Raises:
        FileNotFoundError, ValueError: the release is missing or broken (see
            :func:`~agecurriculum.release.load_release`).
    """
    import onnx  # here: only export needs it
    import torch  # here too: finding a cached export (cached_onnx) runs without torch

    model, info = load_release(release_dir)
    example = torch.zeros(2, 3, info.image_size, info.image_size)
    program = torch.onnx.export(
        _with_softmax(model).eval(),
        (example,),
        dynamo=True,
        verbose=False,
        external_data=False,
        input_names=[ONNX_INPUT],
        output_names=list(ONNX_OUTPUTS),
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
    )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {ONNX_RELEASE_KEY: json.dumps(info.config, allow_nan=False)})
    proto.doc_string = (
        f"agecurriculum age-group and gender classifier. Input {ONNX_INPUT}: (N, 3, {info.image_size}, "
        f"{info.image_size}) float32, RGB in [0, 1] normalised with mean {list(info.mean)} and std "
        f"{list(info.std)}. Outputs {ONNX_OUTPUTS[0]} (N, {len(info.bins)}) over the age bins "
        f"{info.bins.labels()}, {ONNX_OUTPUTS[1]} (N, 2): 0 male, 1 female. Release config in the "
        f"metadata entry {ONNX_RELEASE_KEY}."
    )
    out_path = Path(out_path)
    atomic_write(out_path, proto.SerializeToString())
    return out_path


def default_onnx_cache() -> Path:
    """``$AGECURRICULUM_CACHE/onnx``, else ``$XDG_CACHE_HOME/agecurriculum/onnx``, else
    ``~/.cache/agecurriculum/onnx``."""
    root = os.environ.get("AGECURRICULUM_CACHE")
    if root:
        return Path(root) / "onnx"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agecurriculum" / "onnx"


def cached_onnx(release_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The ONNX file of a release, exported on first use into a cache keyed by the release's content.

    A release installed read-only (the default model inside the package) cannot hold its own ``model.onnx``; this
    exports it once into ``cache_dir`` (default :func:`default_onnx_cache`) under the SHA-256 of its weights and
    config, so changed weights never reuse a stale export. Beside it goes the SHA-256 of the exported file
    (``.sha256``): a cached file that was cut short or changed later no longer matches it and is exported again.
    When the default cache cannot be written (a read-only home folder), the export goes to a folder in the
    system's temporary directory instead, with a warning that says how to choose the place
    (``AGECURRICULUM_CACHE``).

    Raises:
        FileNotFoundError, ValueError: as :func:`export_onnx`.
        OSError: ``cache_dir`` (or, without one, both the default cache and the temporary folder) cannot be written.
    """
    release_dir = Path(release_dir)
    digest = hashlib.sha256()
    for name in (RELEASE_CONFIG, RELEASE_WEIGHTS):
        try:
            digest.update((release_dir / name).read_bytes())
        except OSError as err:
            raise FileNotFoundError(f"{release_dir / name}: cannot read the release: {err.strerror or err}") from None
    name = f"{digest.hexdigest()[:32]}.onnx"
    if cache_dir is not None:
        return _cached_export(release_dir, Path(cache_dir) / name)
    try:
        return _cached_export(release_dir, default_onnx_cache() / name)
    except OSError as err:
        fallback = Path(tempfile.gettempdir()) / f"agecurriculum-{os.getuid() if hasattr(os, 'getuid') else 0}" / "onnx"
        warnings.warn(
            f"cannot write the ONNX cache {default_onnx_cache()} ({err.strerror or err}); using {fallback} "
            "instead: set AGECURRICULUM_CACHE to a writable folder to keep the export",
            stacklevel=2,
        )
        return _cached_export(release_dir, fallback / name)


def _cached_export(release_dir: Path, path: Path) -> Path:
    checksum = path.with_suffix(".sha256")
    if path.is_file() and checksum.is_file():
        if hashlib.sha256(path.read_bytes()).hexdigest() == checksum.read_text(encoding="ascii").strip():
            return path
        warnings.warn(f"{path}: cached ONNX export is damaged (checksum mismatch); exporting it again", stacklevel=3)
    export_onnx(release_dir, path)
    atomic_write(checksum, hashlib.sha256(path.read_bytes()).hexdigest().encode("ascii"))
    return path
