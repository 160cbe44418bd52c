"""The predict pipeline: photos -> Sapiens2 task models -> one predictions bundle per photo (and person).

Photos are taken in chunks of `batch_size`; within a chunk every task runs as batched forward
passes (seg first, since it finds the people; pose on one crop per person plus its mirror for the
flip test; normal, pointmap and albedo on the letterboxed photo). Pre- and post-processing follow
engine.recipe. A photo that cannot be read or written is reported through `on_error` and skipped;
the rest are finished. Bundles are written atomically, so a cancelled run leaves only complete ones.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from engine import recipe
from engine.bundle import Bundle, is_bundle, write_bundle
from engine.checkpoints import TASKS, checkpoints_root, find_checkpoint, sha256_file
from engine.errors import CheckpointError, EngineError, InputImageError
from engine.images import Photo, load_photo
from engine.intrinsics import intrinsics_from_pointmap
from engine.person import Person, manual, people_from_foreground, whole_image

log = logging.getLogger(__name__)

Progress = Callable[[str, float, str], None]
# run order: seg first (it finds the people the pose crops need)
TASK_ORDER = ("seg", "pose", "normal", "pointmap", "albedo")
DEFAULT_BATCH = 4


@dataclass
class PhotoWork:
    """Everything known about one photo while its chunk is processed."""

    path: Path
    out_name: str
    photo: Photo | None = None
    seg: np.ndarray | None = None
    seg_probs: np.ndarray | None = None
    people: list[Person] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    pose_crops: list[dict] = field(default_factory=list)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    dense_box: dict | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def parse_sizes(size: str | dict, tasks) -> dict[str, str]:
    """'0.4b' or 'pose=1b,seg=0.4b' (or a dict) -> task -> size; unnamed tasks take the plain size."""
    if isinstance(size, dict):
        sizes = dict(size)
        default = sizes.pop("default", "0.4b")
    else:
        default, sizes = "0.4b", {}
        for part in str(size).split(","):
            if "=" in part:
                task, value = part.split("=", 1)
                sizes[task.strip()] = value.strip()
            elif part.strip():
                default = part.strip()
    unknown = set(sizes) - set(TASKS)
    if unknown:
        raise ValueError(f"--size names unknown task(s) {', '.join(sorted(unknown))}")
    return {t: sizes.get(t, default) for t in tasks}


def resolve_tasks(tasks, size, root: Path, allow_pickle: bool) -> tuple[list[str], dict[str, str], dict[str, Path]]:
    """Tasks to run, their sizes and checkpoint files; missing ones are errors only when asked for."""
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    explicit = tasks is not None
    wanted = list(tasks) if explicit else list(TASKS)
    unknown = [t for t in wanted if t not in TASKS]
    if unknown:
        raise CheckpointError(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    sizes = parse_sizes(size, wanted)
    paths = {}
    for task in wanted:
        try:
            paths[task] = find_checkpoint(task, sizes[task], root, allow_pickle=allow_pickle)
        except CheckpointError:
            if explicit:
                raise
    if not paths:
        raise CheckpointError(
            f"no checkpoints of size {size} in {root}; get them with `sapiens-engine download --size "
            f"{sizes.get('pose', '0.4b')}` or point --checkpoints / SAPIENS_CHECKPOINTS at them")
    _check_checkpoint_tasks(paths)
    ordered = [t for t in TASK_ORDER if t in paths]
    return ordered, {t: sizes[t] for t in ordered}, paths


def _check_checkpoint_tasks(paths: dict[str, Path]) -> None:
    """A file for another task fails here, before any photo is touched (headers only, mmapped)."""
    from engine.models.loading import inspect_checkpoint

    for task, path in paths.items():
        config = inspect_checkpoint(path)
        if config.task != task:
            what = f"a {config.task} checkpoint" if config.task else "a pretrain backbone (no task head)"
            raise CheckpointError(f"{path}: is {what}, but it sits where the {task} model belongs")


def _bundle_names(photos: list[Path]) -> list[str]:
    """Bundle directory names: the photo's stem, with its suffix too where two stems collide."""
    stems = [p.stem for p in photos]
    return [p.stem if stems.count(p.stem) == 1 else f"{p.stem}_{p.suffix.lstrip('.')}" for p in photos]


