"""Read what the reference Sapiens2 demo scripts save, as a Bundle.

What those scripts write (facebookresearch/sapiens2 `tools/vis/`, and the Sapiens lite demos whose
formats they keep), for a photo `STEM.jpg`:

| file | content |
| --- | --- |
| `STEM_seg.npy` | H x W integer class ids (argmax of the logits resized to the photo) |
| `STEM.npy` | H x W bool foreground mask, or H x W x 3 float normals (normal demo) |
| `STEM_normal.npy` | H x W x 3 float normals |
| `STEM_depth.npy` | H x W float16 depth in metres (pointmap demo; x and y are not saved) |
| `*_predictions.json` | pose: {"image_size": [H, W], "frames": [{"image_name", "instances": [{"bbox", "keypoints": K x 2, "keypoint_scores": K}]}]} |
| `STEM.json` | pose (lite demo): {"instance_info": [{"keypoints", "keypoint_scores", "bbox"}]} |
| `STEM.jpg` / `.png` | a visualisation: the photo with the prediction panel(s) beside it |

Keypoints there put pixel centres on integers; bundles put them at +0.5 (docs/conventions.md).
A pointmap is rebuilt from depth with the intrinsics the model is trained for (focal 768 px at
the 1024 x 768 input, centred), which the bundle's notes say.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.bundle.format import NUM_KEYPOINTS, NUM_SEG_CLASSES, Bundle, validate_bundle
from engine.errors import BundleError, InputImageError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".exr")
MODEL_INPUT = (1024, 768)  # H, W
CANONICAL_FOCAL = 768.0


def read_reference_outputs(paths, *, image=None, person: int = 0) -> Bundle:
    """`paths`: reference output files and/or directories (seg, normal, pointmap, pose outputs)."""
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    for p in paths:
        if not p.exists():
            raise BundleError(f"{p}: no such file or directory")
    dirs = list(dict.fromkeys(p if p.is_dir() else p.parent for p in paths))
    stem = Path(image).stem if image is not None else _guess_stem(paths, dirs)
    found = _find_outputs(stem, dirs, paths)
    if not found:
        raise BundleError(f"{', '.join(map(str, paths))}: no bundle.json and no reference outputs "
                          f"for photo {stem!r} (expected {stem}_seg.npy, {stem}.npy, {stem}_depth.npy or "
                          "*_predictions.json)")
    notes = [f"imported from reference demo outputs: {', '.join(str(f) for f in found.values())}"]
    maps = {name: _load_npy(f) for name, f in found.items() if f.suffix == ".npy"}
    map_hw = next((m.shape[:2] for m in maps.values()), None)
    photo, photo_notes = _load_photo(image, stem, dirs, map_hw)
    notes += photo_notes
    h, w = photo.shape[:2]
    for name, arr in maps.items():
        if arr.shape[:2] != (h, w):
            raise BundleError(f"{found[name]}: map is {arr.shape[1]} x {arr.shape[0]} but the photo is "
                              f"{w} x {h}; pass the photo these outputs were made from")

    seg = mask = normal = pointmap = K = keypoints = None
    meta: dict = {"source": "reference-demo", "photo": {"path": str(image) if image else None}}
    if "seg" in maps:
        seg = _as_class_ids(maps["seg"], found["seg"])
        mask = seg > 0
    if "mask" in maps:
        mask = maps["mask"].astype(bool)
        if seg is not None:
            mask &= seg > 0
    if "normal" in maps:
        normal = _as_unit_normals(maps["normal"], found["normal"])
    if "depth" in maps:
        pointmap, K = _pointmap_from_depth(maps["depth"].astype(np.float32), found["depth"])
        notes.append("pointmap rebuilt from depth with the model's canonical intrinsics "
                     "(focal 768 px at the 1024 x 768 input); the reference saves no x, y")
    if "pose" in found:
        keypoints, bbox = _read_pose_json(found["pose"], stem, person)
        meta["person"] = {"bbox": bbox, "bbox_source": "reference detector"}
    if mask is None:
        mask = np.ones((h, w), dtype=bool)
        notes.append("no segmentation among the outputs: the mask is the whole photo")
    if normal is not None:
        normal[~mask] = np.nan
    if pointmap is not None:
        pointmap[~mask] = np.nan
    meta["notes"] = notes
    bundle = Bundle(image=photo, mask=mask, keypoints=keypoints, seg=seg, normal=normal,
                    pointmap=pointmap, albedo=None, K=K, meta=meta)
    validate_bundle(bundle, paths[0])
    return bundle


def _guess_stem(paths: list[Path], dirs: list[Path]) -> str:
    for p in paths:
        if p.is_file() and p.suffix == ".npy":
            name = p.name[: -len(".npy")]
            for suffix in ("_seg", "_depth", "_normal"):
                if name.endswith(suffix):
                    return name[: -len(suffix)]
            return name
    stems = sorted({f.name.rsplit("_", 1)[0] if f.name.endswith(("_seg.npy", "_depth.npy", "_normal.npy"))
                    else f.stem for d in dirs for f in d.glob("*.npy")})
    if len(stems) == 1:
        return stems[0]
    if not stems:
        # pose-only outputs: one frame in the predictions JSON names the photo
        for d in dirs:
            for js in d.glob("*_predictions.json"):
                frames = json.loads(js.read_text()).get("frames", [])
                if len(frames) == 1:
                    return Path(frames[0]["image_name"]).stem
        raise BundleError(f"{dirs[0]}: no bundle.json and no reference .npy outputs; pass image= "
                          "to say which photo to read")
    raise BundleError(f"{dirs[0]}: outputs for {len(stems)} photos ({', '.join(stems[:5])}...); "
                      "pass image= to say which one to read")


def _find_outputs(stem: str, dirs: list[Path], paths: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in dirs:
        candidates = {
            "seg": d / f"{stem}_seg.npy",
            "normal": d / f"{stem}_normal.npy",
            "depth": d / f"{stem}_depth.npy",
            "pose": d / f"{stem}.json",
        }
        for name, f in candidates.items():
            if f.is_file():
                found.setdefault(name, f)
        bare = d / f"{stem}.npy"
        if bare.is_file():
            # the bare name is a foreground mask (seg demo) or normals (normal demo)
            arr = np.load(bare, mmap_mode="r", allow_pickle=False)
            found.setdefault("normal" if arr.ndim == 3 else "mask", bare)
        for js in sorted(d.glob("*_predictions.json")):
            if "pose" not in found and _frame_for(js, stem) is not None:
                found["pose"] = js
    for p in paths:  # a JSON named explicitly
        if p.is_file() and p.suffix == ".json":
            found["pose"] = p
    return found


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable .npy array ({exc})") from exc


def _as_class_ids(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim != 2:
        raise BundleError(f"{path}: expected H x W class ids, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise BundleError(f"{path}: class ids hold NaN or infinite values")
        if (arr != np.round(arr)).any():
            raise BundleError(f"{path}: class ids are not whole numbers")
    if arr.min(initial=0) < 0 or arr.max(initial=0) >= NUM_SEG_CLASSES:
        raise BundleError(f"{path}: class ids must be 0..{NUM_SEG_CLASSES - 1}, got "
                          f"{arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


def _as_unit_normals(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise BundleError(f"{path}: expected H x W x 3 normals, got shape {arr.shape}")
    n = arr.astype(np.float32)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    unknown = ~np.isfinite(length) | (length < 1e-6)
    n = n / np.where(unknown, 1.0, length)
    n[np.broadcast_to(unknown, n.shape)] = np.nan
    return n


def _pointmap_from_depth(depth: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if depth.ndim != 2:
        raise BundleError(f"{path}: expected H x W depth, got shape {depth.shape}")
    h, w = depth.shape
    scale = min(MODEL_INPUT[0] / h, MODEL_INPUT[1] / w)
    focal = CANONICAL_FOCAL / scale
    K = np.array([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1]], dtype=np.float64)
    u = (np.arange(w, dtype=np.float32) + 0.5 - K[0, 2]) / focal
    v = (np.arange(h, dtype=np.float32) + 0.5 - K[1, 2]) / focal
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
    points = np.stack([u[None, :] * z, v[:, None] * z, z], axis=-1)
    return points.astype(np.float32), K


def _frame_for(js: Path, stem: str):
    try:
        data = json.loads(js.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    for frame in data.get("frames", []):
        if Path(str(frame.get("image_name", ""))).stem == stem:
            return frame
    return None


def _read_pose_json(path: Path, stem: str, person: int) -> tuple[np.ndarray, list | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable pose JSON ({exc})") from exc
    if "frames" in data:
        frame = _frame_for(path, stem)
        if frame is None:
            raise BundleError(f"{path}: no frame for photo {stem!r}")
        instances = frame.get("instances", [])
    else:
        instances = data.get("instance_info", [])
    if not instances:
        raise BundleError(f"{path}: no person instances for photo {stem!r}")
    if person >= len(instances):
        raise BundleError(f"{path}: person {person} asked for, only {len(instances)} found")
    inst = instances[person]
    try:
        xy = np.asarray(inst["keypoints"], dtype=np.float32).reshape(-1, 2)
        scores = np.asarray(inst["keypoint_scores"], dtype=np.float32).reshape(-1)
    except (KeyError, ValueError) as exc:
        raise BundleError(f"{path}: person {person} lacks keypoints/keypoint_scores ({exc})") from exc
    if xy.shape[0] != NUM_KEYPOINTS or scores.shape[0] != NUM_KEYPOINTS:
        raise BundleError(f"{path}: {xy.shape[0]} keypoints, the Sapiens2 pose model gives {NUM_KEYPOINTS}")
    if not (np.isfinite(xy).all() and np.isfinite(scores).all()):
        raise BundleError(f"{path}: keypoints hold NaN or infinite values")
    # the reference puts pixel centres on integers; bundles on +0.5
    keypoints = np.concatenate([xy + 0.5, scores[:, None]], axis=1).astype(np.float32)
    bbox = inst.get("bbox")
    return keypoints, (list(np.asarray(bbox, dtype=float).reshape(-1)[:4]) if bbox is not None else None)


def _load_photo(image, stem: str, dirs: list[Path], map_hw) -> tuple[np.ndarray, list[str]]:
    from engine.images import load_photo

    if image is not None:
        try:
            return load_photo(image).rgb, []
        except InputImageError as exc:
            raise BundleError(str(exc)) from exc
    for d in dirs:
        for suffix in PHOTO_SUFFIXES:
            candidate = d / f"{stem}{suffix}"
            if candidate.is_file():
                rgb = load_photo(candidate).rgb
                if map_hw is None or rgb.shape[:2] == tuple(map_hw):
                    return rgb, []
                h, w = map_hw
                if rgb.shape[0] == h and rgb.shape[1] % w == 0:
                    # the demo's visualisation: [photo | prediction panels]; the left panel is the photo
                    return np.ascontiguousarray(rgb[:, :w]), [
                        f"photo taken from the left panel of the visualisation {candidate.name} "
                        "(re-encoded by the reference script); pass image= for the original"]
                return rgb, []  # a size mismatch is reported against the map that disagrees
    raise BundleError(f"no photo for {stem!r} beside the reference outputs; pass image=PATH")
