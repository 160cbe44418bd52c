"""One task on a batch of photos: prepare the inputs, one runner call, read the outputs.

Seg and pose outputs are read at once (the people seg finds decide the pose crops; keypoints are
small). Dense outputs (normal, pointmap, albedo) are kept raw with their letterbox and mapped
back to the photo by `finish`, which the bundle writer runs beside the next batch's forwards.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from engine import recipe
from engine.predict.people import find_people


class Timer:
    """Adds the seconds of a `with` block to each photo's timings (after `ops.sync()`, so
    asynchronous device work is charged to the step that queued it)."""

    def __init__(self, works, key: str, ops=None):
        self.works, self.key, self.ops = works, key, ops

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.ops is not None:
            self.ops.sync()
        seconds = time.perf_counter() - self.t0
        for work in self.works:
            work.timings[self.key] += seconds / len(self.works)


@dataclass
class TaskRun:
    """Runs tasks on batches of photos with one set of operations (engine.predict.ops), chosen
    when the run is made: CpuOps (the exact numpy recipe) or GpuOps (on the CUDA device)."""

    cache: object          # engine.model_cache.ModelCache
    ops: object            # CpuOps or GpuOps
    bbox: object
    all_people: bool
    seg_probs: bool

    def __call__(self, task: str, works: list) -> None:
        with Timer(works, f"load_{task}"):
            runner = self.cache.get(task)   # lazy: made on first use, or again after an eviction
        if task != "seg":
            for work in works:
                if not work.people:   # without seg: boxes and masks from --bbox or the whole photo
                    work.people = find_people(work, self.bbox, self.all_people)
        {"seg": self._seg, "pose": self._pose}.get(task, self._dense)(task, runner, works)

    def _timer(self, works, key):
        return Timer(works, key, self.ops)

    @cached_property
    def flip_indices(self) -> list[int]:
        from engine.paths import asset

        return json.loads(asset("keypoints308.json").read_text())["flip_indices"]

    def _seg(self, task, runner, works) -> None:
        with self._timer(works, "prep_seg"):
            x = self.ops.batch(self.ops.seg_inputs(works))
        with self._timer(works, "forward_seg"):
            logits = runner(x, keep_on_device=self.ops.keep_on_device)
        for work, one in zip(works, logits):
            with self._timer([work], "post_seg"):
                work.seg, work.seg_probs = self.ops.seg_labels(one, work.photo.rgb.shape[:2], self.seg_probs)
            work.people = find_people(work, self.bbox, self.all_people)

    def _pose(self, task, runner, works) -> None:
        owners = [(work, recipe.pose_crop(person.bbox)) for work in works for person in work.people]
        with self._timer(works, "prep_pose"):
            x = self.ops.batch(self.ops.pose_inputs(owners))
        with self._timer(works, "forward_pose"):
            # the mirrored crops ride in the same batch (runner.pose_flip_test)
            heatmaps = runner.pose_flip_test(x, self.flip_indices, keep_on_device=self.ops.keep_on_device)
        with self._timer(works, "post_pose"):
            keypoints, scores = self.ops.decode_heatmaps(heatmaps)
            for (work, crop), xy, score in zip(owners, keypoints, scores):
                xy = recipe.keypoints_to_photo(xy, crop)
                work.keypoints.append(np.concatenate([xy, score[:, None]], axis=1).astype(np.float32))
                work.pose_crops.append(crop.as_dict())

    def _dense(self, task, runner, works) -> None:
        with self._timer(works, f"prep_{task}"):
            prepared = self.ops.dense_inputs(works)
            x = self.ops.batch([image for image, _ in prepared])
        with self._timer(works, f"forward_{task}"):
            raw = runner(x, keep_on_device=self.ops.keep_on_device)
        for i, (work, (_, box)) in enumerate(zip(works, prepared)):
            one = (raw[0][i], raw[1][i]) if task == "pointmap" else raw[i]
            work.raw[task] = (one, box)
            work.dense_box = box.as_dict()

    def finish(self, work) -> None:
        """Map the dense outputs back onto the photo (crop the padding, resize, normalize)."""
        for task, (raw, box) in list(work.raw.items()):
            with self._timer([work], f"post_{task}"):
                work.maps[task] = self.ops.dense_output(task, raw, box)
            del work.raw[task]
        self.ops.release(work)