def _bundle_dir(out_dir: Path, name: str, person: int, count: int, all_people: bool) -> Path:
    return out_dir / (f"{name}_person{person}" if all_people and count > 1 and person > 0 else name)


def predict_photos(photos, out_dir, *, tasks=None, size="0.4b", checkpoints=None, device="auto",
                   dtype="auto", bbox=None, all_people=False, skip_existing=False,
                   progress: Progress | None = None, max_memory: int | str | None = None,
                   batch_size: int | None = None, allow_pickle: bool = False, seg_probs: bool = False,
                   on_error: Callable[[Path, Exception], None] | None = None) -> list[Path]:
    """Run the Sapiens2 models on photos; returns the bundle directories written (or skipped)."""
    from engine.model_cache import ModelCache, parse_memory, resolve_device, resolve_dtype

    out_dir = Path(out_dir)
    photos = [Path(p) for p in photos]
    root = checkpoints_root(checkpoints)
    task_list, sizes, paths = resolve_tasks(tasks, size, root, allow_pickle)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    cache = ModelCache(paths, device=device, dtype=torch_dtype, max_memory=parse_memory(max_memory))
    batch_size = batch_size or DEFAULT_BATCH
    provenance = _provenance(task_list, sizes, paths, device, torch_dtype, progress)
    names = _bundle_names(photos)
    report = progress or (lambda *a: None)

    written: list[Path] = []
    todo = []
    for path, name in zip(photos, names):
        existing = out_dir / name
        if skip_existing and is_bundle(existing):
            written.append(existing)
            report("predict", len(written) / max(len(photos), 1), f"{path.name}: bundle exists, skipped")
            continue
        todo.append(PhotoWork(path=path, out_name=name))
    done = len(written)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        chunk = _load_chunk(chunk, on_error, report)
        for task in task_list:
            if task != "seg":
                for work in chunk:
                    if not work.people:  # after seg (or without it): boxes and masks
                        work.people = _find_people(work, bbox, all_people)
            if chunk:
                report("predict", done / max(len(photos), 1), f"{task} on {len(chunk)} photo(s)")
                _run_task(task, chunk, cache, batch_size, bbox, all_people, seg_probs)
        for work in chunk:
            try:
                written += _write_bundles(work, out_dir, task_list, all_people, provenance)
            except EngineError as exc:
                _fail(work.path, exc, on_error)
            done += 1
            report("predict", done / max(len(photos), 1), f"{work.path.name}: written")
        done += (len(todo[start:start + batch_size]) - len(chunk))  # failed loads count as done
    return written


def _fail(path: Path, exc: Exception, on_error) -> None:
    log.warning("%s: skipped: %s", path, exc)
    if on_error:
        on_error(path, exc)


def _load_chunk(chunk: list[PhotoWork], on_error, report) -> list[PhotoWork]:
    ok = []
    for work in chunk:
        t0 = time.perf_counter()
        try:
            work.photo = load_photo(work.path)
        except InputImageError as exc:
            _fail(work.path, exc, on_error)
            continue
        work.timings["decode"] += time.perf_counter() - t0
        ok.append(work)
    return ok


def _forward(model, inputs: list[np.ndarray], batch_size: int, device: str, dtype):
    """Normalized batched forward passes; yields the raw outputs one input at a time (on CPU, fp32)."""
    import torch

    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            x = recipe.normalize(np.stack(inputs[i:i + batch_size])).to(device=device, dtype=dtype)
            out = model(x)
            if isinstance(out, tuple):
                parts = [o.float().cpu() for o in out]
                for j in range(x.shape[0]):
                    yield tuple(p[j] for p in parts)
            else:
                out = out.float().cpu()
                for j in range(x.shape[0]):
                    yield out[j]


