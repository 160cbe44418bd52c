"""The predictions bundle format: one directory per photo (and person) holding what Sapiens2 saw.

The format is public and versioned (docs/bundle.md). `write_bundle` writes it atomically (a temp
directory beside the target, then a rename), `read_engine_bundle` reads it back.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import fileio
from engine.bundle.crops import (
    DetailCrop, Ready, crops_json, start_reading_crops, validate_crops, write_crop_files,
)
from engine.bundle.normals import normal_map_problem
from engine.colour import linear_to_srgb
from engine.errors import BundleError
from engine.versions import check_format_version

FORMAT_NAME = "sapiens-bundle"
FORMAT_VERSION = "1.2"
NUM_KEYPOINTS = 308
NUM_SEG_CLASSES = 29
# threads decoding a bundle's files (read_engine_bundle): the build's machines have 2+ cores
READ_THREADS = 2

# file names inside a bundle directory (docs/bundle.md lists them)
FILES = {
    "image": "image.png",
    "mask": "mask.png",
    "keypoints": "keypoints.json",
    "seg": "seg.png",
    "seg_probs": "seg_probs.npy",
    "normal": "normal.exr",
    "pointmap": "pointmap.exr",
    "albedo": "albedo.exr",
    "albedo_preview": "albedo.png",
}
MAP_FIELDS = ("keypoints", "seg", "normal", "pointmap", "albedo", "seg_probs")


@dataclass
class Bundle:
    image: np.ndarray              # H x W x 3 uint8 sRGB photo (EXIF orientation applied)
    mask: np.ndarray               # H x W bool person mask
    keypoints: np.ndarray | None   # 308 x 3 float32 (x, y, score) photo pixels
    seg: np.ndarray | None         # H x W uint8 class ids
    normal: np.ndarray | None      # H x W x 3 float32, unit, camera frame; NaN where unknown
    pointmap: np.ndarray | None    # H x W x 3 float32 metres, camera frame; NaN where unknown
    albedo: np.ndarray | None      # H x W x 3 float32 linear RGB in [0, 1]
    K: np.ndarray | None           # 3 x 3 float64 intrinsics (recovered from the pointmap)
    seg_probs: np.ndarray | None = None   # H x W x 29 float16, optional
    meta: dict = field(default_factory=dict)  # bundle.json: format version, photo size, bbox, provenance, notes
    crops: list[DetailCrop] = field(default_factory=list)  # hands and face seen again, finer (engine.bundle.crops)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the photo."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def keypoints_inside(self) -> np.ndarray | None:
        """308 bool: the keypoint lies on the photo (the reference keeps those outside it)."""
        if self.keypoints is None:
            return None
        return keypoints_inside(self.keypoints, self.size)


def keypoints_inside(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    x, y = keypoints[:, 0], keypoints[:, 1]
    return (x >= 0) & (x < width) & (y >= 0) & (y < height)


# --------------------------------------------------------------------------- validation


def _label(source: str | Path | None, what: str) -> str:
    return f"{source}: {what}" if source else what


def validate_bundle(bundle: Bundle, source: str | Path | None = None) -> None:
    """Raise BundleError naming the first thing that breaks the format's promises."""
    img = np.asarray(bundle.image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise BundleError(_label(source, f"image must be H x W x 3 uint8, got {img.shape} {img.dtype}"))
    h, w = img.shape[:2]

    def check_map(name: str, arr, channels: int | None, dtype) -> None:
        if arr is None:
            return
        want = (h, w) if channels is None else (h, w, channels)
        if arr.shape[:2] != (h, w):
            raise BundleError(_label(source, f"{name} is {arr.shape[0]} x {arr.shape[1]} (H x W) but the "
                                             f"photo is {h} x {w}; every map must match the photo"))
        if arr.shape != want:
            raise BundleError(_label(source, f"{name} must have shape {want}, got {arr.shape}"))
        if arr.dtype != dtype:
            raise BundleError(_label(source, f"{name} must be {np.dtype(dtype).name}, got {arr.dtype}"))

    check_map("mask", bundle.mask, None, np.bool_)
    check_map("seg", bundle.seg, None, np.uint8)
    check_map("normal", bundle.normal, 3, np.float32)
    check_map("pointmap", bundle.pointmap, 3, np.float32)
    check_map("albedo", bundle.albedo, 3, np.float32)
    check_map("seg_probs", bundle.seg_probs, NUM_SEG_CLASSES, np.float16)

    if bundle.seg is not None:
        if bundle.seg.max(initial=0) >= NUM_SEG_CLASSES:
            raise BundleError(_label(source, f"seg holds class id {int(bundle.seg.max())}; ids are 0..28"))
        stray = bundle.mask & (bundle.seg == 0)
        if stray.any():
            raise BundleError(_label(source, f"mask and seg disagree: {int(stray.sum())} mask pixels are "
                                             "background in seg"))
    if bundle.normal is not None:
        problem = normal_map_problem(bundle.normal)
        if problem:
            raise BundleError(_label(source, problem))
    if bundle.pointmap is not None and np.isinf(bundle.pointmap).any():
        raise BundleError(_label(source, "pointmap has infinite values (unknown points must be NaN)"))
    if bundle.albedo is not None:
        a = bundle.albedo
        if not np.isfinite(a).all():
            raise BundleError(_label(source, "albedo has NaN or infinite values"))
        if a.min(initial=0) < 0 or a.max(initial=0) > 1:
            raise BundleError(_label(source, f"albedo must lie in [0, 1], got [{a.min():.3g}, {a.max():.3g}]"))
    if bundle.keypoints is not None:
        k = bundle.keypoints
        if k.shape != (NUM_KEYPOINTS, 3) or k.dtype != np.float32:
            raise BundleError(_label(source, f"keypoints must be 308 x 3 float32, got {k.shape} {k.dtype}"))
        if not np.isfinite(k).all():
            raise BundleError(_label(source, "keypoints hold NaN or infinite values"))
    if bundle.K is not None:
        K = bundle.K
        if K.shape != (3, 3) or not np.isfinite(K).all():
            raise BundleError(_label(source, f"K must be a finite 3 x 3 matrix, got {K.shape}"))
    validate_crops(bundle.crops, (h, w), source)


# --------------------------------------------------------------------------- EXR / PNG helpers


def read_exr(path: Path) -> np.ndarray:
    """H x W x 3 float32 from an RGB EXR (half or float channels)."""
    return fileio.read_exr(path, BundleError)


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, compress_level=1)


