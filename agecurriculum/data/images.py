"""Read any face photo the datasets hold into one array shape: ``(H, W, 3)`` uint8 RGB, upright.

Datasets scraped from the web hold every kind of file: grayscale, palette, CMYK and transparent images, rotated
phone photos that carry their orientation in EXIF, truncated downloads, HTML pages saved as ``.jpg``, and now and
then a file whose header claims billions of pixels. :func:`load_image` decodes the good ones the same way and turns
every bad one into an :class:`ImageLoadError` that names the file and says what is wrong with it, so a
preprocessing run can count the failures by reason instead of crashing. A path that is not a regular file (a
folder, a FIFO, a device such as ``/dev/zero``) is refused before it is opened, and no more than
:data:`DEFAULT_MAX_BYTES` of a file is read, so one bad input can neither hang a run nor exhaust its memory.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "ImageLoadError",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageSource",
    "is_image_name",
    "load_image",
    "read_image_bytes",
]

# The suffixes of image files load_image reads, in lower case: what a folder of photos or a dataset's folder is
# searched for. Files with other suffixes (.txt landmarks, .DS_Store, Thumbs.db) sit next to face images in real
# folders; a file named explicitly is tried whatever its name.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


def is_image_name(name: str) -> bool:
    """True when the file name ends in one of :data:`IMAGE_SUFFIXES` (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


# PIL's own default limit (about 89.5 Mpx, a 1024 MiB RGBA image / 4 / 3); far above any face photo.
DEFAULT_MAX_PIXELS = 89_478_485
# Largest file read: 100 MiB, several times a 100-megapixel camera's JPEG, yet small enough that reading a
# mistaken input (a disk image, a video, /dev/zero behind a symlink) costs no more than that.
DEFAULT_MAX_BYTES = 100 * 2**20

# What a path that is not a regular file is, for the error message; os.stat follows symlinks, so none is a link.
_FILE_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
)

ImageSource = Union[str, os.PathLike, bytes, BinaryIO]


class ImageLoadError(ValueError):
    """A file that is not a usable image.

    Attributes:
        path: the file (or the name given for bytes / a file object).
        reason: a short fixed phrase, e.g. ``"truncated file"``, fit for counting failures by kind.
        detail: what the decoder said, or None.
    """

    def __init__(self, path: object, reason: str, detail: str | None = None) -> None:
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