def _run_task(task: str, chunk: list[PhotoWork], cache, batch_size, bbox, all_people, seg_probs) -> None:
    t_load = time.perf_counter()
    model = cache.get(task)   # lazy: loads (memory-maps) on first use, or after an eviction
    _share(chunk, f"load_{task}", time.perf_counter() - t_load)
    run = {"seg": _run_seg, "pose": _run_pose}.get(task, _run_dense)
    t0 = time.perf_counter()
    outside = run(task, model, chunk, cache, batch_size, bbox, all_people, seg_probs)
    total = time.perf_counter() - t0
    # the forward share is what the run function did not spend on preparation and mapping back
    for work in chunk:
        work.timings[f"forward_{task}"] += (total - outside) / len(chunk)


def _share(chunk: list[PhotoWork], key: str, seconds: float) -> None:
    for work in chunk:
        work.timings[key] += seconds / len(chunk)


def _run_seg(task, model, chunk, cache, batch_size, bbox, all_people, seg_probs) -> float:
    outside = time.perf_counter()
    inputs = [recipe.seg_input(w.photo.rgb) for w in chunk]
    outside = time.perf_counter() - outside
    _share(chunk, "prep_seg", outside)
    for work, logits in zip(chunk, _forward(model, inputs, batch_size, cache.device, cache.dtype)):
        t0 = time.perf_counter()
        work.seg, work.seg_probs = recipe.seg_labels(logits.numpy(), work.photo.rgb.shape[:2],
                                                     with_probs=seg_probs)
        dt = time.perf_counter() - t0
        work.timings["post_seg"] += dt
        outside += dt
    for work in chunk:
        work.people = _find_people(work, bbox, all_people)
    return outside


def _find_people(work: PhotoWork, bbox, all_people: bool) -> list[Person]:
    hw = work.photo.rgb.shape[:2]
    foreground = work.seg > 0 if work.seg is not None else None
    if bbox is not None:
        return [manual(bbox, hw, foreground)]
    if foreground is None:
        work.notes.append("segmentation not run: the person box and mask are the whole photo")
        return [whole_image(hw)]
    people = people_from_foreground(foreground)
    if not people:
        work.notes.append("no person found in the segmentation: pose used the whole photo and the "
                          "mask is empty")
        fallback = whole_image(hw)
        fallback.mask = foreground.copy()
        fallback.area = 0
        return [fallback]
    if len(people) > 1 and not all_people:
        work.notes.append(f"{len(people)} people found; the largest was kept (--all-people for every one)")
        return people[:1]
    return people


def _run_pose(task, model, chunk, cache, batch_size, bbox, all_people, seg_probs) -> float:
    import json

    from engine.codecs.udp_heatmap import decode_heatmaps
    from engine.paths import asset

    flip = json.loads(asset("keypoints308.json").read_text())["flip_indices"]
    outside = time.perf_counter()
    crops, owners = [], []
    for work in chunk:
        for person in work.people:
            image, crop = recipe.pose_input(work.photo.rgb, person.bbox)
            crops.append(image)
            crops.append(np.ascontiguousarray(image[:, ::-1]))   # the mirrored crop for the flip test
            owners.append((work, crop))
    outside = time.perf_counter() - outside
    _share(chunk, "prep_pose", outside)
    heatmaps = _forward(model, crops, batch_size * 2, cache.device, cache.dtype)
    post = 0.0
    # crops and their mirrors alternate, so each person's pair comes out of the iterator together
    for (work, crop), direct, mirrored in zip(owners, heatmaps, heatmaps):
        t0 = time.perf_counter()
        averaged = recipe.flip_test_average(direct[None], mirrored[None], flip)
        keypoints, scores = decode_heatmaps(averaged, recipe.INPUT_WH)
        xy = recipe.keypoints_to_photo(keypoints[0], crop)
        work.keypoints.append(np.concatenate([xy, scores[0][:, None]], axis=1).astype(np.float32))
        work.pose_crops.append(crop.as_dict())
        dt = time.perf_counter() - t0
        work.timings["post_pose"] += dt
        post += dt
    return outside + post


