"""Photo loading: formats, bit depths, alpha, EXIF orientation, and bad files refused clearly."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputImageError
from engine.images import MIN_SIDE, load_photo

H, W = 60, 40


def photo_array() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([xx * 6, yy * 4, np.full_like(xx, 128)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("suffix, lossless", [(".png", True), (".tif", True), (".webp", False), (".jpg", False)])
def test_common_formats(tmp_path, suffix, lossless):
    rgb = photo_array()
    path = tmp_path / f"p{suffix}"
    Image.fromarray(rgb).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    photo = load_photo(path)
    assert photo.rgb.shape == (H, W, 3) and photo.rgb.dtype == np.uint8
    diff = np.abs(photo.rgb.astype(int) - rgb).max()
    assert diff == 0 if (lossless or suffix == ".webp") else diff < 40


def test_grey_16bit_and_rgba(tmp_path):
    grey16 = (np.arange(H * W).reshape(H, W) * 20).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    photo = load_photo(tmp_path / "g16.png")
    assert photo.rgb.shape == (H, W, 3)
    assert np.array_equal(photo.rgb[..., 0], np.round(grey16 / 257).astype(np.uint8))
    assert np.array_equal(photo.rgb[..., 0], photo.rgb[..., 2])

    rgba = np.dstack([photo_array(), np.zeros((H, W), np.uint8)])
    rgba[:, W // 2:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    photo = load_photo(tmp_path / "a.png")
    assert (photo.rgb[:, : W // 2] == 0).all()                     # transparent -> black
    assert np.array_equal(photo.rgb[:, W // 2:], photo_array()[:, W // 2:])
    assert any("black" in n for n in photo.notes)

    Image.fromarray(photo_array()[..., 0], "L").save(tmp_path / "l.jpg", quality=100)
    assert load_photo(tmp_path / "l.jpg").rgb.shape == (H, W, 3)


def test_exif_orientation_is_applied(tmp_path):
    rgb = photo_array()
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    im.save(tmp_path / "o.jpg", exif=exif, quality=100)
    photo = load_photo(tmp_path / "o.jpg")
    assert photo.orientation == 6 and photo.stored_size == (W, H)
    assert photo.rgb.shape == (W, H, 3)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(photo.rgb.astype(int) - expected).mean() < 3


def test_exr_photo(tmp_path):
    import OpenEXR

    linear = np.full((H, W, 3), 0.214, np.float32)   # sRGB 0.5
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, {"RGB": linear}).write(str(tmp_path / "p.exr"))
    photo = load_photo(tmp_path / "p.exr")
    assert photo.format == "EXR" and photo.rgb.shape == (H, W, 3)
    assert abs(int(photo.rgb[0, 0, 0]) - 128) <= 1


def test_non_image_and_truncated_jpeg(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    with pytest.raises(InputImageError, match="notes.jpg: not an image"):
        load_photo(tmp_path / "notes.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 300, 3), dtype=np.uint8)).save(
        tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputImageError, match="cut.jpg: .*(damaged|truncated)"):
        load_photo(tmp_path / "cut.jpg")
    with pytest.raises(InputImageError, match="no such file"):
        load_photo(tmp_path / "missing.png")


def test_tiny_image_refused(tmp_path):
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    with pytest.raises(InputImageError, match=f"only 1 x 1 pixels.*at least {MIN_SIDE}"):
        load_photo(tmp_path / "dot.png")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a few bytes of image data: decoding all
    of it would need gigabytes, so only a size check done on the header can refuse it quickly."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def test_huge_image_refused_before_decoding(tmp_path):
    (tmp_path / "huge.png").write_bytes(png_header_only(30000, 30000))
    with pytest.raises(InputImageError, match="huge.png: image is (far )?too large|30000 x 30000") as huge:
        load_photo(tmp_path / "huge.png")
    # one limit, ours, stated once (not Pillow's bomb limit beside it)
    assert "900 megapixels" in str(huge.value) and "120 megapixels" in str(huge.value)
    assert "178956970" not in str(huge.value) and str(huge.value).count("limit") == 1
    (tmp_path / "long.png").write_bytes(png_header_only(40000, 100))
    with pytest.raises(InputImageError, match="the limit is 32768 pixels a side") as long:
        load_photo(tmp_path / "long.png")
    assert "megapixels" not in str(long.value)
    # below Pillow's own bomb limit, our limit still refuses it from the header
    (tmp_path / "big.png").write_bytes(png_header_only(12000, 12000))
    with pytest.raises(InputImageError, match="12000 x 12000 pixels"):
        load_photo(tmp_path / "big.png")
    import OpenEXR

    # EXR: the size comes from the header's data window
    OpenEXR.File({}, {"RGB": np.zeros((40, 40, 3), np.float32)}).write(str(tmp_path / "ok.exr"))
    assert load_photo(tmp_path / "ok.exr").size == (40, 40)
