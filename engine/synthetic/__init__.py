"""Synthetic people with exact ground truth: the project's own test data and the bundled sample.

    person = make_person(seed=3, pose="bent")          # a Render: maps, keypoints, joints, mesh
    bundle = to_bundle(person)                         # what a perfect Sapiens2 would predict
    noisy = degrade(person, seed=1)                    # ... and what a real one might
    frames = make_sequence(24, motion="wave")          # known motion for animation tests
    write_ground_truth(person, "gt/")                  # gt.json + gt_mesh.ply, like ../shared/samples

Conventions (docs/synthetic.md): camera frame OpenCV, metres; pixel centres at (col + 0.5,
row + 0.5); joints named like ../shared/samples (`elbow_L` is the person's left elbow).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np

from engine.synthetic.body import OUTFITS, BodyMesh, build_body
from engine.synthetic.motion import MOTIONS, MotionTrack, make_motion, relative_rotation_deg, sequence_pose
from engine.synthetic.render import Camera, Render, frame_camera, render
from engine.synthetic.skeleton import POSES, Skeleton, named_pose, random_pose

__all__ = ["Render", "Camera", "Skeleton", "BodyMesh", "MotionTrack", "make_person", "make_sequence",
           "make_motion", "sequence_pose", "relative_rotation_deg", "to_bundle", "degrade",
           "write_ground_truth", "write_sample", "render", "build_body", "frame_camera", "named_pose",
           "random_pose", "POSES", "MOTIONS", "OUTFITS"]


def make_person(seed: int = 0, *, pose: str | dict | None = None, height_m: float | None = None,
                width: int = 768, height: int = 1024, yaw_deg: float = 0.0, outfit: str = "trousers",
                detail: bool = True) -> Render:
    """One synthetic person. pose: a name from POSES, a rotation dict (joint -> rotation vector),
    or None for a random pose seeded by `seed`; height_m: None draws 1.6-1.9 m from the seed;
    yaw_deg turns the person about the vertical (90: their right side toward the camera);
    outfit: one of OUTFITS ("trousers", or "shorts" with bare legs and socks); detail=False: no
    shirt folds or belt ridge (a smooth body)."""
    rng = np.random.default_rng(seed)
    height_m = float(height_m if height_m is not None else rng.uniform(1.6, 1.9))
    rotations = random_pose(seed) if pose is None else named_pose(pose) if isinstance(pose, str) else pose
    posed = Skeleton.for_height(height_m).pose(rotations)
    person = render(posed, width, height, yaw_deg=yaw_deg, outfit=outfit, detail=detail)
    person.meta.update(seed=seed, pose=pose if isinstance(pose, str) else ("random" if pose is None else "custom"),
                       yaw_deg=yaw_deg, outfit=outfit, detail=detail)
    return person


def to_bundle(person: Render, *, name: str = "synthetic"):
    """The person as a predictions bundle (engine.bundle.Bundle), exactly what a perfect model gives."""
    from engine.bundle import Bundle

    return Bundle(
        image=person.image, mask=person.mask, keypoints=person.keypoints.copy(), seg=person.seg,
        normal=person.normal, pointmap=person.pointmap, albedo=person.albedo, K=person.K.copy(),
        meta={
            "photo": {"name": f"{name}.png"},
            "source": {"kind": "synthetic", "generator": "engine.synthetic", **person.meta,
                       "height_m": person.height_m},
            "notes": ["synthetic person: every map is exact ground truth, not a model prediction"],
        },
    )


def degrade(person: Render, seed: int = 0, *, pointmap_noise_m: float = 0.01, keypoint_noise_px: float = 3.0,
            normal_noise_deg: float = 3.0, flying_rim_px: float = 0.0, centred: bool = False) -> Render:
    """A copy with realistic prediction errors: a smooth depth error and pixel noise on the
    pointmap, jittered keypoints, slightly blurred and tilted normals; flying_rim_px > 0 also
    strews that wide a rim of silhouette pixels toward the camera (engine.geometry.degrade.fly_rim);
    centred=True removes the smooth error's mean over the person (else an offset along the view).
    The truth (mesh, joints) is unchanged."""
    from engine.geometry.degrade import degrade_normals, degrade_pointmap, fly_rim

    out = copy.copy(person)
    out.pointmap = degrade_pointmap(person.pointmap, person.mask, smooth_m=pointmap_noise_m,
                                    noise_m=0.5 * pointmap_noise_m, blur_px=1.5, seed=seed, centred=centred)
    if flying_rim_px > 0:
        out.pointmap = fly_rim(out.pointmap, person.mask, width_px=flying_rim_px, seed=seed + 3)
    out.normal = degrade_normals(person.normal, person.mask, noise_deg=normal_noise_deg, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    kp = person.keypoints.copy()
    defined = kp[:, 2] > 0
    kp[defined, :2] += rng.normal(0.0, keypoint_noise_px, (int(defined.sum()), 2)).astype(np.float32)
    out.keypoints = kp
    out.meta = {**person.meta, "degraded": {"seed": seed, "pointmap_noise_m": pointmap_noise_m,
                                            "keypoint_noise_px": keypoint_noise_px,
                                            "normal_noise_deg": normal_noise_deg,
                                            "flying_rim_px": flying_rim_px, "centred": centred}}
    return out


def _write_atomically(path: Path, write) -> None:
    """write(tmp_path) then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ground_truth_json(person: Render) -> dict:
    """gt.json's content: the layout of ../shared/samples/*/gt.json."""
    return {
        "joints3d_camera": {k: [float(x) for x in v] for k, v in person.joints3d_camera.items()},
        "K": person.K.tolist(),
        "image_size_wh": [int(person.image.shape[1]), int(person.image.shape[0])],
        "height_m": person.height_m,
        "conventions": "OpenCV camera frame, metres; pixel centres at (col + 0.5, row + 0.5); "
                       "_L is the person's left",
    }