def read_image_bytes(path: str | os.PathLike, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of an image file.

    Args:
        path: the file.
        max_bytes: largest file size accepted, in bytes; None for no limit. At most ``max_bytes + 1`` bytes are
            read, so a file that grows while it is read, or whose size ``stat`` misreports, is capped too.

    Returns:
        The whole file.

    Raises:
        ImageLoadError: the file is missing, unreadable, empty, larger than ``max_bytes``, or not a regular file
            (a folder, FIFO, device or socket: checked before opening, since opening a FIFO blocks until a writer
            comes and a device such as ``/dev/zero`` never ends).
        ValueError: ``max_bytes`` is below 1.
    """
    _check_max_bytes(max_bytes)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "unknown file type")
            raise ImageLoadError(path, "not a regular file", kind)
        if max_bytes is not None and info.st_size > max_bytes:
            raise _too_large(path, f"{info.st_size} bytes", max_bytes)
        with open(path, "rb") as f:
            data = _read_capped(f, path, max_bytes)
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except OSError as e:  # no permission, an I/O error
        raise ImageLoadError(path, "cannot read file", e.strerror or str(e)) from e
    if not data:
        raise ImageLoadError(path, "empty file")
    return data


def _check_max_bytes(max_bytes: int | None) -> None:
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1 (or None for no limit), got {max_bytes}")


def _read_capped(f: BinaryIO, name: object, max_bytes: int | None) -> bytes:
    """All of ``f``, or :class:`ImageLoadError` as soon as it holds more than ``max_bytes``."""
    if max_bytes is None:
        return f.read()
    # Up to one byte more than allowed, which tells "exactly at the limit" from "over it". A pipe or raw stream
    # may return less than asked before its end, so read on until the end or the cap.
    chunks, size = [], 0
    while size <= max_bytes and (chunk := f.read(max_bytes + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    if size > max_bytes:
        raise _too_large(name, f"at least {max_bytes + 1} bytes", max_bytes)
    return b"".join(chunks)


def _too_large(name: object, size: str, max_bytes: int) -> ImageLoadError:
    return ImageLoadError(name, "file too large", f"{size} > limit of {max_bytes} bytes")


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> np.ndarray:
    """Decode an image into an upright ``(H, W, 3)`` uint8 RGB array.

    Any format PIL reads (JPEG, PNG, BMP, WebP, TIFF, ...). Conversions:

    * grayscale (``1``, ``L``, ``I;16``, ``I``) is copied into the three channels; 16-bit values are scaled to 8 bits;
    * palette and CMYK images go through PIL's conversion to RGB (CMYK without its ICC profile);
    * transparency (RGBA, LA, palette or RGB with a transparent colour) is composited on white, the background
      the image is normally viewed on; dropping alpha instead would expose whatever colour the transparent pixels
      happen to hold, often black;
    * EXIF orientation is applied, so a phone photo comes out the way it is displayed.

    Truncated files are errors: PIL's ``LOAD_TRUNCATED_IMAGES`` is never set, so a partly decoded image is not
    returned. Corrupt data *inside* a complete JPEG (which libjpeg repairs with grey blocks) is not detected.

    Args:
        source: a path, the file's bytes, or a binary file object.
        max_pixels: largest ``width * height`` accepted, checked from the header before any pixel is decoded, so a
            decompression bomb costs no memory; None for no limit of ours. PIL's global
            ``Image.MAX_IMAGE_PIXELS`` still applies on top (an image PIL would warn about is an error here too),
            and is never changed: raise it yourself if you need larger images.
        max_bytes: largest file accepted, in bytes, whatever the source (see :func:`read_image_bytes`); a file
            object is read whole into memory, at most ``max_bytes + 1`` bytes of it. None for no limit.
        name: what to call the image in errors when ``source`` is bytes or a file object.

    Returns:
        The pixels, ``(H, W, 3)`` uint8, C-contiguous.

    Raises:
        ImageLoadError: the file is missing, not a regular file, empty, not an image, truncated, corrupt or too
            large; the message names the file and the reason.
        ValueError: ``max_bytes`` is below 1.
    """
    _check_max_bytes(max_bytes)
    if isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        source = read_image_bytes(source, max_bytes=max_bytes)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "<bytes>"
        if max_bytes is not None and len(source) > max_bytes:
            raise _too_large(name, f"{len(source)} bytes", max_bytes)
    else:
        name = name or str(getattr(source, "name", "<file object>"))
        if max_bytes is not None:  # without a limit PIL reads the object itself, as much as it needs
            source = _read_capped(source, name, max_bytes)
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    if is_bytes and not source:
        raise ImageLoadError(name, "empty file")
    fp = io.BytesIO(source) if is_bytes else source
    limit = max_pixels
    # PIL only warns between its limit and twice it; clamping to its limit makes that an error without touching
    # the (process-wide, not thread-safe) warnings filters or PIL's own setting.
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = Image.MAX_IMAGE_PIXELS if limit is None else min(limit, Image.MAX_IMAGE_PIXELS)
    try:
        with Image.open(fp) as img:
            width, height = img.size
            if limit is not None and width * height > limit:
                raise ImageLoadError(name, "too many pixels", f"{width}x{height} > {limit} pixels")
            img.load()
            # In place, and no convert() of an RGB image: each copy is 4 bytes a pixel, 256 MB for 64 Mpx.
            ImageOps.exif_transpose(img, in_place=True)
            return _to_rgb(img)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:  # above twice PIL's own limit: refused while reading the header
        raise ImageLoadError(name, "too many pixels", str(e)) from e
    except UnidentifiedImageError:
        raise ImageLoadError(name, "not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:  # what PIL raises on bad data
        reason = "truncated file" if "truncated" in str(e).lower() else "corrupt image data"
        raise ImageLoadError(name, reason, str(e)) from e


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode == "I" or img.mode.startswith("I;16"):
        # PIL's own conversion clips 16-bit values at 255 (all but black turns white): scale them instead.
        gray = np.asarray(img, dtype=np.float64) / 257.0
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