def _run_dense(task, model, chunk, cache, batch_size, bbox, all_people, seg_probs) -> float:
    outside = time.perf_counter()
    prepared = [recipe.dense_input(w.photo.rgb) for w in chunk]
    outside = time.perf_counter() - outside
    _share(chunk, f"prep_{task}", outside)
    inputs = [p[0] for p in prepared]
    for (work, (_, box)), raw in zip(zip(chunk, prepared),
                                     _forward(model, inputs, batch_size, cache.device, cache.dtype)):
        t0 = time.perf_counter()
        if task == "normal":
            work.maps["normal"] = recipe.normal_output(raw, box)
        elif task == "albedo":
            work.maps["albedo"] = recipe.albedo_output(raw, box)
        else:
            points, scale = raw
            work.maps["pointmap"] = recipe.pointmap_output(points, scale, box)
        work.dense_box = box.as_dict()
        dt = time.perf_counter() - t0
        work.timings[f"post_{task}"] += dt
        outside += dt
    return outside


def _write_bundles(work: PhotoWork, out_dir: Path, tasks, all_people: bool, provenance: dict) -> list[Path]:
    t0 = time.perf_counter()
    people = work.people or [whole_image(work.photo.rgb.shape[:2])]
    written = []
    for index, person in enumerate(people):
        mask = person.mask
        normal = work.maps.get("normal")
        pointmap = work.maps.get("pointmap")
        if normal is not None:
            normal = np.where(mask[..., None], normal, np.nan).astype(np.float32)
        if pointmap is not None:
            pointmap = np.where(mask[..., None], pointmap, np.nan).astype(np.float32)
        intrinsics = intrinsics_from_pointmap(pointmap, mask) if pointmap is not None else None
        notes = list(work.notes)
        if pointmap is not None and intrinsics is None:
            notes.append("too few valid pointmap pixels in the mask to recover intrinsics")
        meta = {
            "photo": work.photo.describe(),
            "person": {"index": index, "count": len(people), **person.as_dict()},
            "tasks": list(tasks),
            "crop": {"seg": {"stretch_to_hw": list(recipe.INPUT_HW)} if "seg" in tasks else None,
                     "dense": work.dense_box,
                     "pose": work.pose_crops[index] if index < len(work.pose_crops) else None},
            "intrinsics": intrinsics.as_dict() if intrinsics else None,
            "provenance": {**provenance, "timings_s": {k: round(v, 4) for k, v in work.timings.items()},
                           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            "notes": notes,
        }
        bundle = Bundle(
            image=work.photo.rgb, mask=mask,
            keypoints=work.keypoints[index] if index < len(work.keypoints) else None,
            seg=work.seg, normal=normal, pointmap=pointmap, albedo=work.maps.get("albedo"),
            K=intrinsics.K if intrinsics else None, seg_probs=work.seg_probs, meta=meta)
        target = _bundle_dir(out_dir, work.out_name, index, len(people), all_people)
        written.append(write_bundle(bundle, target))
    work.timings["write"] += time.perf_counter() - t0
    return written


def _provenance(tasks, sizes, paths, device, dtype, progress) -> dict:
    import torch

    from engine import __version__

    models = {}
    for task in tasks:
        path = paths[task]
        models[task] = {"file": str(path), "name": path.name, "bytes": path.stat().st_size,
                        "sha256": sha256_file(path, progress), "size": sizes[task]}
    return {"engine": "sapiens-engine", "engine_version": __version__, "device": device,
            "dtype": str(dtype).replace("torch.", ""), "torch_version": torch.__version__,
            "models": models}
