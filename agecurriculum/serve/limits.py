"""What one ``agecurriculum serve`` process accepts: request size, images, pixels, requests at once, batching.

The limits bound the server's memory whatever clients send: request bodies are held in memory (never written to
disk), at most ``max_queue * max_request_bytes`` of them, and at most about ``max(batch_images, max_images)``
decoded images of up to ``max_pixels`` pixels (3 bytes each) exist at once, in the one batch being predicted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = ["ServeLimits"]


@dataclass(frozen=True)
class ServeLimits:
    """The server's limits (see the module docstring); every field must be positive.

    Attributes:
        max_request_bytes: largest request body, in bytes (413 beyond it); it bounds every image file too.
        max_images: most images in one request (413 beyond it).
        max_pixels: most pixels (width x height) of one image, checked from its header before it is decoded; a
            larger image is that image's error.
        max_queue: most ``POST /predict`` requests admitted at once, waiting in the queue or being predicted; one
            more gets 503 at once (counted from when its headers arrive, so bodies being uploaded count too).
        batch_images: the batching worker stops collecting waiting requests once it holds this many images.
        batch_wait_ms: how long the worker waits for more requests to join a batch, in milliseconds.
        body_timeout_s: a request whose body has not fully arrived after this many seconds gets 408, so a client
            that stalls cannot hold a place in the queue for ever.
    """

    max_request_bytes: int = 32 * 2**20
    max_images: int = 16
    max_pixels: int = 40_000_000
    max_queue: int = 8
    batch_images: int = 8
    batch_wait_ms: float = 5.0
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            # bool is an int to Python; NaN compares false with everything, so it is caught by the isfinite test.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{item.name} must be a number, got {value!r}")
            if item.name == "batch_wait_ms" and value >= 0:
                continue  # 0: run each batch as soon as the first request arrives
            if value <= 0:
                raise ValueError(f"{item.name} must be positive, got {value}")
            if item.type == "int" and not isinstance(value, int):
                raise ValueError(f"{item.name} must be an integer, got {value!r}")