def _read_png(path: Path, mode: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode != mode:
                raise BundleError(f"{path}: expected a {mode} PNG, got mode {im.mode}")
            return np.asarray(im)
    except OSError as exc:
        raise BundleError(f"{path}: not a readable PNG ({exc})") from exc


def keypoint_names() -> list[str]:
    """The 308 keypoints' names, in the order of a bundle's keypoints (assets/keypoints308.json)."""
    from engine.paths import asset

    table = json.loads(asset("keypoints308.json").read_text())
    return [k["name"] for k in sorted(table["keypoints"], key=lambda k: int(k["id"]))]


def keypoint_index() -> dict[str, int]:
    """Keypoint name -> its row in a bundle's keypoints."""
    return {name: i for i, name in enumerate(keypoint_names())}


# --------------------------------------------------------------------------- write


def bundle_json(bundle: Bundle) -> dict:
    """bundle.json content: the caller's meta plus the fields the format itself guarantees."""
    width, height = bundle.size
    meta = json.loads(json.dumps(bundle.meta, default=_json_default))  # deep copy, JSON-clean
    meta.update(format=FORMAT_NAME, version=FORMAT_VERSION)
    meta.setdefault("photo", {}).update(width=width, height=height)
    files = {"image": FILES["image"], "mask": FILES["mask"]}
    for name in MAP_FIELDS:
        if getattr(bundle, name) is not None:
            files[name] = FILES[name]
    if bundle.albedo is not None:
        files["albedo_preview"] = FILES["albedo_preview"]
    meta["files"] = files
    meta["K"] = None if bundle.K is None else np.asarray(bundle.K, dtype=float).tolist()
    if bundle.crops:
        meta["detail_crops"] = crops_json(bundle.crops)
    else:
        meta.pop("detail_crops", None)
    return meta


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def keypoints_json(bundle: Bundle) -> dict:
    k = bundle.keypoints
    return {
        "format": "sapiens-keypoints",
        "version": FORMAT_VERSION,
        "convention": "photo pixels after EXIF orientation; pixel (col, row) has its centre at "
                      "(col + 0.5, row + 0.5); keypoints outside the photo are kept and flagged",
        "image_size": list(bundle.size),
        "names": keypoint_names(),
        "keypoints": k.astype(float).round(4).tolist(),
        "inside": bundle.keypoints_inside().tolist(),
    }


def _write_files(bundle: Bundle, tmp: Path) -> None:
    _write_png(tmp / FILES["image"], bundle.image)
    _write_png(tmp / FILES["mask"], bundle.mask.astype(np.uint8) * 255)
    if bundle.keypoints is not None:
        (tmp / FILES["keypoints"]).write_text(json.dumps(keypoints_json(bundle), indent=1))
    if bundle.seg is not None:
        _write_png(tmp / FILES["seg"], bundle.seg)
    if bundle.seg_probs is not None:
        np.save(tmp / FILES["seg_probs"], bundle.seg_probs)
    if bundle.normal is not None:
        fileio.write_exr(tmp / FILES["normal"], bundle.normal)
    if bundle.pointmap is not None:
        fileio.write_exr(tmp / FILES["pointmap"], bundle.pointmap)
    if bundle.albedo is not None:
        fileio.write_exr(tmp / FILES["albedo"], bundle.albedo, half=True)
        preview = np.round(linear_to_srgb(bundle.albedo) * 255).astype(np.uint8)
        _write_png(tmp / FILES["albedo_preview"], preview)
    write_crop_files(bundle.crops, tmp)
    # bundle.json last: its presence is what marks a bundle complete
    (tmp / "bundle.json").write_text(json.dumps(bundle_json(bundle), indent=1, default=_json_default))


def write_bundle(bundle: Bundle, out_dir: str | Path) -> Path:
    """Write `bundle` to `out_dir` atomically; an existing bundle there is replaced whole."""
    out_dir = Path(out_dir)
    validate_bundle(bundle)
    with fileio.atomic_directory(out_dir, BundleError) as tmp:
        _write_files(bundle, tmp)
    return out_dir


# --------------------------------------------------------------------------- read


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / "bundle.json").is_file()


