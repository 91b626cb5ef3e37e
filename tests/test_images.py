"""load_image: every image kind decodes to (H, W, 3) uint8 RGB; every bad file raises an error naming it."""

import io
import os
import socket
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, features

from agecurriculum.data.images import DEFAULT_MAX_BYTES, ImageLoadError, load_image, read_image_bytes


def _save(path, img, **kwargs):
    img.save(path, **kwargs)
    return path


def _photo(h=48, w=64):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "JPEG", "WEBP"])
def test_rgb_formats(tmp_path, fmt):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("PIL built without WebP")
    pixels = _photo()
    lossless = fmt in ("PNG", "BMP")
    options = {} if lossless else {"quality": 95}
    path = _save(tmp_path / f"a.{fmt.lower()}", Image.fromarray(pixels), format=fmt, **options)
    out = load_image(path)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    if lossless:
        np.testing.assert_array_equal(out, pixels)


def test_grayscale_modes(tmp_path):
    gray = np.array([[0, 100, 255]], dtype=np.uint8)
    out = load_image(_save(tmp_path / "l.png", Image.fromarray(gray, "L")))
    assert out.shape == (1, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 1], [100, 100, 100])

    bits = Image.new("1", (4, 2), 0)
    bits.putpixel((3, 1), 1)
    out = load_image(_save(tmp_path / "bits.png", bits))
    assert out.shape == (2, 4, 3) and out[1, 3].tolist() == [255] * 3 and out[0, 0].tolist() == [0] * 3

    # 16-bit values are scaled, not clipped (PIL's own conversion would turn 32768 white)
    deep = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    out = load_image(_save(tmp_path / "i16.png", deep))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_palette_and_cmyk(tmp_path):
    pal = Image.new("P", (3, 2), 0)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putpixel((2, 1), 1)
    out = load_image(_save(tmp_path / "p.png", pal))
    assert out.shape == (2, 3, 3) and out[1, 2].tolist() == [10, 200, 30]

    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta + yellow: red
    out = load_image(_save(tmp_path / "cmyk.jpg", cmyk, quality=100))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.abs(out[4, 4].astype(int) - [255, 0, 0]).max() <= 8


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = [0, 0, 0, 0]  # fully transparent black -> white
    rgba[0, 1] = [200, 10, 20, 255]  # opaque -> unchanged
    rgba[0, 2] = [0, 0, 0, 128]  # half transparent black -> mid grey
    out = load_image(_save(tmp_path / "rgba.png", Image.fromarray(rgba, "RGBA")))
    assert out.shape == (1, 3, 3)
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [200, 10, 20]
    assert np.abs(out[0, 2].astype(int) - 127).max() <= 1

    la = Image.fromarray(np.array([[[50, 255], [50, 0]]], dtype=np.uint8), "LA")
    out = load_image(_save(tmp_path / "la.png", la))
    assert out[0, 0].tolist() == [50] * 3 and out[0, 1].tolist() == [255] * 3


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)
    pixels[0, 0] = 255  # top-left marker, stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = load_image(_save(tmp_path / "rot.png", Image.fromarray(pixels), exif=exif))
    assert out.shape == (4, 2, 3)  # displayed portrait
    assert out[0, 1].tolist() == [255, 255, 255]  # the stored top-left ends up top-right


def test_bytes_and_file_objects(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, format="PNG")
    np.testing.assert_array_equal(load_image(buf.getvalue()), _photo())
    buf.seek(0)
    np.testing.assert_array_equal(load_image(buf), _photo())
    with pytest.raises(ImageLoadError, match="upload.png: not an image"):
        load_image(b"hello", name="upload.png")


