"""Known motions for animation tests: per-frame joint rotations and positions, no rendering.

A motion is a function of time giving (local joint rotations, root translation) in the body
frame of skeleton.py. `make_motion` samples it into a MotionTrack: every joint's position and
rotation per frame in the camera frame, from one fixed camera framed on the whole motion, so a
test can compare recovered joints and bone rotations with the truth frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from engine.synthetic.render import Camera, frame_camera
from engine.synthetic.skeleton import X, Y, Z, PosedSkeleton, Skeleton, _rv

from engine.synthetic.grounded import GROUNDED_MOTIONS, sample_grounded

# "walk" slides sideways with legs swinging toward the camera (no foot is ever planted); the
# grounded motions (grounded.py) carry the body on their feet and label every foot contact
MOTIONS = ("wave", "walk", "kick") + GROUNDED_MOTIONS


def sequence_pose(motion: str, time_s: float) -> tuple[dict, np.ndarray]:
    """(joint rotations, root translation in the body frame) of a motion at a time."""
    if motion == "wave":
        # the right arm rises, then the forearm waves; from 1 s on it waves fast (2.5 Hz)
        raise_deg = 120 * min(time_s / 0.5, 1.0)
        freq = 1.0 if time_s < 1.0 else 2.5
        wave = 35 * np.sin(2 * np.pi * freq * time_s) * min(time_s / 0.5, 1.0)
        pose = {"shoulder_R": _rv(Z, -raise_deg), "elbow_R": _rv(Z, -wave - 20),
                "shoulder_L": _rv(Z, 20), "spine1": _rv(Y, 5 * np.sin(2 * np.pi * 0.5 * time_s))}
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
    if motion == "kick":
        # standing still for 0.5 s, then a fast front kick of the left leg (0.25 s up, 0.25 s
        # down), arms out for balance: a step change in speed that smoothing must not lag
        u = np.clip((time_s - 0.5) / 0.25, 0.0, 2.0)
        lift = np.sin(np.pi * u / 2.0) if u <= 1.0 else np.sin(np.pi * (2.0 - u) / 2.0)
        pose = {"hip_L": _rv(X, -75 * lift), "knee_L": _rv(X, 60 * abs(np.sin(np.pi * u))),
                "shoulder_L": _rv(Z, 30 + 30 * lift), "shoulder_R": _rv(Z, -30 - 30 * lift),
                "spine1": _rv(X, 8 * lift)}
        return pose, np.zeros(3)
    raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")


@dataclass
class MotionTrack:
    """A sampled motion: the truth an animation test compares with."""

    motion: str
    fps: float
    names: list[str]              # joint names (skeleton order)
    parents: list[int]            # parent index per joint, -1 for the root
    positions: np.ndarray         # N x J x 3 joint centres, camera frame, metres
    rotations: np.ndarray         # N x J x 3 x 3 each joint's rotation from the rest pose, camera frame
    local_rotvecs: np.ndarray     # N x J x 3 the pose as given: local rotation vectors, body frame
    root_translation: np.ndarray  # N x 3 body frame
    rest_positions: np.ndarray    # J x 3 joint centres at rest (no rotation, no translation), camera frame
    camera: Camera
    height_m: float
    skeleton: Skeleton
    contacts: np.ndarray | None = None   # N x 2 bool [left, right] foot on the ground (grounded motions)

    def ground_camera(self) -> tuple[np.ndarray, np.ndarray]:
        """(unit normal pointing up, a point) of the ground plane (body y = 0) in the camera frame."""
        Rc = self.camera.body_to_camera[:3, :3]
        return Rc @ np.array([0.0, 1.0, 0.0]), self.camera.to_camera(np.zeros((1, 3)))[0]

    @property
    def times(self) -> np.ndarray:
        return np.arange(len(self.positions)) / self.fps

    def joint(self, name: str) -> np.ndarray:
        """N x 3 track of one joint in the camera frame."""
        return self.positions[:, self.names.index(name)]

    def posed(self, frame: int) -> PosedSkeleton:
        """The frame's posed skeleton in the body frame (what render() takes)."""
        rotations = {n: self.local_rotvecs[frame, i] for i, n in enumerate(self.names)
                     if np.any(self.local_rotvecs[frame, i])}
        return self.skeleton.pose(rotations, root_translation=self.root_translation[frame])


def make_motion(n_frames: int, motion: str = "wave", *, fps: float = 30.0, height_m: float = 1.75,
                width: int = 384, height: int = 512, yaw_deg: float = 0.0) -> MotionTrack:
    """Sample a known motion at `fps`, framed by one fixed camera that sees all of it."""
    if n_frames < 1:
        raise ValueError("n_frames must be at least 1")
    skeleton = Skeleton.for_height(height_m)
    contacts = None
    if motion in GROUNDED_MOTIONS:
        rotations, translations, contacts = sample_grounded(skeleton, motion, np.arange(n_frames) / fps)
        samples = list(zip(rotations, translations))
    else:
        samples = [sequence_pose(motion, i / fps) for i in range(n_frames)]
    posed = [skeleton.pose(p, root_translation=t) for p, t in samples]
    # frame the camera on the whole motion so nobody leaves the picture
    everything = skeleton.pose({})
    everything.positions = np.concatenate([p.positions for p in posed])
    camera = frame_camera(everything, width, height, fill=0.8, yaw_deg=yaw_deg)
    Rc = camera.body_to_camera[:3, :3]
    J = len(skeleton.names)
    local = np.zeros((n_frames, J, 3))
    for f, (rotations, _) in enumerate(samples):
        for name, rotvec in rotations.items():
            local[f, skeleton.index(name)] = rotvec
    world = np.stack([p.rotations for p in posed])                    # body frame
    return MotionTrack(
        motion=motion, fps=fps, names=list(skeleton.names), parents=list(skeleton.parents),
        positions=np.stack([camera.to_camera(p.positions) for p in posed]),
        rotations=np.einsum("ab,njbc,dc->njad", Rc, world, Rc),       # Rc R Rc^T: same turn, camera axes
        local_rotvecs=local, root_translation=np.stack([t for _, t in samples]),
        rest_positions=camera.to_camera(skeleton.pose({}).positions), camera=camera, height_m=height_m,
        skeleton=skeleton, contacts=contacts,
    )


def relative_rotation_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between rotation matrices (... x 3 x 3), for comparing recovered bone turns."""
    r = Rotation.from_matrix(np.einsum("...ji,...jk->...ik", a, b).reshape(-1, 3, 3))
    return np.degrees(r.magnitude()).reshape(a.shape[:-2])
