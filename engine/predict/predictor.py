"""Predictor: the Sapiens2 task models loaded once, run on as many photos as asked, in batches.

    with Predictor(tasks=["seg", "pose"], size="0.4b", device="cpu") as predictor:
        results = predictor.predict(["a.jpg", "b.jpg"], "out/")
        more = predictor.predict(["c.jpg"], "out/")        # the same loaded models

Photos are taken in batches of `batch_size`; within a batch every task is one call of its runner
(engine.runtime: PyTorch or ONNX Runtime, batched, with out-of-memory fallback), seg first since
it finds the people; pose on one crop per person, its flip pass in the same batch; normal,
pointmap and albedo on the letterboxed photo. The dense outputs are mapped back and the bundles
written by a writer thread while the next batch's models run. A photo that cannot be read or
written is reported through `on_error` and in its result, and skipped; the rest are finished.
Bundles are written atomically, so a cancelled run leaves only complete ones.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from engine.checkpoints import checkpoints_root
from engine.errors import Cancelled, EngineError, InputImageError
from engine.predict import selection
from engine.predict.crops import run_crops
from engine.predict.ops import choose_ops
from engine.predict.photos import PhotoWork, bundle_names, check_targets, load_work
from engine.predict.provenance import provenance
from engine.predict.tasks import TaskRun
from engine.predict.writing import BundleWriter, write_bundles

log = logging.getLogger(__name__)

Progress = Callable[[str, float, str], None]
DEFAULT_BATCH = 4


@dataclass
class PhotoResult:
    """What became of one photo: its bundles, who was found in it, and what to tell the user."""

    photo: str
    name: str                   # the bundle name (docs/bundle.md, "Names")
    status: str                 # "written", "skipped" (a bundle existed) or "failed"
    bundles: list[str] = field(default_factory=list)
    people_found: int | None = None   # connected people in the segmentation (1 for --bbox / no seg)
    people_kept: int = 0              # bundles written: 1, or every person with all_people
    notes: list[str] = field(default_factory=list)
    error: dict | None = None         # {"code", "message"} when failed

    def as_dict(self) -> dict:
        return asdict(self)


class Predictor:
    """Task models loaded once (lazily, on first use; kept under `max_memory`), run on many photos.

    backend: "torch" or "onnxruntime" (checkpoints exported to ONNX on first use, into `onnx_dir`,
    by default onnx/ beside them). compile: a torch.compile mode for the torch backend. dtype:
    auto, fp32, bf16, fp16, or on the CPU int8 (engine.runtime.cpu_modes). Everything is checked
    here, before any photo is read.
    """

    def __init__(self, tasks=None, size="0.4b", checkpoints=None, device="auto", backend="torch", dtype="auto",
                 compile=None, batch_size=None, max_memory=None, *, allow_pickle: bool = False,
                 seg_probs: bool = False, onnx_dir=None, progress: Progress | None = None,
                 detail_crops: bool = False):
        from engine.model_cache import ModelCache, parse_memory

        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise EngineError(f"batch_size must be a whole number of at least 1, not {batch_size!r}")
        root = checkpoints_root(checkpoints)
        self.tasks, self.sizes, self.paths = selection.resolve_tasks(tasks, size, root, allow_pickle)
        self.backend = backend
        self.device, self.dtype = selection.resolve_runtime(backend, device, dtype, compile)
        self.batch_size = batch_size or DEFAULT_BATCH
        self.seg_probs = seg_probs
        # hands and face run again, finer, after the whole-photo pass (engine.predict.crops)
        self.detail_crops = bool(detail_crops) and "pose" in self.tasks and bool(
            {"pointmap", "normal", "albedo"} & set(self.tasks))
        self._progress = progress
        self.cache = ModelCache(self.paths, device=self.device, dtype=self.dtype,
                                max_memory=parse_memory(max_memory), backend=backend, compile=compile,
                                batch_size=self.batch_size, onnx_dir=onnx_dir, progress=progress)
        self.ops = choose_ops(selection.processing_device(self.device))
        self._provenance: dict | None = None

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Release the models (and their device memory) now, not when collected."""
        self.cache.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def loads(self) -> int:
        """How many times a model was loaded (once per task, unless evicted under max_memory)."""
        return self.cache.loads

    def provenance(self, progress: Progress | None = None) -> dict:
        if self._provenance is None:   # the checkpoints' SHA-256, hashed once per predictor
            self._provenance = provenance(self.tasks, self.sizes, self.paths, self.device, self.dtype,
                                          self.backend, progress or self._progress)
        return {**self._provenance, "runtime": dict(self.cache.described)}

    # ------------------------------------------------------------------ the run

    def predict(self, photos, out_dir, *, bbox=None, all_people: bool = False, skip_existing: bool = False,
                on_error: Callable[[Path, Exception], None] | None = None, progress: Progress | None = None,
                cancel: Callable[[], bool] | None = None) -> list[PhotoResult]:
        """One PhotoResult per photo, in the order given. `out_dir` is checked before any model
        runs; progress(stage, fraction, message) is called per task and batch."""
        out_dir = Path(out_dir)
        photos = [Path(p) for p in photos]
        names = bundle_names(photos)
        check_targets(out_dir, names)
        report = progress or self._progress or (lambda *a: None)
        self.cache.progress = progress or self._progress
        run = TaskRun(cache=self.cache, ops=self.ops, bbox=bbox, all_people=all_people, seg_probs=self.seg_probs)
        meter = _Meter(report, total=len(dict.fromkeys(names)), steps=len(self.tasks) + 1)

        results: dict[str, PhotoResult] = {}
        todo: list[PhotoWork] = []
        seen: set[str] = set()
        for path, name in zip(photos, names):
            if name in seen:
                continue   # the same file given twice: one bundle
            seen.add(name)
            if skip_existing and (out_dir / name / "bundle.json").is_file():
                results[name] = PhotoResult(str(path), name, "skipped", bundles=[str(out_dir / name)],
                                            notes=["a bundle exists: left alone (skip_existing)"])
                meter.advance(meter.steps, f"{path.name}: bundle exists, skipped")
                continue
            todo.append(PhotoWork(path=path, out_name=name))

        def fail(work: PhotoWork, exc: Exception) -> None:
            log.warning("%s: skipped: %s", work.path, exc)
            results[work.out_name] = PhotoResult(
                str(work.path), work.out_name, "failed", notes=list(work.notes),
                error={"code": getattr(exc, "code", "internal"), "message": str(exc)})
            if on_error:
                on_error(work.path, exc)

        def finish_and_write(work: PhotoWork, provenance: dict):
            run.finish(work)
            return write_bundles(work, out_dir, self.tasks, all_people, provenance)

        def collect(keep_pending: int) -> None:
            for work, outcome in writer.collect(keep_pending):
                if isinstance(outcome, Exception):
                    if not isinstance(outcome, EngineError):
                        raise outcome
                    fail(work, outcome)
                else:
                    results[work.out_name] = _written(work, outcome)
                    _tell(work)
                meter.advance(1, "; ".join([f"{work.path.name}: written", *work.notes]))

        self.provenance(report)   # hash the checkpoints before the first photo, with progress
        writer = BundleWriter()
        try:
            for start in range(0, len(todo), self.batch_size):
                batch = []
                for work in todo[start:start + self.batch_size]:
                    try:
                        load_work(work)
                        batch.append(work)
                    except InputImageError as exc:
                        fail(work, exc)
                        meter.advance(meter.steps, f"{work.path.name}: skipped")
                for task in self.tasks:
                    _check_cancel(cancel)
                    if batch:
                        meter.note(f"{task} on {len(batch)} photo(s)")
                        run(task, batch)
                        meter.advance(len(batch), f"{task} done on {len(batch)} photo(s)")
                if self.detail_crops and batch:
                    _check_cancel(cancel)
                    meter.note(f"hand and face crops of {len(batch)} photo(s)")
                    run_crops(run, batch, self.tasks)
                # provenance taken here: the writer thread must not read the cache while it changes
                writer.submit(batch, functools.partial(finish_and_write, provenance=self.provenance()))
                collect(keep_pending=1)   # the previous batch's writes; this one's run beside the next
            collect(keep_pending=0)
        finally:
            writer.close()
        return [results[name] for name in names]


