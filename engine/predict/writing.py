"""Bundles out: one per kept person of a photo, written atomically (engine.bundle.write_bundle),
and the writer thread that maps outputs back and writes while the next batch's models run."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engine import recipe
from engine.bundle import Bundle, write_bundle
from engine.intrinsics import intrinsics_from_pointmap
from engine.person import whole_image


def bundle_dir(out_dir: Path, name: str, person: int, kept: int, all_people: bool) -> Path:
    return out_dir / (f"{name}_person{person}" if all_people and kept > 1 and person > 0 else name)


def write_bundles(work, out_dir: Path, tasks, all_people: bool, provenance: dict) -> list[Path]:
    """The bundles of one photo (work: a PhotoWork whose maps are mapped back)."""
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
            # count: people found in the photo; kept: how many got a bundle
            "person": {"index": index, "count": work.people_found, "kept": len(people), **person.as_dict()},
            "tasks": list(tasks),
            "crop": {"seg": {"stretch_to_hw": list(recipe.INPUT_HW)} if "seg" in tasks else None,
                     "dense": work.dense_box,
                     "pose": work.pose_crops[index] if index < len(work.pose_crops) else None},
            "intrinsics": intrinsics.as_dict() if intrinsics else None,
            # a bundle cannot hold the time of its own write (not over when this is written): left
            # out rather than recorded as a misleading 0
            "provenance": {**provenance, "timings_s": {k: round(v, 4) for k, v in work.timings.items()
                                                       if k != "write"},
                           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            "notes": notes,
        }
        bundle = Bundle(
            image=work.photo.rgb, mask=mask,
            keypoints=work.keypoints[index] if index < len(work.keypoints) else None,
            seg=work.seg, normal=normal, pointmap=pointmap, albedo=work.maps.get("albedo"),
            K=intrinsics.K if intrinsics else None, seg_probs=work.seg_probs, meta=meta,
            crops=work.crops[index] if index < len(work.crops) else [])
        written.append(write_bundle(bundle, bundle_dir(out_dir, work.out_name, index, len(people), all_people)))
    work.timings["write"] += time.perf_counter() - t0
    return written


class BundleWriter:
    """One background thread: map-back and writes of a batch overlap the next batch's forwards.

    `submit(fn, work)` queues; `collect()` returns (work, bundles or exception) for every queued
    photo whose turn is over, waiting for all but the newest `keep_pending` batches.
    """

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-writer")
        self._batches: list[list[tuple[object, Future]]] = []

    def submit(self, works, job) -> None:
        self._batches.append([(work, self._pool.submit(job, work)) for work in works])

    def collect(self, keep_pending: int = 0):
        done = []
        while len(self._batches) > keep_pending:
            for work, future in self._batches.pop(0):
                try:
                    done.append((work, future.result()))
                except Exception as exc:   # reported per photo by the caller
                    done.append((work, exc))
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
