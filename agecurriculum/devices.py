"""Device names: a string the user typed (``--device``, ``trainer.device``) checked against what this machine has.

``torch.device("bogus")`` raises a RuntimeError listing every device *type* torch knows, and ``"cuda"`` on a machine
without a GPU only fails at the first ``.to()``, deep inside model loading. :func:`resolve_device` turns both into
one :class:`ValueError` that says which devices this machine does have. :func:`unwrap_model` gives back the model a
data-parallel wrapper runs on several devices.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["available_devices", "device_kind", "parse_device", "resolve_device", "unwrap_model"]

# torch is imported by each function that needs it, not here: ONNX Runtime's inference asks device_kind() alone,
# and importing torch costs about 2 s and 650 MB.
_PLAIN = re.compile(r"(cpu|cuda)(?::(\d+))?")


def available_devices() -> list[str]:
    """The devices this machine can run on: ``cpu``, then ``cuda:0`` ... for every visible GPU, then ``mps``."""
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def parse_device(name: str | torch.device) -> torch.device:
    """``name`` as a :class:`torch.device`, without checking that this machine has it.

    Raises:
        ValueError: the name is not a device; the message lists the devices this machine has.
    """
    import torch

    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device {name!r}: not a device name; this machine has: {', '.join(available_devices())}"
        ) from None


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a :class:`torch.device`, once it is known to exist here.

    Args:
        name: ``"cpu"``, ``"cuda"`` (the current GPU), ``"cuda:1"``, ``"mps"``, or a device.

    Raises:
        ValueError: the name is not a device, or this machine has no such device; the message lists those it has.
    """
    import torch

    device = parse_device(name)
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        ok = torch.cuda.is_available() and (device.index is None or device.index < torch.cuda.device_count())
    else:
        ok = device.type in {d.split(":")[0] for d in available_devices()}
    if not ok:
        raise ValueError(f"device {name!r}: not available on this machine; it has: {', '.join(available_devices())}")
    return device


def device_kind(name: str | torch.device) -> tuple[str, int | None]:
    """``(type, index)`` of a device, e.g. ``("cuda", 1)`` for ``"cuda:1"``, ``("cpu", None)`` for ``"cpu"``.

    Plain ``cpu`` and ``cuda[:N]`` names are read without loading torch; anything else goes through
    :func:`parse_device`.

    Raises:
        ValueError: as :func:`parse_device`.
    """
    plain = _PLAIN.fullmatch(name) if isinstance(name, str) else None
    if plain is not None:
        return plain[1], None if plain[2] is None else int(plain[2])
    device = parse_device(name)
    return device.type, device.index


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (``model`` itself otherwise)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model
