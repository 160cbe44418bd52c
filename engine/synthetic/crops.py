"""Detail crops of a synthetic person: what a perfect model would predict on the hand and face
boxes, rendered at the crop's finer resolution (the same camera, zoomed onto the box), with the
errors a real model's crop prediction has when asked (a wrong metric scale and position, blur).

    crops = render_crops(person)                                  # exact, aligned
    crops = render_crops(person, scale=1.3, shift=(0.1, 0, 0.5))  # as the model's own guess
"""

from __future__ import annotations

import numpy as np

from engine.bundle.crops import DetailCrop
from engine.synthetic.render import Camera, Render, render


def crop_camera(camera: Camera, box, factor: int) -> Camera:
    """The photo's camera seeing only `box` (x0, y0, x1, y1 photo pixels), `factor` times finer."""
    x0, y0, x1, y1 = box
    K = camera.K.astype(np.float64).copy()
    K[0, 0] *= factor
    K[1, 1] *= factor
    K[0, 1] *= factor
    K[0, 2] = (K[0, 2] - x0) * factor
    K[1, 2] = (K[1, 2] - y0) * factor
    return Camera(K, (x1 - x0) * factor, (y1 - y0) * factor, camera.body_to_camera.copy())


def render_crops(person: Render, *, boxes=None, scale: float = 1.0, shift=(0.0, 0.0, 0.0),
                 blur_px: float = 0.0, noise_m: float = 0.0, seed: int = 0) -> list[DetailCrop]:
    """One DetailCrop per box (default: engine.predict.crops.crop_boxes on the person's keypoints).

    The pointmap is stored as a model would guess it: (truth - shift) / scale, so that aligning it
    (scale s, shift t) recovers the truth; blur_px / noise_m degrade its depth like a network's
    output (engine.geometry.degrade, in the crop's own pixels).
    """
    from engine.geometry.degrade import degrade_pointmap

    if boxes is None:
        from engine.predict.crops import crop_boxes

        boxes, _ = crop_boxes(person.keypoints, person.mask.shape)
    outfit = person.meta.get("outfit", "trousers")
    detail = person.meta.get("detail", True)
    crops = []
    for i, box in enumerate(boxes):
        seen = render(person.posed, camera=crop_camera(person.camera, box.box, box.factor), outfit=outfit, detail=detail,
                      width=(box.box[2] - box.box[0]) * box.factor, height=(box.box[3] - box.box[1]) * box.factor)
        points = seen.pointmap
        if blur_px > 0 or noise_m > 0:
            points = degrade_pointmap(points, seen.mask, smooth_m=0.0, noise_m=noise_m, blur_px=blur_px, seed=seed + i)
        guessed = ((points - np.float32(shift)) / np.float32(scale)).astype(np.float32)
        crops.append(DetailCrop(name=box.name, box=tuple(box.box), factor=int(box.factor), mask=seen.mask.copy(),
                                pointmap=guessed, normal=seen.normal, albedo=seen.albedo, seg=seen.seg,
                                meta={"points_used": int(box.points_used), "source": "synthetic"}))
    return crops


def open_hands_pose(spread_deg: float = 10.0, arms_deg: float = 35.0) -> dict:
    """Arms a little out, palms turned to the camera, fingers spread `spread_deg` apart (their
    tips part while the knuckles touch): a pose whose fingers a finer grid can tell apart.

    The mannequin's fingers hang with the palm toward the body (palm normal along the body's x);
    the wrist turns a quarter about the forearm so the palm faces the front, and each finger's
    base turns about the palm normal (the body-frame x before the turn, the local frame here)."""
    from engine.synthetic.skeleton import FINGERS

    def rv(axis, degrees):
        return np.asarray(axis, float) * np.radians(degrees)

    pose = {"shoulder_L": rv((0, 0, 1), arms_deg), "shoulder_R": rv((0, 0, 1), -arms_deg),
            "wrist_L": rv((0, 1, 0), 90.0), "wrist_R": rv((0, 1, 0), -90.0)}
    for side in "LR":
        for k, finger in enumerate(FINGERS[1:]):      # forefinger toward the front ... pinky toward the back
            pose[f"{finger}0_{side}"] = rv((1, 0, 0), (k - 1.4) * spread_deg)
    return pose
