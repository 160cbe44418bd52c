"""Photo loading: any common photo file to an upright H x W x 3 uint8 sRGB array.

Handles JPEG/PNG/WebP/TIFF (Pillow) and EXR (OpenEXR), 8/16-bit and float, grey, palette,
CMYK, RGBA (composited on black, as the model's padding is black), and EXIF orientation.
The size is checked from the file header before any pixel is decoded, so a 30000 x 30000 file
or a 1 x 1 icon is refused at once with a message that says why.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.colour import linear_to_srgb
from engine.errors import InputImageError

# Smaller than this and there is no person to see: the model looks at 1024 x 768.
MIN_SIDE = 32
# Larger than this and decoding alone would take gigabytes (the maps are kept at photo size).
MAX_PIXELS = 120_000_000
MAX_SIDE = 32_768

EXR_MAGIC = b"\x76\x2f\x31\x01"
# EXIF tag 274; values 2..8 flip and/or rotate (1 = upright)
EXIF_ORIENTATION_TAG = 0x0112


@dataclass
class Photo:
    rgb: np.ndarray                # H x W x 3 uint8 sRGB, upright
    path: Path
    format: str                    # "JPEG", "PNG", "WEBP", "TIFF", "EXR", ...
    stored_size: tuple[int, int]   # (width, height) as stored in the file, before orientation
    orientation: int = 1           # EXIF orientation that was applied
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def describe(self) -> dict:
        return {
            "path": str(self.path), "format": self.format, "width": self.size[0],
            "height": self.size[1], "stored_width": self.stored_size[0],
            "stored_height": self.stored_size[1], "exif_orientation": self.orientation,
            "notes": list(self.notes),
        }


def check_size(path: Path, width: int, height: int) -> None:
    """Refuse sizes the pipeline cannot use, before decoding."""
    if min(width, height) < MIN_SIDE:
        raise InputImageError(f"{path}: image is only {width} x {height} pixels; photos must be at "
                              f"least {MIN_SIDE} pixels on each side")
    if max(width, height) > MAX_SIDE:
        raise InputImageError(f"{path}: image is {width} x {height} pixels; the limit is {MAX_SIDE} "
                              "pixels a side. Downscale it first")
    if width * height > MAX_PIXELS:
        raise InputImageError(f"{path}: image is {width} x {height} pixels "
                              f"({width * height / 1e6:.0f} megapixels); the limit is "
                              f"{MAX_PIXELS / 1e6:.0f} megapixels. Downscale it first")


def load_photo(path: str | Path) -> Photo:
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        # a named pipe would block the open until some writer comes; a device never ends
        raise InputImageError(f"{path}: a named pipe or device, not a photo file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError as exc:
        raise InputImageError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputImageError(f"{path}: is a directory, not a photo") from exc
    except OSError as exc:
        raise InputImageError(f"{path}: cannot read ({exc.strerror})") from exc
    if magic == EXR_MAGIC:
        return _load_exr(path)
    return _load_pillow(path)


# --------------------------------------------------------------------------- Pillow


def _load_pillow(path: Path) -> Photo:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # our own limit (check_size) is the one that counts
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError as exc:
        raise InputImageError(f"{path}: not an image file Pillow or OpenEXR can read "
                              "(JPEG, PNG, WebP, TIFF, EXR)") from exc
    except Image.DecompressionBombError as exc:
        # Pillow's message names its own, higher limit: say only ours (one limit, one number)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" ({int(found.group(1)) / 1e6:.0f} megapixels)" if found else ""
        raise InputImageError(f"{path}: image is far too large to decode{size}; the limit is "
                              f"{MAX_PIXELS / 1e6:.0f} megapixels. Downscale it first") from exc
    except OSError as exc:
        raise InputImageError(f"{path}: cannot open as an image ({exc})") from exc
    with im:
        stored_size = im.size
        check_size(path, *stored_size)
        fmt = im.format or "unknown"
        try:
            orientation = int(im.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
        except Exception:  # a damaged EXIF block should not cost the photo
            orientation = 1
        try:
            im.load()
            upright = ImageOps.exif_transpose(im) if orientation != 1 else im
            rgb, notes = _pillow_to_rgb8(upright)
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputImageError(f"{path}: the {fmt} data is damaged or truncated ({exc})") from exc
    return Photo(rgb=rgb, path=path, format=fmt, stored_size=stored_size,
                 orientation=orientation if 1 <= orientation <= 8 else 1, notes=notes)


def _pillow_to_rgb8(im) -> tuple[np.ndarray, list[str]]:
    """Any Pillow mode to H x W x 3 uint8; alpha composited on black."""
    notes: list[str] = []
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit grey: Pillow keeps the raw integers (or floats)
        values = np.asarray(im).astype(np.float64)
        if mode == "F":
            grey = np.clip(values, 0.0, 1.0) * 255.0 if values.max(initial=0) <= 1.0 else np.clip(values, 0, 255)
        else:
            peak = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
            grey = values / peak * 255.0
        notes.append(f"{mode} grey image converted to 8-bit")
        grey8 = np.clip(np.round(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=2), notes
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA")).astype(np.float32)
        alpha = rgba[..., 3:4] / 255.0
        if (alpha < 1).any():
            notes.append("transparent pixels composited on black")
        rgb = np.round(rgba[..., :3] * alpha).astype(np.uint8)
        return rgb, notes
    if mode != "RGB":
        notes.append(f"{mode} image converted to RGB")
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy(), notes


# --------------------------------------------------------------------------- EXR


def _load_exr(path: Path) -> Photo:
    import OpenEXR

    try:
        header = OpenEXR.File(str(path), header_only=True).header()
    except Exception as exc:
        raise InputImageError(f"{path}: damaged EXR header ({exc})") from exc
    lo, hi = header["dataWindow"]
    width, height = int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1)
    check_size(path, width, height)
    try:
        channels = OpenEXR.File(str(path), separate_channels=True).channels()
    except Exception as exc:
        raise InputImageError(f"{path}: the EXR data is damaged or truncated ({exc})") from exc
    names = set(channels)
    if {"R", "G", "B"} <= names:
        linear = np.stack([channels[c].pixels for c in "RGB"], axis=-1).astype(np.float32)
    elif "Y" in names:
        linear = np.repeat(channels["Y"].pixels.astype(np.float32)[..., None], 3, axis=2)
    else:
        raise InputImageError(f"{path}: EXR has no R, G, B or Y channels (has {sorted(names)})")
    notes = ["linear EXR encoded to 8-bit sRGB (values clipped to [0, 1])"]
    if "A" in names:
        # EXR colour is premultiplied by alpha, so it already is the image composited on black
        notes.append("alpha ignored: premultiplied EXR colour is the image over black")
    srgb = linear_to_srgb(np.nan_to_num(linear, nan=0.0, posinf=1.0, neginf=0.0))
    rgb = np.round(srgb * 255).astype(np.uint8)
    return Photo(rgb=rgb, path=path, format="EXR", stored_size=(width, height), notes=notes)
