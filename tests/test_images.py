"""load_image: every image kind decodes to (H, W, 3) uint8 RGB; every bad file raises an error naming it."""

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, features

from agecurriculum.data.images import ImageLoadError, load_image


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
    with pytest.raises(ImageLoadError, match="cannot read file"):
        load_image(tmp_path)


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
