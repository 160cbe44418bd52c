"""The photos of a predict run: their bundle names, the output check made before any model runs,
loading, and what is known about each photo while its batch is processed."""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.bundle import is_bundle
from engine.errors import EngineError
from engine.images import Photo, load_photo
from engine.person import Person


@dataclass
class PhotoWork:
    """Everything known about one photo while its batch is processed."""

    path: Path
    out_name: str
    photo: Photo | None = None
    seg: np.ndarray | None = None
    seg_probs: np.ndarray | None = None
    people: list[Person] = field(default_factory=list)
    people_found: int = 0
    keypoints: list[np.ndarray] = field(default_factory=list)
    pose_crops: list[dict] = field(default_factory=list)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    raw: dict[str, tuple] = field(default_factory=dict)   # task -> (raw outputs, box): mapped back later
    dense_box: dict | None = None
    crops: list[list] = field(default_factory=list)   # per person: its DetailCrops (engine.predict.crops)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    on_device: object = None   # the photo as a tensor on the processing device (GPU path)


def bundle_names(photos: list[Path]) -> list[str]:
    """Bundle directory names, deterministic and distinct (docs/bundle.md, "Names").

    Each photo takes the first of these that no other file shares: its stem (photo); stem and
    suffix (photo_png: photo.png beside photo.jpg); its folder's name, stem and suffix
    (a_photo_png: a/photo.png beside b/photo.png); that and 8 hex digits of the SHA-1 of its
    absolute path. The same file given twice keeps one name. Every name is one visible path
    component (`folder_name`): `..png` names its bundle `_`, not the output folder itself."""
    paths = [Path(p) for p in photos]
    files = [os.path.abspath(p) for p in paths]
    candidates = (
        lambda p, f: p.stem,
        lambda p, f: f"{p.stem}_{p.suffix.lstrip('.')}",
        lambda p, f: f"{p.parent.name or 'root'}_{p.stem}_{p.suffix.lstrip('.')}",
        lambda p, f: f"{p.parent.name or 'root'}_{p.stem}_{p.suffix.lstrip('.')}_"
                     f"{hashlib.sha1(os.fsencode(f)).hexdigest()[:8]}",
    )
    names: list[str | None] = [None] * len(paths)
    pending = list(range(len(paths)))
    for level, make in enumerate(candidates):
        proposed = {i: folder_name(make(paths[i], files[i])) for i in pending}
        owners = defaultdict(set)
        for i, name in proposed.items():
            owners[name].add(files[i])
        taken = set(names)
        last = level == len(candidates) - 1
        pending = [i for i in pending if not _settle(names, i, proposed[i], owners, taken, last)]
    return names


# a bundle folder's name, in bytes: the staging folder beside it adds about 40 (fileio.staging_dir)
# and most file systems stop at 255
MAX_NAME_BYTES = 180


def folder_name(text: str) -> str:
    """`text` as one visible folder name: separators become `_`, leading dots become `_` (a name
    of dots would be the output folder or its parent, a leading dot hides the bundle), and a name
    too long for the file system keeps its start and a hash of the whole. Two texts that map to
    the same name collide in bundle_names, which then takes the next, longer candidate."""
    name = text.replace("/", "_").replace("\\", "_").replace("\0", "_")
    stripped = name.lstrip(".")
    name = "_" * (len(name) - len(stripped)) + stripped
    if len(os.fsencode(name)) > MAX_NAME_BYTES:   # fsencode: a file name need not be UTF-8
        digest = hashlib.sha1(os.fsencode(text)).hexdigest()[:8]
        head = name[:MAX_NAME_BYTES - 9]
        while len(os.fsencode(head)) > MAX_NAME_BYTES - 9:   # whole characters: a cut one is not UTF-8
            head = head[:-1]
        name = f"{head}_{digest}"
    return name or "_"


def _settle(names, i, name, owners, taken, last) -> bool:
    if last or (len(owners[name]) == 1 and name not in taken):
        names[i] = name
        return True
    return False


def check_targets(out_dir: Path, names: list[str]) -> None:
    """Refuse, before any model runs, an output that would replace something that is not ours:
    --out naming a file, or a bundle's folder that exists and is not a predictions bundle."""
    if out_dir.exists() and not out_dir.is_dir():
        raise EngineError(f"--out {out_dir}: is a file, not a folder; give a folder for the bundles")
    for name in dict.fromkeys(names):
        target = out_dir / name
        if target.exists() and not is_bundle(target):
            what = "a file" if not target.is_dir() else "a folder that is not a predictions bundle"
            raise EngineError(f"--out {out_dir}: {target} is {what} (no bundle.json); predict would "
                              "replace it. Move it away or choose another --out")


def load_work(work: PhotoWork) -> None:
    """Decode the photo (engine.errors.InputImageError when it cannot be used)."""
    t0 = time.perf_counter()
    work.photo = load_photo(work.path)
    work.timings["decode"] += time.perf_counter() - t0

