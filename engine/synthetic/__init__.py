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
from pathlib import Path

import numpy as np

from engine.synthetic.body import BodyMesh, build_body
from engine.synthetic.render import Camera, Render, frame_camera, render
from engine.synthetic.skeleton import POSES, Skeleton, named_pose, random_pose

__all__ = ["Render", "Camera", "Skeleton", "BodyMesh", "make_person", "make_sequence", "to_bundle",
           "degrade", "write_ground_truth", "render", "build_body", "named_pose", "random_pose", "POSES"]


def make_person(seed: int = 0, *, pose: str | dict | None = None, height_m: float | None = None,
                width: int = 768, height: int = 1024, yaw_deg: float = 0.0) -> Render:
    """One synthetic person. pose: a name from POSES, a rotation dict, or None for a random pose."""
    rng = np.random.default_rng(seed)
    height_m = float(height_m if height_m is not None else rng.uniform(1.6, 1.9))
    rotations = random_pose(seed) if pose is None else named_pose(pose) if isinstance(pose, str) else pose
    posed = Skeleton.for_height(height_m).pose(rotations)
    person = render(posed, width, height, yaw_deg=yaw_deg)
    person.meta.update(seed=seed, pose=pose if isinstance(pose, str) else ("random" if pose is None else "custom"),
                       yaw_deg=yaw_deg)
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
            normal_noise_deg: float = 3.0) -> Render:
    """A copy with realistic prediction errors: a smooth depth error and pixel noise on the
    pointmap, jittered keypoints, slightly blurred and tilted normals. The truth (mesh, joints)
    is unchanged."""
    from engine.geometry.degrade import degrade_normals, degrade_pointmap

    out = copy.copy(person)
    out.pointmap = degrade_pointmap(person.pointmap, person.mask, smooth_m=pointmap_noise_m,
                                    noise_m=0.5 * pointmap_noise_m, blur_px=1.5, seed=seed)
    out.normal = degrade_normals(person.normal, person.mask, noise_deg=normal_noise_deg, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    kp = person.keypoints.copy()
    defined = kp[:, 2] > 0
    kp[defined, :2] += rng.normal(0.0, keypoint_noise_px, (int(defined.sum()), 2)).astype(np.float32)
    out.keypoints = kp
    out.meta = {**person.meta, "degraded": {"seed": seed, "pointmap_noise_m": pointmap_noise_m,
                                            "keypoint_noise_px": keypoint_noise_px,
                                            "normal_noise_deg": normal_noise_deg}}
    return out


def write_ground_truth(person: Render, out_dir: str | Path) -> Path:
    """gt.json (joints3d_camera, K, image_size_wh, height_m) and gt_mesh.ply, as in ../shared/samples."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gt = {
        "joints3d_camera": {k: [float(x) for x in v] for k, v in person.joints3d_camera.items()},
        "K": person.K.tolist(),
        "image_size_wh": [int(person.image.shape[1]), int(person.image.shape[0])],
        "height_m": person.height_m,
        "conventions": "OpenCV camera frame, metres; pixel centres at (col + 0.5, row + 0.5); "
                       "_L is the person's left",
    }
    (out_dir / "gt.json").write_text(json.dumps(gt, indent=1))
    person.mesh.export(out_dir / "gt_mesh.ply")
    return out_dir


# ---- sequences --------------------------------------------------------------------------------

MOTIONS = ("wave", "walk")


def sequence_pose(motion: str, time_s: float) -> tuple[dict, np.ndarray]:
    """(joint rotations, root translation in the body frame) of a motion at a time."""
    from engine.synthetic.skeleton import X, Z, _rv

    if motion == "wave":
        # the right arm rises, then the forearm waves; from 1 s on it waves fast (2.5 Hz)
        raise_deg = 120 * min(time_s / 0.5, 1.0)
        freq = 1.0 if time_s < 1.0 else 2.5
        wave = 35 * np.sin(2 * np.pi * freq * time_s) * min(time_s / 0.5, 1.0)
        pose = {"shoulder_R": _rv(Z, -raise_deg), "elbow_R": _rv(Z, -wave - 20),
                "shoulder_L": _rv(Z, 20), "spine1": _rv((0, 1, 0), 5 * np.sin(2 * np.pi * 0.5 * time_s))}
        return pose, np.zeros(3)
    if motion == "walk":
        phase = 2 * np.pi * 1.0 * time_s
        swing = 25 * np.sin(phase)
        pose = {"hip_L": _rv(X, -swing), "hip_R": _rv(X, swing),
                "knee_L": _rv(X, max(0.0, 35 * np.sin(phase + 1.2))),
                "knee_R": _rv(X, max(0.0, 35 * np.sin(phase + 1.2 + np.pi))),
                "shoulder_L": _rv(X, swing) + _rv(Z, 8), "shoulder_R": _rv(X, -swing) + _rv(Z, -8),
                "elbow_L": _rv(X, -15), "elbow_R": _rv(X, -15)}
        return pose, np.array([0.4 * time_s, 0.0, 0.0])  # walks sideways across the frame
    raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")


def make_sequence(n_frames: int, motion: str = "wave", *, fps: float = 30.0, seed: int = 0,
                  height_m: float = 1.75, width: int = 384, height: int = 512) -> list[Render]:
    """Frames of one person moving with a known motion, seen by one fixed camera."""
    skeleton = Skeleton.for_height(height_m)
    poses = [sequence_pose(motion, i / fps) for i in range(n_frames)]
    # frame the camera on the whole motion so nobody leaves the picture
    all_joints = np.concatenate([skeleton.pose(p, root_translation=t).positions for p, t in poses])
    bbox_pose = skeleton.pose({})
    bbox_pose.positions = all_joints
    camera = frame_camera(bbox_pose, width, height, fill=0.8)
    frames = []
    for i, (rotations, translation) in enumerate(poses):
        posed = skeleton.pose(rotations, root_translation=translation)
        frame = render(posed, width, height, camera=camera)
        frame.meta.update(motion=motion, frame=i, fps=fps, seed=seed)
        frames.append(frame)
    return frames
