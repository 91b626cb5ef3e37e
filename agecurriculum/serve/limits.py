"""What one ``agecurriculum serve`` process accepts: request size, images, pixels, requests and connections at once,
batching, timeouts.

The limits bound the server's memory whatever clients send (:meth:`ServeLimits.memory_bound`, docs/serve.rst):

- request bodies are held in memory (never written to disk): at most ``max_queue`` of them, of up to
  ``max_request_bytes`` each, and one more while a form's files are copied out of its body;
- the images of the one batch being predicted are decoded ``max_pixels`` pixels at a time (the sizes are read from
  the headers first), so one image of the largest size, or several smaller ones, are in memory at once; decoding
  costs up to :data:`DECODE_BYTES_PER_PIXEL` bytes a pixel for a moment (:func:`~agecurriculum.data.load_image`'s
  conversions), finding faces :data:`FIND_BYTES_PER_PIXEL` more and up to :data:`FIND_BYTES_PER_WORKER` for each of
  the predictor's threads;
- each open connection holds at most a read buffer, and at most ``max_connections`` are open;
- and :data:`RUNTIME_BYTES` for the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

__all__ = [
    "CONNECTION_BYTES",
    "DECODE_BYTES_PER_PIXEL",
    "FIND_BYTES_PER_PIXEL",
    "FIND_BYTES_PER_WORKER",
    "RUNTIME_BYTES",
    "ServeLimits",
]

#: Peak bytes a pixel costs while :func:`~agecurriculum.data.load_image` decodes and converts it, for the costliest
#: format (a 32-bit grayscale TIFF: 28; a 16-bit grayscale PNG 26, RGBA 22, WebP 18, CMYK JPEG 14, RGB 10), measured
#: on 39.7-Mpx images: PIL's image, its conversions and the array.
DECODE_BYTES_PER_PIXEL = 28
#: Bytes a pixel of a decoded image costs while a thread finds its faces, besides its 3 bytes: PIL's copy that
#: :class:`~agecurriculum.data.FaceAligner` shrinks for the search.
FIND_BYTES_PER_PIXEL = 4
#: Bytes one face-finding thread takes for the search itself, whatever the photo's size (dlib's HOG pyramid of a
#: photo shrunk to 2000 px and searched at ``upsample=1``: measured 135-230 MiB).
FIND_BYTES_PER_WORKER = 256 * 2**20
#: Bytes an open connection can hold in the server: its read buffer and what uvicorn keeps of a body not yet read.
CONNECTION_BYTES = 512 * 2**10
#: An allowance for the rest that serving leaves in memory: Python objects, thread stacks, the C allocator's and ONNX
#: Runtime's slack (the server's memory between requests varies by up to about 100 MiB).
RUNTIME_BYTES = 128 * 2**20


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
        header_timeout_s: a connection whose request headers have not fully arrived this many seconds after it
            opened (or after its previous answer) gets 408 and is closed; an idle one is closed.
        max_connections: most connections open at once; one more gets 503 and is closed at once.
    """

    max_request_bytes: int = 32 * 2**20
    max_images: int = 16
    max_pixels: int = 40_000_000
    max_queue: int = 8
    batch_images: int = 8
    batch_wait_ms: float = 5.0
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    max_connections: int = 100

    def memory_bound(self, workers: int) -> int:
        """Most bytes that requests can add to the server's memory (its RSS) above the loaded model, whatever clients
        send: bodies, connections, the larger of decoding and face finding, and an allowance for the rest (the module
        docstring). With the defaults and up to 3 face-finding threads, 1534 MiB.

        Args:
            workers: the predictor's face-finding threads (``--workers``).
        """
        bodies = (self.max_queue + 1) * self.max_request_bytes
        connections = self.max_connections * CONNECTION_BYTES
        decode = DECODE_BYTES_PER_PIXEL * self.max_pixels
        find = (3 + FIND_BYTES_PER_PIXEL) * self.max_pixels + workers * FIND_BYTES_PER_WORKER
        return bodies + connections + max(decode, find) + RUNTIME_BYTES

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