def _check_cancel(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("predict was cancelled")


def _written(work: PhotoWork, bundles: list[Path]) -> PhotoResult:
    return PhotoResult(str(work.path), work.out_name, "written", bundles=[str(b) for b in bundles],
                       people_found=work.people_found, people_kept=len(bundles), notes=list(work.notes))


def _tell(work: PhotoWork) -> None:
    """Notes about who was found go to the console (the log), not only into bundle.json."""
    for note in work.notes:
        log.warning("%s: %s", work.path.name, note)


class _Meter:
    """Progress as a fraction of (photos x (tasks + write)) steps: it moves per task and batch."""

    def __init__(self, report: Progress, total: int, steps: int):
        self.report, self.total, self.steps, self.done = report, max(total, 1), steps, 0

    def fraction(self) -> float:
        return min(self.done / (self.total * self.steps), 1.0)

    def advance(self, steps: int, message: str) -> None:
        self.done += steps
        self.report("predict", self.fraction(), message)

    def note(self, message: str) -> None:
        self.report("predict", self.fraction(), message)


def predict_photos(photos, out_dir, *, tasks=None, size="0.4b", checkpoints=None, device="auto",
                   dtype="auto", bbox=None, all_people=False, skip_existing=False,
                   progress: Progress | None = None, max_memory: int | str | None = None,
                   batch_size: int | None = None, allow_pickle: bool = False, seg_probs: bool = False,
                   backend: str = "torch", compile: str | None = None, onnx_dir=None,
                   on_error: Callable[[Path, Exception], None] | None = None) -> list[Path]:
    """One Predictor for one call; returns the bundle directories written (or skipped)."""
    with Predictor(tasks, size, checkpoints, device, backend, dtype, compile, batch_size, max_memory,
                   allow_pickle=allow_pickle, seg_probs=seg_probs, onnx_dir=onnx_dir,
                   progress=progress) as predictor:
        results = predictor.predict(photos, out_dir, bbox=bbox, all_people=all_people,
                                    skip_existing=skip_existing, on_error=on_error, progress=progress)
    return [Path(b) for r in results for b in r.bundles]