def write_ground_truth(person: Render, out_dir: str | Path) -> Path:
    """gt.json (joints3d_camera, K, image_size_wh, height_m) and gt_mesh.ply, as in ../shared/samples.
    Other files in out_dir are left alone; each file appears whole or not at all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(ground_truth_json(person), indent=1)
    _write_atomically(out_dir / "gt.json", lambda p: p.write_text(text))
    _write_atomically(out_dir / "gt_mesh.ply", lambda p: person.mesh.export(p, file_type="ply"))
    return out_dir


def write_sample(person: Render, out_dir: str | Path) -> Path:
    """The person in the layout of ../shared/samples/person_*/ (image.png, gt_maps.npz,
    keypoints.json, gt.json, gt_mesh.ply), so one test helper reads both. Atomic."""
    from PIL import Image

    from engine.errors import BundleError
    from engine.fileio import atomic_directory
    from engine.synthetic.render import _keypoint_table

    names, _ = _keypoint_table()
    with atomic_directory(Path(out_dir), BundleError) as tmp:
        Image.fromarray(person.image).save(tmp / "image.png")
        np.savez_compressed(tmp / "gt_maps.npz", pointmap=person.pointmap, normal=person.normal,
                            albedo=person.albedo, seg=person.seg, mask=person.mask, K=person.K)
        (tmp / "keypoints.json").write_text(json.dumps(
            {"keypoints": person.keypoints.astype(float).round(4).tolist(), "names": names}))
        write_ground_truth(person, tmp)
    return Path(out_dir)


# ---- sequences --------------------------------------------------------------------------------


def make_sequence(n_frames: int, motion: str = "wave", *, fps: float = 30.0, seed: int = 0,
                  height_m: float = 1.75, width: int = 384, height: int = 512, yaw_deg: float = 0.0,
                  outfit: str = "trousers") -> list[Render]:
    """Frames of one person moving with a known motion (MOTIONS), seen by one fixed camera.

    Each frame's truth: joints3d_camera, joint_rotations_camera, and meta (motion, frame, fps);
    make_motion() gives the same truth as arrays without rendering."""
    track = make_motion(n_frames, motion, fps=fps, height_m=height_m, width=width, height=height,
                        yaw_deg=yaw_deg)
    frames = []
    for i in range(n_frames):
        frame = render(track.posed(i), width, height, camera=track.camera, outfit=outfit)
        frame.meta.update(motion=motion, frame=i, fps=fps, seed=seed, time_s=i / fps)
        frames.append(frame)
    return frames
