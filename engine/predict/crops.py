"""Detail crops: the dense models run again on boxes around the hands and the face.

In the whole-photo pass the dense models see a hand or a face in a few thousand of the 1024 x 768
input's pixels. After that pass, the keypoints give a box around each hand (its 21 keypoints) and
the face (nose, eyes, ears and the face landmarks); each box is run through the same recipe as the
photo (resized to fit the model input, letterboxed) and the outputs are mapped back onto the box
at `factor` grid pixels per photo pixel, where `factor` is how much larger the model saw the box
than the photo shows it (at most MAX_FACTOR). A box is skipped, with a note, when too few of its
keypoints are confident, when it is tiny, when it lies mostly off the photo, or when the model
would not see it finer than in the whole-photo pass.

The crops are stored unaligned (engine.bundle.crops); the build aligns and fuses them
(engine.geometry.detail).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, replace
from functools import lru_cache
from types import SimpleNamespace

import numpy as np

from engine import recipe
from engine.bundle.crops import DetailCrop

MIN_SCORE = 0.3            # the reference draws keypoints above this
MIN_HAND_POINTS = 6        # of the hand's 21 (20 finger points and the wrist)
MIN_FACE_POINTS = 3        # of nose, eyes, ears and the face landmarks
MIN_BOX_PX = 16            # a smaller box holds no detail worth a model pass
MIN_INSIDE = 0.5           # of the box's area on the photo
MIN_GAIN = 1.5             # the crop must be seen at least this much larger than in the whole-photo pass
MAX_FACTOR = 4             # crop grid pixels per photo pixel, at most
HAND_MARGIN = 1.6          # box side / keypoint extent
FACE_MARGIN = 1.7
FACE_EYE_SPAN = 4.0        # a face box is at least this many eye distances wide
CROP_TASKS = ("seg", "pointmap", "normal", "albedo")


@dataclass(frozen=True)
class CropBox:
    name: str
    box: tuple[int, int, int, int]   # x0, y0, x1, y1 photo pixel edges, x1 and y1 exclusive
    factor: int
    points_used: int

    def as_meta(self) -> dict:
        return {"points_used": self.points_used}


@lru_cache(maxsize=1)
def keypoint_groups() -> dict[str, np.ndarray]:
    """Keypoint indices of each crop: every hand keypoint and its wrist; the face's landmarks with
    the nose, eyes and ears."""
    from engine.paths import asset

    table = json.loads(asset("keypoints308.json").read_text())
    names = [k["name"] for k in table["keypoints"]]
    index = {n: i for i, n in enumerate(names)}

    def group(key):
        value = table["groups"][key]
        return ast.literal_eval(value) if isinstance(value, str) else list(value)

    return {
        "left_hand": np.array([index[n] for n in [*group("left_hand_keypoint_names"), "left_wrist"]]),
        "right_hand": np.array([index[n] for n in [*group("right_hand_keypoint_names"), "right_wrist"]]),
        "face": np.array([index[n] for n in ["nose", "left_eye", "right_eye", "left_ear", "right_ear",
                                             *group("face_keypoint_names")]]),
    }


def _box_around(points: np.ndarray, margin: float, min_width: float) -> tuple[float, float, float, float]:
    """A 3:4 (width:height, the model input's shape) box centred on the points' extent."""
    lo, hi = points.min(0), points.max(0)
    centre = 0.5 * (lo + hi)
    width = max((hi[0] - lo[0]) * margin, (hi[1] - lo[1]) * margin * 0.75, min_width)
    height = width / 0.75
    return centre[0] - width / 2, centre[1] - height / 2, centre[0] + width / 2, centre[1] + height / 2


def crop_boxes(keypoints: np.ndarray, photo_hw: tuple[int, int], *, min_score: float = MIN_SCORE):
    """The boxes worth a second model pass, and a note for each one skipped.

    keypoints: 308 x 3 (x, y, score) in photo pixels. Returns (list of CropBox, list of notes).
    """
    H, W = photo_hw
    groups = keypoint_groups()
    body_scale = min(recipe.INPUT_HW[0] / H, recipe.INPUT_HW[1] / W)
    boxes, notes = [], []
    kp = np.asarray(keypoints, np.float64)
    for name, ids in groups.items():
        words = name.replace("_", " ")
        pts = kp[ids]
        good = (pts[:, 2] >= min_score) & np.isfinite(pts[:, :2]).all(1)
        good &= (pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H)
        need = MIN_HAND_POINTS if name != "face" else MIN_FACE_POINTS
        if good.sum() < need:
            notes.append(f"detail crop {words}: skipped, {int(good.sum())} confident keypoints (needs {need})")
            continue
        xy = pts[good, :2]
        if name == "face":
            eyes = kp[ids[1:3]]
            eye_span = np.linalg.norm(eyes[0, :2] - eyes[1, :2]) if (eyes[:, 2] >= min_score).all() else 0.0
            x0, y0, x1, y1 = _box_around(xy, FACE_MARGIN, FACE_EYE_SPAN * eye_span)
        else:
            x0, y0, x1, y1 = _box_around(xy, HAND_MARGIN, 0.0)
        if x1 - x0 < MIN_BOX_PX:
            notes.append(f"detail crop {words}: skipped, its box is {x1 - x0:.0f} px wide (under {MIN_BOX_PX})")
            continue
        inside = (max(0.0, min(x1, W) - max(x0, 0.0)) * max(0.0, min(y1, H) - max(y0, 0.0))) / ((x1 - x0) * (y1 - y0))
        if inside < MIN_INSIDE:
            notes.append(f"detail crop {words}: skipped, {100 * (1 - inside):.0f}% of its box is off the photo")
            continue
        box = (int(max(0, np.floor(x0))), int(max(0, np.floor(y0))), int(min(W, np.ceil(x1))), int(min(H, np.ceil(y1))))
        bw, bh = box[2] - box[0], box[3] - box[1]
        crop_scale = min(recipe.INPUT_HW[0] / bh, recipe.INPUT_HW[1] / bw)
        if crop_scale < MIN_GAIN * body_scale:
            notes.append(f"detail crop {words}: skipped, the model would see it only {crop_scale / body_scale:.1f}x "
                         f"larger than in the whole photo (needs {MIN_GAIN}x)")
            continue
        factor = int(np.clip(np.floor(crop_scale), 1, MAX_FACTOR))
        boxes.append(CropBox(name, box, factor, int(good.sum())))
    return boxes, notes


def crop_masks(person_mask: np.ndarray, box: CropBox, seg: np.ndarray | None) -> np.ndarray:
    """The person on the crop's grid: the crop's own segmentation (fine enough to part fingers)
    where the person's photo mask, grown by a pixel, says it is this person; without a crop
    segmentation, the photo mask repeated."""
    x0, y0, x1, y1 = box.box
    f = box.factor
    coarse = person_mask[y0:y1, x0:x1]
    if seg is None:
        return np.repeat(np.repeat(coarse, f, 0), f, 1)
    grown = coarse.copy()
    grown[1:] |= coarse[:-1]
    grown[:-1] |= coarse[1:]
    grown[:, 1:] |= grown[:, :-1].copy()
    grown[:, :-1] |= grown[:, 1:].copy()
    return (seg > 0) & np.repeat(np.repeat(grown, f, 0), f, 1)


def run_crops(run, works, tasks) -> None:
    """The second pass of every dense task on the crops of every person of `works` (PhotoWork),
    one runner call per task; sets work.crops (a list of DetailCrop per person)."""
    from engine.predict.tasks import Timer

    jobs = []   # (work, person index, CropBox, shim)
    for work in works:
        work.crops = [[] for _ in work.keypoints]
        for person, keypoints in enumerate(work.keypoints):
            boxes, notes = crop_boxes(keypoints, work.photo.rgb.shape[:2])
            prefix = f"person {person}: " if len(work.keypoints) > 1 else ""
            work.notes.extend(prefix + n for n in notes)
            for box in boxes:
                x0, y0, x1, y1 = box.box
                shim = SimpleNamespace(photo=SimpleNamespace(rgb=np.ascontiguousarray(work.photo.rgb[y0:y1, x0:x1])),
                                       on_device=None)
                jobs.append((work, person, box, shim))
    if not jobs:
        return
    ops = run.ops
    outputs: list[dict] = [{} for _ in jobs]
    works_of = list({id(j[0]): j[0] for j in jobs}.values())
    for task in [t for t in CROP_TASKS if t in tasks]:
        with Timer(works_of, f"load_{task}"):
            runner = run.cache.get(task)
        with Timer(works_of, f"crops_{task}", ops):
            shims = [j[3] for j in jobs]
            if task == "seg":
                raw = runner(ops.batch(ops.seg_inputs(shims)), keep_on_device=ops.keep_on_device)
                for out, (_, _, box, crop), one in zip(outputs, jobs, raw):
                    out["seg"] = ops.seg_labels(one, _grid_hw(box), False)[0]
                continue
            prepared = ops.dense_inputs(shims)
            raw = runner(ops.batch([image for image, _ in prepared]), keep_on_device=ops.keep_on_device)
            for i, (out, (_, _, box, _), (_, letterbox)) in enumerate(zip(outputs, jobs, prepared)):
                one = (raw[0][i], raw[1][i]) if task == "pointmap" else raw[i]
                out[task] = ops.dense_output(task, one, replace(letterbox, photo_hw=_grid_hw(box)))
                out.setdefault("letterbox", letterbox.as_dict())
    for shim in (j[3] for j in jobs):
        ops.release(shim)
    for (work, person, box, _), out in zip(jobs, outputs):
        mask = crop_masks(work.people[person].mask, box, out.get("seg"))
        maps = {k: out.get(k) for k in ("pointmap", "normal")}
        for key, value in maps.items():
            if value is not None:
                maps[key] = np.where(mask[..., None], value, np.nan).astype(np.float32)
        albedo = out.get("albedo")
        work.crops[person].append(DetailCrop(
            name=box.name, box=box.box, factor=box.factor, mask=mask, seg=out.get("seg"),
            albedo=None if albedo is None else np.clip(albedo, 0, 1).astype(np.float32), **maps,
            meta={**box.as_meta(), "letterbox": out.get("letterbox")}))


def _grid_hw(box: CropBox) -> tuple[int, int]:
    x0, y0, x1, y1 = box.box
    return (y1 - y0) * box.factor, (x1 - x0) * box.factor
