"""The predict pipeline: photos -> Sapiens2 task models -> one predictions bundle per photo (and person).

Photos are taken in chunks of `batch_size`; within a chunk every task is one call of its runner
(engine.runtime: PyTorch or ONNX Runtime, batched, with out-of-memory fallback), seg first since
it finds the people; pose on one crop per person, its flip pass in the same batch; normal,
pointmap and albedo on the letterboxed photo. On the CPU, pre- and post-processing follow the
numpy recipe (engine.recipe) exactly; on a CUDA GPU they run in engine.runtime.gpu_ops, on the
device. A photo that cannot be read or written is reported through `on_error` and skipped; the
rest are finished. Bundles are written atomically, so a cancelled run leaves only complete ones."""

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
    on_device: object = None   # the photo as a tensor on the processing device (GPU path)


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
                   backend: str = "torch", compile: str | None = None, onnx_dir=None,
                   on_error: Callable[[Path, Exception], None] | None = None) -> list[Path]:
    """Run the Sapiens2 models on photos; returns the bundle directories written (or skipped).

    backend: "torch" or "onnxruntime" (checkpoints exported to ONNX on first use, into `onnx_dir`,
    by default onnx/ beside them). compile: a torch.compile mode for the torch backend.
    """
    from engine.model_cache import ModelCache, parse_memory

    out_dir = Path(out_dir)
    photos = [Path(p) for p in photos]
    root = checkpoints_root(checkpoints)
    task_list, sizes, paths = resolve_tasks(tasks, size, root, allow_pickle)
    device, dtype_name = _resolve_runtime(backend, device, dtype, compile)
    batch_size = batch_size or DEFAULT_BATCH
    cache = ModelCache(paths, device=device, dtype=dtype_name, max_memory=parse_memory(max_memory),
                       backend=backend, compile=compile, batch_size=batch_size, onnx_dir=onnx_dir,
                       progress=progress)
    run = TaskRun(cache=cache, processing=_processing_device(device), bbox=bbox, all_people=all_people,
                  seg_probs=seg_probs)
    provenance = _provenance(task_list, sizes, paths, device, dtype_name, backend, progress)
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
    try:
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
                    run(task, chunk)
            for work in chunk:
                work.on_device = None
                try:
                    written += _write_bundles(work, out_dir, task_list, all_people,
                                              {**provenance, "runtime": dict(cache.described)})
                except EngineError as exc:
                    _fail(work.path, exc, on_error)
                done += 1
                report("predict", done / max(len(photos), 1), f"{work.path.name}: written")
            done += (len(todo[start:start + batch_size]) - len(chunk))  # failed loads count as done
    finally:
        cache.clear()   # release the models (and their GPU memory) now, not when collected
    return written


def _resolve_runtime(backend: str, device: str, dtype: str, compile: str | None) -> tuple[str, str]:
    """The device ("cpu" / "cuda[:N]") and number format ("fp32" / "bf16" / "fp16") a run uses,
    checked before any photo is touched."""
    from engine.runtime.device import DTYPE_NAMES, resolve_device, resolve_dtype
    from engine.runtime.factory import BACKENDS, onnx_dtype

    if backend == "torch":
        resolved = resolve_device(device)
        return str(resolved), DTYPE_NAMES[resolve_dtype(dtype, resolved)]
    if backend == "onnxruntime":
        from engine.runtime.onnx_backend import choose_providers

        if compile:
            raise EngineError("--compile applies to the torch backend only")
        on_cuda = choose_providers(str(device))[0] == "CUDAExecutionProvider"
        resolved = (device if str(device).startswith("cuda") else "cuda") if on_cuda else "cpu"
        return resolved, onnx_dtype(dtype, resolved)
    raise EngineError(f"unknown backend {backend!r}; use {' or '.join(BACKENDS)}")


