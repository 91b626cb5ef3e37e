"""Where the network runs: PyTorch on a release's weights, or ONNX Runtime on an exported model.

A backend maps a batch of normalised face crops, ``(N, 3, S, S)`` float32, to ``(age_probs (N, K),
gender_probs (N, 2))`` float64 numpy arrays, whose rows sum to 1; both backends compute the same function, so the
:class:`~agecurriculum.inference.Predictor` around them does not care which one it has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from agecurriculum.devices import device_kind, resolve_device
from agecurriculum.release import check_release_config, load_release

if TYPE_CHECKING:
    import torch

__all__ = ["ONNX_INPUT", "ONNX_OUTPUTS", "ONNX_RELEASE_KEY", "Backend", "OnnxBackend", "TorchBackend"]

ONNX_INPUT = "images"  # name of the exported model's input
ONNX_OUTPUTS = ("age_probs", "gender_probs")  # names of its outputs, in order
ONNX_RELEASE_KEY = "agecurriculum.release"  # ONNX metadata key holding the release's config.json text


class Backend(Protocol):
    """What the :class:`~agecurriculum.inference.Predictor` runs batches through."""

    config: dict[str, Any]  # the release config (see agecurriculum.release.save_release)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class TorchBackend:
    """A release's :class:`~agecurriculum.model.DualClassifier`, in eval mode on ``device``.

    Args:
        release_dir: a folder written by :func:`~agecurriculum.release.save_release`.
        device: a torch device, e.g. ``"cpu"`` or ``"cuda:0"``.
    """

    def __init__(self, release_dir: str | Path, device: str | torch.device = "cpu") -> None:
        self.device = resolve_device(device)  # before the weights load: a bad --device fails at once
        self.model, info = load_release(release_dir)
        self.config = dict(info.config)
        self.model.to(self.device)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch  # here, as onnxruntime is in OnnxBackend: a process that runs ONNX Runtime never loads torch

        with torch.no_grad():
            age_logits, gender_logits = self.model(torch.from_numpy(images).to(self.device))[:2]
        # Softmax in float64, as evaluation does: the expected age sums probabilities over the bins.
        return (age_logits.double().softmax(1).cpu().numpy(), gender_logits.double().softmax(1).cpu().numpy())


class OnnxBackend:
    """An ONNX model written by :func:`~agecurriculum.inference.export_onnx`, run by ONNX Runtime.

    The release config is read from the file's own metadata, so the ``.onnx`` file is all it needs.

    Args:
        onnx_path: the exported model.
        device: ``"cpu"``, or ``"cuda"``/``"cuda:N"`` for onnxruntime-gpu's CUDA provider.
        threads: ONNX Runtime's intra-op threads (its ``intra_op_num_threads``), the counterpart of
            ``torch.set_num_threads`` for the torch backend; None lets ONNX Runtime choose (one per physical core).
        spin_wait: let ONNX Runtime's worker threads busy-wait for work after each call (ONNX Runtime's own
            default). Off here: between two calls a :class:`Predictor` decodes and detects faces on the same
            cores, which spinning threads would take. On a 2-core CPU, photos and crops one at a time ran 31-151%
            faster without spinning, batches of 32 about as fast (-2% to +7%), but the network alone, called back
            to back, 6-33% slower (``docs/benchmarks.md``): turn it on for that. Only matters with ``threads``
            above 1.

    Picklable: a copy sent to another process (a :class:`~agecurriculum.inference.Predictor`'s face-finding worker)
    opens the file again there, on one thread (:attr:`in_other_process`), as one of several processes sharing the
    cores.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: it is not an ONNX model exported by this library, the device is not a device name or not
            available, or ``threads`` is below 1.
    """

    in_other_process = 1  # intra-op threads of a copy unpickled in another process (see above)

    def __init__(
        self, onnx_path: str | Path, device: str = "cpu", threads: int | None = None, spin_wait: bool = False
    ) -> None:
        import onnxruntime as ort  # here: only this backend needs it, and it takes a while to import

        path = Path(onnx_path)
        self.path, self.device, self.spin_wait = path, device, spin_wait
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 (or None for ONNX Runtime's choice), got {threads}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        # Not resolve_device: onnxruntime-gpu may see a GPU that a CPU-only torch does not.
        kind, index = device_kind(device)
        if kind == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    f"device {device}: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
                )
            providers = [("CUDAExecutionProvider", {"device_id": index or 0}), "CPUExecutionProvider"]
        elif kind != "cpu":
            raise ValueError(f"device {device}: the onnx backend runs on cpu or cuda")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise ValueError(f"{path}: not a readable ONNX model: {e}") from e
        text = self.session.get_modelmeta().custom_metadata_map.get(ONNX_RELEASE_KEY)
        if text is None:
            raise ValueError(f"{path}: no {ONNX_RELEASE_KEY} metadata; export it with `agecurriculum export`")
        self.config = check_release_config(json.loads(text), f"{path} ({ONNX_RELEASE_KEY} metadata)")

    def __reduce__(self) -> tuple[Any, ...]:
        return OnnxBackend, (self.path, self.device, self.in_other_process, self.spin_wait)

    @property
    def on_cpu(self) -> bool:
        """Whether it runs on the CPU (ONNX Runtime's CPU provider), not a GPU."""
        return device_kind(self.device)[0] == "cpu"

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        age, gender = self.session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: np.ascontiguousarray(images, np.float32)})
        return age.astype(np.float64), gender.astype(np.float64)
