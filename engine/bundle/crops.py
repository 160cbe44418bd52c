"""Detail crops in a predictions bundle (docs/bundle.md, "Detail crops", since 1.2).

The dense models run again on boxes around the hands and the face; what they saw there is kept
beside the whole-photo maps at the crop's finer resolution: `factor` grid pixels per photo pixel
over the box. Each crop has its own folder `crops/NAME/` (mask.png, and pointmap.exr, normal.exr,
albedo.exr, seg.png for the tasks that ran) and an entry in bundle.json's `detail_crops`.
Pointmaps are the model's own, unaligned: the build aligns each one to the whole-body pointmap
(engine.geometry.detail).
"""

from __future__ import annotations

import json
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import fileio
from engine.bundle.normals import normal_map_problem
from engine.errors import BundleError

CROP_NAMES = ("left_hand", "right_hand", "face")
CROP_FILES = {"mask": "mask.png", "seg": "seg.png", "pointmap": "pointmap.exr", "normal": "normal.exr",
              "albedo": "albedo.exr"}


@dataclass
class DetailCrop:
    name: str                          # one of CROP_NAMES
    box: tuple[int, int, int, int]     # x0, y0, x1, y1 photo pixel edges (x1, y1 exclusive)
    factor: int                        # crop grid pixels per photo pixel, along each axis
    mask: np.ndarray                   # h x w bool, h = (y1 - y0) * factor, w = (x1 - x0) * factor
    pointmap: np.ndarray | None = None  # h x w x 3 float32, the model's metres (unaligned), NaN off the mask
    normal: np.ndarray | None = None   # h x w x 3 float32 unit, NaN off the mask
    albedo: np.ndarray | None = None   # h x w x 3 float32 linear in [0, 1]
    seg: np.ndarray | None = None      # h x w uint8 class ids
    meta: dict = field(default_factory=dict)   # how the crop was chosen and run (keypoints used, letterbox)

    @property
    def grid_hw(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return (y1 - y0) * self.factor, (x1 - x0) * self.factor

    def files(self) -> dict[str, str]:
        present = ["mask"] + [k for k in ("seg", "pointmap", "normal", "albedo") if getattr(self, k) is not None]
        return {k: f"crops/{self.name}/{CROP_FILES[k]}" for k in present}


def crops_json(crops: list[DetailCrop]) -> list[dict]:
    return [{"name": c.name, "box": [int(v) for v in c.box], "factor": int(c.factor),
             "grid_hw": list(c.grid_hw), "files": c.files(), **c.meta} for c in crops]


def validate_crops(crops: list[DetailCrop], photo_hw: tuple[int, int], source=None) -> None:
    """BundleError naming the crop and what is wrong with it."""
    h, w = photo_hw
    seen = set()
    for c in crops:
        where = f"{source}: detail crop {c.name!r}" if source else f"detail crop {c.name!r}"
        if c.name not in CROP_NAMES or c.name in seen:
            raise BundleError(f"{where}: the name must be one of {', '.join(CROP_NAMES)}, each at most once")
        seen.add(c.name)
        x0, y0, x1, y1 = c.box
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise BundleError(f"{where}: box {list(c.box)} is not inside the {w} x {h} photo")
        if not (isinstance(c.factor, (int, np.integer)) and 1 <= c.factor <= 16):
            raise BundleError(f"{where}: factor must be a whole number 1..16, not {c.factor!r}")
        hw = c.grid_hw
        for key, channels, dtype in (("mask", None, np.bool_), ("seg", None, np.uint8),
                                     ("pointmap", 3, np.float32), ("normal", 3, np.float32),
                                     ("albedo", 3, np.float32)):
            arr = getattr(c, key)
            if arr is None:
                continue
            want = hw if channels is None else (*hw, channels)
            if arr.shape != want or arr.dtype != dtype:
                raise BundleError(f"{where}: {key} must be {want} {np.dtype(dtype).name} (box x factor), "
                                  f"got {arr.shape} {arr.dtype}")
        problem = None if c.normal is None else normal_map_problem(c.normal)
        if problem:
            raise BundleError(f"{where}: {problem}")
        if c.pointmap is not None and np.isinf(c.pointmap).any():
            raise BundleError(f"{where}: pointmap has infinite values (unknown points must be NaN)")
        if c.albedo is not None and not (np.isfinite(c.albedo).all() and c.albedo.min(initial=0) >= 0
                                          and c.albedo.max(initial=0) <= 1):
            raise BundleError(f"{where}: albedo must be finite and lie in [0, 1]")


def write_crop_files(crops: list[DetailCrop], bundle_dir: Path) -> None:
    from PIL import Image

    for c in crops:
        folder = bundle_dir / "crops" / c.name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(c.mask.astype(np.uint8) * 255).save(folder / CROP_FILES["mask"], compress_level=1)
        if c.seg is not None:
            Image.fromarray(c.seg).save(folder / CROP_FILES["seg"], compress_level=1)
        for key in ("pointmap", "normal"):
            if getattr(c, key) is not None:
                fileio.write_exr(folder / CROP_FILES[key], getattr(c, key))
        if c.albedo is not None:
            fileio.write_exr(folder / CROP_FILES["albedo"], c.albedo, half=True)


def read_crops(bundle_dir: Path, meta: dict) -> list[DetailCrop]:
    """The crops bundle.json lists (none before 1.2); a listed file that is missing or unreadable
    is a BundleError naming it."""
    return start_reading_crops(bundle_dir, meta).result()


class CropReads:
    """The crops' files being read (start_reading_crops); `result()` the crops, or the error
    reading them one after the other would have met first."""

    def __init__(self):
        self.planned = []   # (name, box, factor, extra, {key: job}) per entry, in the listed order
        self.failure = None  # what stopped the listing (a malformed entry, a file missing)

    def result(self) -> list[DetailCrop]:
        # every read started before the failure is waited for in the listed order: an unreadable
        # file listed before a malformed entry is the error, as when read one after the other
        resolved = [{key: job.result() for key, job in pending.items()} for *_, pending in self.planned]
        if self.failure is not None:
            raise self.failure
        crops = []
        for (name, box, factor, extra, _), maps in zip(self.planned, resolved):
            maps["mask"] = maps["mask"] > 127
            crops.append(DetailCrop(name=name, box=box, factor=factor, meta=extra, **maps))
        return crops


class Ready:
    """A read done at once (no pool): its result, as a future's."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _read_crop_file(path: Path, exr: bool) -> np.ndarray:
    from PIL import Image

    if exr:
        return fileio.read_exr(path, BundleError)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except OSError as exc:
        raise BundleError(f"{path}: not a readable PNG ({exc})") from exc


def start_reading_crops(bundle_dir: Path, meta: dict, pool: Executor | None = None) -> CropReads:
    """read_crops with the files decoded in `pool` (threads: zlib and OpenEXR release the GIL),
    started now; without a pool each is read here, at once. The listing's errors (a malformed
    entry, a file missing) are kept for `result()`, which raises the first error in the order the
    files are listed, as reading them one by one would."""
    reads = CropReads()

    def submit(path, exr):
        return Ready(_read_crop_file(path, exr)) if pool is None else pool.submit(_read_crop_file, path, exr)

    try:
        _list_crops(bundle_dir, meta, reads.planned, submit)
    except BundleError as exc:
        if pool is None:
            raise
        reads.failure = exc
    return reads


def _list_crops(bundle_dir: Path, meta: dict, planned: list, submit) -> None:
    entries = meta.get("detail_crops") or []
    if not isinstance(entries, list):
        raise BundleError(f"{bundle_dir}: bundle.json's detail_crops must be a list")
    for entry in entries:
        try:
            name, box, factor, files = entry["name"], tuple(int(v) for v in entry["box"]), entry["factor"], entry["files"]
            if len(box) != 4 or not isinstance(files, dict) or "mask" not in files:
                raise ValueError("a box of 4 numbers and files mapping names to files, a mask among them")
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{bundle_dir}: a detail_crops entry is malformed ({exc}): {json.dumps(entry)[:200]}") from exc
        extra = {k: v for k, v in entry.items() if k not in ("name", "box", "factor", "grid_hw", "files")}
        pending = {}
        planned.append((name, box, factor, extra, pending))
        for key, rel in files.items():
            if key not in CROP_FILES:
                continue
            if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise BundleError(f"{bundle_dir}: detail crop {name!r} gives {key} as {rel!r}, not a file inside the bundle")
            path = bundle_dir / rel
            if not path.is_file():
                raise BundleError(f"{bundle_dir}: detail crop {name!r} lists {key} as {rel}, which is missing")
            pending[key] = submit(path, rel.endswith(".exr"))