def _check_version(meta: dict, path: Path) -> None:
    check_format_version(meta, name=FORMAT_NAME, version=FORMAT_VERSION, source=path, what="bundle")


def read_engine_bundle(path: Path) -> Bundle:
    """A bundle directory written by write_bundle (any version this reader knows)."""
    json_path = path / "bundle.json"
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{json_path}: unreadable ({exc})") from exc
    _check_version(meta, json_path)
    files = meta.get("files") or {}
    check_file_names(files, json_path)
    for name in ("image", "mask"):
        if name not in files:
            raise BundleError(f"{json_path}: 'files' lacks the required {name!r} entry")
    for name, rel in files.items():
        if not (path / rel).is_file():
            raise BundleError(f"{path}: bundle.json lists {name} as {rel}, which is missing")

    # every file (the crops' too) is decoded in READ_THREADS threads (zlib, PIL and OpenEXR
    # release the GIL) and taken in the order below: the error met first is the one reading the
    # files one after the other meets
    pool = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="bundle-read")
    try:
        readers = (("image", lambda p: _read_png(p, "RGB")), ("mask", lambda p: _read_png(p, "L")),
                   ("seg", lambda p: _read_png(p, "L")), ("keypoints", _read_keypoints_json),
                   ("seg_probs", lambda p: np.load(p, allow_pickle=False)), ("normal", read_exr),
                   ("pointmap", read_exr), ("albedo", read_exr))
        jobs = {name: pool.submit(reader, path / files[name]) if name in files else Ready(None) for name, reader in readers}
        crop_reads = start_reading_crops(path, meta, pool)
        image = jobs["image"].result()
        photo = meta.get("photo")
        photo = photo if isinstance(photo, dict) else {}
        if (photo.get("width"), photo.get("height")) != (image.shape[1], image.shape[0]):
            raise BundleError(f"{path}: bundle.json says the photo is {photo.get('width')} x "
                              f"{photo.get('height')} but {files['image']} is {image.shape[1]} x {image.shape[0]}")
        mask = jobs["mask"].result() > 127
        seg, keypoints, seg_probs, normal, pointmap, albedo = (
            jobs[name].result() for name in ("seg", "keypoints", "seg_probs", "normal", "pointmap", "albedo"))
        K = _read_K(meta.get("K"), json_path)
        crops = crop_reads.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    bundle = Bundle(
        image=image, mask=mask, keypoints=keypoints, seg=seg, normal=normal, pointmap=pointmap,
        albedo=albedo, K=K, seg_probs=seg_probs,
        meta=meta, crops=crops,
    )
    validate_bundle(bundle, path)
    return bundle


def check_file_names(files, json_path: Path) -> None:
    """bundle.json's `files` names files of the bundle itself: a bundle from elsewhere must not make
    a reader open a file outside its folder, and a name that is not a string is said in words."""
    if not isinstance(files, dict):
        raise BundleError(f"{json_path}: 'files' must map names to file names, not a JSON {type(files).__name__}")
    for name, rel in files.items():
        if not isinstance(rel, str) or not rel:
            raise BundleError(f"{json_path}: 'files' gives {name!r} as {rel!r}, not a file name")
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BundleError(f"{json_path}: 'files' gives {name!r} as {rel!r}, outside the bundle's folder")


def _read_K(K, json_path: Path) -> np.ndarray | None:
    if K is None:
        return None
    try:
        return np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise BundleError(f"{json_path}: K must be a 3 x 3 matrix of numbers, got {K!r:.120}") from None


def _read_keypoints_json(path: Path) -> np.ndarray:
    try:
        data = json.loads(path.read_text())
        k = np.asarray(data["keypoints"], dtype=np.float32)
    except (OSError, json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: unreadable keypoints ({exc})") from exc
    if k.shape != (NUM_KEYPOINTS, 3):
        raise BundleError(f"{path}: expected 308 x [x, y, score], got shape {k.shape}")
    return k