def _processing_device(device: str):
    """Where pre- and post-processing run: None for the exact numpy recipe (always on the CPU), or
    the CUDA device for engine.runtime.gpu_ops (resize, pad, warp, decode on the GPU)."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.device(device) if torch.cuda.is_available() else None


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


def _share(chunk: list[PhotoWork], key: str, seconds: float) -> None:
    for work in chunk:
        work.timings[key] += seconds / len(chunk)


class _Timer:
    """Adds the seconds of a `with` block to each photo's timings (waiting for the GPU first,
    so asynchronous work is charged to the step that queued it)."""

    def __init__(self, chunk: list[PhotoWork], key: str, processing=None):
        self.chunk, self.key, self.processing = chunk, key, processing

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.processing is not None and self.processing.type == "cuda":
            import torch

            torch.cuda.synchronize(self.processing)
        _share(self.chunk, self.key, time.perf_counter() - self.t0)


@dataclass
class TaskRun:
    """Runs one task on a chunk of photos: prepare inputs, one runner call, map outputs back.

    processing None: the numpy recipe on the CPU (exact). A torch device: engine.runtime.gpu_ops
    on that device (within the tolerances docs/performance.md states), outputs kept there.
    """

    cache: object
    processing: object
    bbox: object
    all_people: bool
    seg_probs: bool

    def __call__(self, task: str, chunk: list[PhotoWork]) -> None:
        with _Timer(chunk, f"load_{task}"):
            runner = self.cache.get(task)   # lazy: made on first use, or again after an eviction
        {"seg": self._seg, "pose": self._pose}.get(task, self._dense)(task, runner, chunk)

    def _timer(self, chunk, key):
        return _Timer(chunk, key, self.processing)

    def _on_device(self, work: PhotoWork):
        """The photo as a 3 x H x W uint8 tensor on the processing device (uploaded once per chunk)."""
        from engine.runtime import gpu_ops

        if work.on_device is None:
            work.on_device = gpu_ops.images_to_tensor([work.photo.rgb], self.processing, pin=True)[0]
        return work.on_device

    def _batch(self, images):
        """Prepared uint8 inputs -> the normalized batch the runner takes."""
        if self.processing is None:
            return recipe.normalize(np.stack(images))
        import torch

        from engine.runtime import gpu_ops

        return gpu_ops.normalize(torch.stack(images))

    def _outputs(self, runner, x):
        return runner(x, keep_on_device=self.processing is not None)

    def _seg(self, task, runner, chunk) -> None:
        with self._timer(chunk, "prep_seg"):
            if self.processing is None:
                inputs = [recipe.seg_input(w.photo.rgb) for w in chunk]
            else:
                from engine.runtime import gpu_ops

                inputs = [gpu_ops.seg_input(self._on_device(w)[None])[0] for w in chunk]
            x = self._batch(inputs)
        with self._timer(chunk, "forward_seg"):
            logits = self._outputs(runner, x)
        for work, one in zip(chunk, logits):
            with self._timer([work], "post_seg"):
                hw = work.photo.rgb.shape[:2]
                if self.processing is None:
                    work.seg, work.seg_probs = recipe.seg_labels(one.numpy(), hw, with_probs=self.seg_probs)
                else:
                    from engine.runtime import gpu_ops

                    labels, probs = gpu_ops.seg_labels(one.to(self.processing), hw, with_probs=self.seg_probs)
                    work.seg = labels.cpu().numpy()
                    work.seg_probs = probs.cpu().numpy() if probs is not None else None
        for work in chunk:
            work.people = _find_people(work, self.bbox, self.all_people)

    def _pose(self, task, runner, chunk) -> None:
        import json

        from engine.paths import asset

        flip = json.loads(asset("keypoints308.json").read_text())["flip_indices"]
        owners = [(work, recipe.pose_crop(person.bbox)) for work in chunk for person in work.people]
        with self._timer(chunk, "prep_pose"):
            if self.processing is None:
                crops = [recipe.warp_affine(w.photo.rgb, c.matrix, recipe.INPUT_WH, c.interpolation)
                         for w, c in owners]
            else:
                from engine.runtime import gpu_ops

                crops = list(gpu_ops.pose_inputs([self._on_device(w) for w, _ in owners], [c for _, c in owners]))
            x = self._batch(crops)
        with self._timer(chunk, "forward_pose"):
            # the mirrored crops ride in the same batch (runner.pose_flip_test)
            heatmaps = runner.pose_flip_test(x, flip, keep_on_device=self.processing is not None)
        with self._timer(chunk, "post_pose"):
            if self.processing is None:
                from engine.codecs.udp_heatmap import decode_heatmaps

                keypoints, scores = decode_heatmaps(heatmaps, recipe.INPUT_WH)
            else:
                from engine.runtime import gpu_ops

                keypoints, scores = gpu_ops.decode_heatmaps(heatmaps.to(self.processing), recipe.INPUT_WH)
                keypoints, scores = keypoints.cpu().numpy(), scores.cpu().numpy()
            for (work, crop), xy, score in zip(owners, keypoints, scores):
                xy = recipe.keypoints_to_photo(xy, crop)
                work.keypoints.append(np.concatenate([xy, score[:, None]], axis=1).astype(np.float32))
                work.pose_crops.append(crop.as_dict())

    def _dense(self, task, runner, chunk) -> None:
        with self._timer(chunk, f"prep_{task}"):
            if self.processing is None:
                prepared = [recipe.dense_input(w.photo.rgb) for w in chunk]
            else:
                from engine.runtime import gpu_ops

                prepared = [gpu_ops.dense_input(self._on_device(w)[None]) for w in chunk]
                prepared = [(image[0], box) for image, box in prepared]
            x = self._batch([image for image, _ in prepared])
        with self._timer(chunk, f"forward_{task}"):
            raw = self._outputs(runner, x)
        for i, (work, (_, box)) in enumerate(zip(chunk, prepared)):
            with self._timer([work], f"post_{task}"):
                work.maps[task] = self._dense_output(task, raw, i, box)
                work.dense_box = box.as_dict()

    def _dense_output(self, task: str, raw, i: int, box) -> np.ndarray:
        if self.processing is None:
            ops = recipe
        else:
            from engine.runtime import gpu_ops as ops
        if task == "pointmap":
            points, scale = raw
            out = ops.pointmap_output(self._here(points[i]), self._here(scale[i]), box)
        else:
            out = getattr(ops, f"{task}_output")(self._here(raw[i]), box)
        if self.processing is None:
            return out
        return out.permute(1, 2, 0).cpu().numpy().astype(np.float32)

    def _here(self, tensor):
        return tensor if self.processing is None else tensor.to(self.processing)


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


def _provenance(tasks, sizes, paths, device: str, dtype_name: str, backend: str, progress) -> dict:
    import torch

    from engine import __version__
    from engine.runtime.device import DTYPES

    models = {}
    for task in tasks:
        path = paths[task]
        models[task] = {"file": str(path), "name": path.name, "bytes": path.stat().st_size,
                        "sha256": sha256_file(path, progress), "size": sizes[task]}
    return {"engine": "sapiens-engine", "engine_version": __version__, "backend": backend, "device": device,
            "dtype": str(DTYPES[dtype_name]).replace("torch.", ""), "torch_version": torch.__version__,
            "models": models}