def _jpeg_bytes():
    buf = io.BytesIO()
    Image.fromarray(_photo(96, 96)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _bad_files(tmp_path):
    rng = np.random.default_rng(1)
    jpeg = _jpeg_bytes()
    noise_reasons = ("not an image (unrecognised format)", "corrupt image data", "truncated file")  # noise decides
    cases = {
        "corrupt.jpg": (jpeg[:2] + rng.bytes(3000), noise_reasons),  # JPEG start marker, then noise
        "corrupt_header.jpg": (jpeg[:200] + rng.bytes(3000), noise_reasons),  # part of a real header, noise after
        "truncated.jpg": (jpeg[: len(jpeg) // 2], ("truncated file",)),
        "no_end.jpg": (jpeg[:-2], ("truncated file",)),  # only the end-of-image marker missing
        "text.jpg": (b"<html><body>404 Not Found</body></html>", ("not an image (unrecognised format)",)),
        "empty.jpg": (b"", ("empty file",)),
    }
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    return {tmp_path / name: reason for name, (_, reason) in cases.items()}


def test_bad_files_name_file_and_reason(tmp_path):
    for path, reasons in _bad_files(tmp_path).items():
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        assert info.value.reason in reasons, path
        assert str(info.value).startswith(f"{path}: {info.value.reason}")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="nope.jpg: file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match=r"not a regular file \(directory\)$"):
        load_image(tmp_path)


# Loads each path given, printing one line per path: its error, or "ok". Further memory is capped at 1 GiB, so
# that an unbounded read fails in this child (MemoryError) instead of exhausting the machine running the tests.
_LOAD_IN_CHILD = """
import resource, sys
from agecurriculum.data.images import load_image
size = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize:"))) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
for path in sys.argv[1:]:
    try:
        load_image(path)
        print("ok", flush=True)
    except Exception as e:
        print(f"{type(e).__name__}: {e}", flush=True)
"""


@pytest.mark.skipif(
    not (hasattr(os, "mkfifo") and os.path.exists("/dev/zero") and os.path.isfile("/proc/self/status")),
    reason="needs FIFOs, /dev/zero and /proc (Linux)",
)
def test_special_files_are_refused_before_opening(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: forever
    link = tmp_path / "good.jpg"
    link.symlink_to("/dev/zero")  # a symlink is followed: what counts is what it points to
    paths = [fifo, "/dev/zero", link]  # reading /dev/zero whole would take all memory
    try:
        child = subprocess.run(
            [sys.executable, "-c", _LOAD_IN_CHILD, *map(str, paths)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"load_image blocked; it got through: {e.stdout!r}")
    assert child.stdout.splitlines() == [
        f"ImageLoadError: {fifo}: not a regular file (FIFO)",
        "ImageLoadError: /dev/zero: not a regular file (character device)",
        f"ImageLoadError: {link}: not a regular file (character device)",
    ], child.stderr


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets on this platform")
def test_socket_is_refused(tmp_path):
    path = tmp_path / "s.png"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        with pytest.raises(ImageLoadError, match=r"s.png: not a regular file \(socket\)$"):
            read_image_bytes(path)


def _png_bytes():
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, format="PNG")
    return buf.getvalue()


def test_file_size_limit(tmp_path):
    assert DEFAULT_MAX_BYTES == 100 * 2**20
    data = _png_bytes()
    path = tmp_path / "a.png"
    path.write_bytes(data)
    n = len(data)
    np.testing.assert_array_equal(load_image(path, max_bytes=n), _photo())  # exactly at the limit: fine
    assert read_image_bytes(path, max_bytes=n) == data
    with pytest.raises(ImageLoadError) as info:
        load_image(path, max_bytes=n - 1)
    assert info.value.reason == "file too large"
    assert str(info.value) == f"{path}: file too large ({n} bytes > limit of {n - 1} bytes)"
    np.testing.assert_array_equal(load_image(path, max_bytes=None), _photo())
    with pytest.raises(ValueError, match="max_bytes must be at least 1"):
        load_image(path, max_bytes=0)


@pytest.mark.skipif(not os.path.isfile("/proc/self/status"), reason="no /proc on this platform")
def test_size_limit_holds_when_stat_says_less():
    # /proc files are regular files whose stat size is 0, whatever they hold: so is a file that grows after stat.
    # Only the read itself, capped at max_bytes + 1, catches them.
    path = "/proc/self/status"
    assert os.stat(path).st_size == 0
    with pytest.raises(ImageLoadError, match=r"status: file too large \(at least 101 bytes > limit of 100 bytes\)"):
        read_image_bytes(path, max_bytes=100)


class _Endless(io.RawIOBase):
    """A stream of zeros that never ends, handed out in short reads as a pipe does; counts what was read."""

    def __init__(self):
        self.served = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), 4096)
        buffer[:n] = bytes(n)
        self.served += n
        return n


def test_size_limit_on_bytes_and_file_objects():
    data = _png_bytes()
    with pytest.raises(ImageLoadError, match=rf"upload.png: file too large \({len(data)} bytes > limit of 100 bytes\)"):
        load_image(data, max_bytes=100, name="upload.png")
    np.testing.assert_array_equal(load_image(io.BytesIO(data), max_bytes=len(data)), _photo())
    endless = _Endless()
    with pytest.raises(ImageLoadError, match=r"<stream>: file too large \(at least 10001 bytes"):
        load_image(endless, max_bytes=10_000, name="<stream>")
    assert endless.served <= 10_001  # read up to the cap, no further


def _png_header_only(width, height):
    """A ~60-byte PNG whose header claims width x height pixels: what a decompression bomb looks like to open()."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bombs(tmp_path, monkeypatch):
    limit_before = Image.MAX_IMAGE_PIXELS
    filters_before = list(warnings.filters)

    huge = tmp_path / "huge.png"  # 10 Gpx claimed: PIL itself refuses it while reading the header
    huge.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageLoadError, match="huge.png: too many pixels"):
        load_image(huge)

    big = _save(tmp_path / "big.png", Image.new("L", (1200, 1000), 7))  # a real image, compresses to ~1 KB
    assert big.stat().st_size < 10_000
    with pytest.raises(ImageLoadError, match=r"big.png: too many pixels \(1200x1000 > 1000000"):
        load_image(big, max_pixels=1_000_000)
    assert load_image(big, max_pixels=1_200_000).shape == (1000, 1200, 3)

    # between PIL's limit and twice it PIL only warns: that is an error here too, whatever max_pixels says
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageLoadError, match="too many pixels"):
        load_image(big, max_pixels=None)
    monkeypatch.undo()

    assert Image.MAX_IMAGE_PIXELS == limit_before and warnings.filters == filters_before  # no global state changed
