"""A sequence of frames -> an animated skeleton: glTF animation, BVH and per-frame JSON.

Per frame: predictions (or an already-predicted bundle), the same joint lifting as a single
photo. Over the sequence: frames without a person or with too few confident joints are filled
from their neighbours (and marked), joints are smoothed with a One Euro filter, every frame's
skeleton is built in the chosen convention, and each bone's rotation relative to its parent is
kept while its offset (so every bone length) is fixed to the sequence median.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine import fileio
from engine.errors import EngineError
from engine.motion.filters import one_euro
from engine.formats import writers_for
from engine.formats.scene import Animation, Scene, camera_to_avatar_axes, matrix_to_quaternion
from engine.rig.describe import skeleton_description
from engine.motion import frames as frame_io
from engine.motion.feet import FEET_MODES, bone_skate_mm, lock_feet, plant_leg_bones
from engine.motion.frames import Frame, list_frames, read_frames
from engine.rig.lift import LIFTED
from engine.rig.skeleton import bone_matrices, build_skeleton, skeleton_arrays

ANIMATION_FORMAT = "sapiens-animation"
ANIMATION_VERSION = "1.1"   # 1.1: animation.json adds unusable_frames and feet (contacts, skate)
CORE_JOINTS = ("neck", "shoulder_L", "shoulder_R", "hip_L", "hip_R")
MIN_CONFIDENT_CORE = 3     # fewer core joints lifted than this and the frame is filled in
MIN_USABLE_FRAMES = 2      # fewer frames with a followable person and there is no motion to speak of


class TooFewFrames(EngineError):
    """The sequence has too few frames with a usable person to animate."""

Progress = Callable[[str, float, str], None] | None


@dataclass
class Motion:
    names: list[str]               # bone names
    parents: np.ndarray            # B
    rest_local: np.ndarray         # B x 4 x 4, rest bone frames relative to the parent
    local_rotations: np.ndarray    # T x B x 3 x 3
    root_positions: np.ndarray     # T x 3 (root bone head, avatar frame)
    filled: np.ndarray             # T bool: frame filled from its neighbours
    confidence: np.ndarray         # T mean joint confidence
    skeleton: dict                 # rest skeleton.json content
    fps: float
    feet: dict | None = None       # feet clean-up report (engine.motion.feet), None when off

    def world(self) -> np.ndarray:
        """T x B x 4 x 4 bone frames (avatar frame) from the fixed offsets and the rotations."""
        T, B = self.local_rotations.shape[:2]
        out = np.zeros((T, B, 4, 4))
        for b in range(B):
            local = np.broadcast_to(self.rest_local[b], (T, 4, 4)).copy()
            local[:, :3, :3] = self.local_rotations[:, b]
            if self.parents[b] < 0:
                local[:, :3, 3] = self.root_positions
                out[:, b] = local
            else:
                out[:, b] = out[:, self.parents[b]] @ local
        return out

    def bone_lengths(self) -> np.ndarray:
        _, _, heads, tails, _ = skeleton_arrays(self.skeleton)
        return np.linalg.norm(tails - heads, axis=1)


def fill_gaps(tracks: np.ndarray, valid: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Linear interpolation over time of each joint's invalid frames (edges hold their value).
    A joint never valid is interpolated between the frames where it is present (its filled
    positions), so a frame without any joints never keeps placeholder values."""
    out = tracks.copy()
    t = np.arange(len(tracks))
    for j in range(tracks.shape[1]):   # one call per joint, vectorised over frames
        ok = valid[:, j]
        if not ok.any() and present is not None:
            ok = present[:, j]
        if ok.all() or not ok.any():
            continue
        for c in range(3):
            out[~ok, j, c] = np.interp(t[~ok], t[ok], tracks[ok, j, c])
    return out


def motion_from_tracks(names: list[str], tracks_avatar: np.ndarray, valid: np.ndarray, fps: float, *,
                       convention: str = "rigify", height: float = 1.7, smooth: bool = True,
                       min_cutoff: float = 1.0, beta: float = 2.0,
                       present: np.ndarray | None = None, feet: str = "off") -> tuple[Motion, np.ndarray]:
    """Joint tracks (T x J x 3, avatar frame) -> Motion; also returns the smoothed tracks.
    valid: T x J trusted values; present: T x J values there at all (see fill_gaps)."""
    T = len(tracks_avatar)
    frame_ok = valid.any(1)
    if not frame_ok.any():
        raise TooFewFrames("too few usable frames: no frame of the sequence has a usable person")
    tracks = fill_gaps(tracks_avatar, valid, present)
    if smooth:
        # body-relative motion and the root's travel are filtered apart: a steady walk must not
        # slow the filter down on the limbs, nor limb jitter leak into the root
        pelvis = 0.5 * (tracks[:, names.index("hip_L")] + tracks[:, names.index("hip_R")])
        root = one_euro(pelvis[:, None], fps, min_cutoff=min_cutoff, beta=4 * beta)[:, 0]
        tracks = one_euro(tracks - pelvis[:, None], fps, min_cutoff=min_cutoff, beta=beta) + root[:, None]
    feet_report = None
    if feet == "lock":
        tracks, feet_report, contact, moved_feet = lock_feet(tracks, names, fps)
    elif feet != "off":
        raise EngineError(f"feet {feet!r}: choose {' or '.join(FEET_MODES)}")
    worlds = []
    skeleton0 = None
    for t in range(T):
        sk = build_skeleton({n: tracks[t, i] for i, n in enumerate(names)}, convention=convention, height=height)
        bnames, parents, heads, tails, zs = skeleton_arrays(sk)
        worlds.append(bone_matrices(heads, tails, zs))
        skeleton0 = skeleton0 or sk
    worlds = np.stack(worlds)                                        # T x B x 4 x 4
    has = parents >= 0
    local = worlds.copy()
    local[:, has] = np.linalg.inv(worlds[:, parents[has]]) @ worlds[:, has]
    # fixed offsets (bone lengths) from the sequence median; rotations per frame
    offsets = np.median(local[:, :, :3, 3], axis=0)
    first = int(np.flatnonzero(frame_ok)[0])
    rest_local = local[first].copy()
    rest_local[:, :3, 3] = offsets
    sampled = np.unique(np.linspace(0, T - 1, min(T, 15)).astype(int))
    bone_len = np.median(np.stack([_frame_lengths(tracks[t], names, convention, height) for t in sampled]), axis=0)
    motion = Motion(bnames, parents, rest_local, local[:, :, :3, :3], worlds[:, 0, :3, 3],
                    ~frame_ok, np.zeros(T), skeleton0, fps, feet_report)
    if feet_report is not None:
        # the bones have fixed lengths: their legs are solved again to put each planted ankle
        # exactly where the locked joints are
        ankles = tracks[:, [names.index("ankle_L"), names.index("ankle_R")]]
        motion.local_rotations = plant_leg_bones(motion.world(), parents, skeleton0, ankles, moved_feet)
    # rest skeleton: the first usable frame's pose with the fixed offsets and median bone lengths
    w = motion.world()[first]
    rest_bones = []
    for b, bone in enumerate(skeleton0["bones"]):
        nb = dict(bone)
        nb["head"] = [round(float(v), 6) for v in w[b, :3, 3]]
        nb["tail"] = [round(float(v), 6) for v in w[b, :3, 3] + w[b, :3, 1] * bone_len[b]]
        rest_bones.append(nb)
    motion.skeleton = {**skeleton0, "bones": rest_bones}
    if feet_report is not None:   # what the written bones do (fixed bone lengths), beside the joints'
        skate = bone_skate_mm(motion.world(), motion.skeleton, contact)
        feet_report["skate_mm_per_frame"]["after_on_bones"] = None if not np.isfinite(skate) else round(skate, 2)
    return motion, tracks


def _frame_lengths(joints: np.ndarray, names: list[str], convention: str, height: float) -> np.ndarray:
    sk = build_skeleton({n: joints[i] for i, n in enumerate(names)}, convention=convention, height=height)
    _, _, heads, tails, _ = skeleton_arrays(sk)
    return np.linalg.norm(tails - heads, axis=1)


# --- inputs -------------------------------------------------------------------------------------
def tracks_from_frames(frames: list[Frame], min_confidence: float = 0.3
                       ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(joint names, T x J x 3 camera-frame tracks, T x J trusted, T x J present, T confidence,
    median height). `present`: the frame has the joint at all (filled ones included); `trusted`:
    lifted or corrected with enough confidence in a frame that shows enough of the body. A frame
    with too few trusted frames around it is refused in words (TooFewFrames)."""
    usable = [f for f in frames if f.joints is not None]
    if not usable:
        raise TooFewFrames(_refusal(frames, 0))
    names = usable[0].joints.names
    T, J = len(frames), len(names)
    tracks = np.zeros((T, J, 3))
    valid = np.zeros((T, J), bool)
    present = np.zeros((T, J), bool)
    conf = np.zeros(T)
    core = [names.index(n) for n in CORE_JOINTS]
    heights = []
    for t, frame in enumerate(frames):
        f = frame.joints
        if f is None:
            continue
        tracks[t] = f.positions
        present[t] = np.isfinite(f.positions).all(1)
        ok = present[t] & (f.status <= 1) & (f.confidence >= min_confidence * 0.5)
        if (f.status[core] == LIFTED).sum() < MIN_CONFIDENT_CORE:
            ok[:] = False     # too little of the body seen: the whole frame is filled in
            frame.reason = frame.reason or f"fewer than {MIN_CONFIDENT_CORE} of the neck, shoulders and hips seen"
        valid[t] = ok
        conf[t] = float(f.confidence.mean())
        heights.append(f.height)
    good = int(valid.any(1).sum())
    if good < MIN_USABLE_FRAMES:
        raise TooFewFrames(_refusal(frames, good))
    return names, tracks, valid, present, conf, float(np.median(heights))


def _refusal(frames: list[Frame], good: int) -> str:
    reasons: dict[str, list[int]] = {}
    for t, f in enumerate(frames):
        if f.reason:
            reasons.setdefault(f.reason, []).append(t)
    listed = "; ".join(f"frame{'s' if len(ts) > 1 else ''} {', '.join(map(str, ts[:5]))}"
                       f"{' ...' if len(ts) > 5 else ''}: {r}" for r, ts in list(reasons.items())[:4])
    return (f"too few usable frames: {good} of {len(frames)} show a person the animation can follow "
            f"(at least {MIN_USABLE_FRAMES} needed)" + (f". {listed}" if listed else ""))


# --- outputs ------------------------------------------------------------------------------------
def motion_scene(motion: Motion) -> Scene:
    """The motion as the description the file formats write (engine.formats.WRITERS): the rest
    skeleton, and per frame each bone's rotation relative to its parent with its fixed offset
    (the root's travelling position)."""
    T, B = motion.local_rotations.shape[:2]
    translations = np.broadcast_to(motion.rest_local[:, :3, 3], (T, B, 3)).copy()
    roots = motion.parents < 0
    translations[:, roots] = motion.root_positions[:, None]
    animation = Animation(motion.fps, motion.local_rotations, translations,
                          frame_data={"filled": np.asarray(motion.filled, bool),
                                      "confidence": np.asarray(motion.confidence, np.float64)})
    return Scene("motion", skeleton=skeleton_description(motion.skeleton), animation=animation,
                 metadata={"sapiens": {"format": ANIMATION_FORMAT, "version": ANIMATION_VERSION}})


def write_frame_json(dir_: Path, motion: Motion, tracks: np.ndarray, joint_names: list[str],
                     sources: list[str]) -> None:
    quats = matrix_to_quaternion(motion.local_rotations)
    standing = {}
    for side, runs in ((motion.feet or {}).get("contact_frames") or {}).items():
        standing[side] = np.zeros(len(tracks), bool)
        for a, b in runs:
            standing[side][a:b] = True
    for t in range(len(tracks)):
        doc = {
            "format": ANIMATION_FORMAT + "-frame", "version": ANIMATION_VERSION, "index": t,
            "time": t / motion.fps, "source": sources[t], "filled": bool(motion.filled[t]),
            "confidence": round(float(motion.confidence[t]), 4),
            "joints": {n: [round(float(v), 5) for v in tracks[t, i]] for i, n in enumerate(joint_names)},
            "bones": {n: {"rotation": [round(float(v), 6) for v in quats[t, b]]} for b, n in enumerate(motion.names)},
            "root_position": [round(float(v), 5) for v in motion.root_positions[t]],
        }
        if standing:   # --feet lock: which foot stands on the ground in this frame
            doc["contacts"] = {side: bool(flags[t]) for side, flags in standing.items()}
        (dir_ / f"{t:06d}.json").write_text(json.dumps(doc))


def animate_frames(frames: str | Path, out_dir: str | Path, *, convention: str = "rigify", fps: float | None = None,
                   smooth: bool = True, min_cutoff: float = 1.0, beta: float = 2.0, size: str = "0.4b",
                   checkpoints=None, device: str = "auto", backend: str = "torch", formats=None,
                   feet: str = "lock", progress: Progress = None, predictor_scope=None) -> Path:
    """Animate a skeleton from a directory of frames (images, or predictions bundles) or a video.

    fps: frame rate of the sequence (default: the video's own, else 30). formats: the motion
    formats to write (engine.formats.WRITERS; default glb and bvh). feet: "lock" keeps standing
    feet planted and the body above the ground (engine.motion.feet), "off" leaves the joints as lifted.
    predictor_scope: where images and video frames get their Predictor (engine.motion.frames.predict_frames;
    a job passes the process's shared one). Writes into out_dir:
    animation.glb, animation.bvh (animation.usdc with "usd"), skeleton.json (rest), animation.json (summary) and
    frames/NNNNNN.json (per-frame joints, bone rotations, filled flag). Every input frame keeps
    its place: one that cannot be used is filled from its neighbours and marked. Decoded video
    frames and their predictions live in a temporary directory that is removed afterwards."""
    out_dir = Path(out_dir)
    writers = writers_for(formats, "motion")  # a bad choice fails before any frame is read
    if feet not in FEET_MODES:
        raise EngineError(f"feet {feet!r}: choose {' or '.join(FEET_MODES)}")
    kind, paths = list_frames(frames)
    sources = [str(p) for p in paths]
    work = Path(tempfile.mkdtemp(prefix="animate-")) if kind != "bundles" else None
    try:
        entries: list[Path | str] = list(paths)
        if kind == "video":
            from engine.motion.video import decode_video
            paths, video_fps = decode_video(paths[0], work / "frames", progress=progress)
            fps = fps or video_fps
            sources = [f"{frames}#{i}" for i in range(len(paths))]
        if kind in ("images", "video"):
            entries = frame_io.predict_frames(paths, work / "bundles", size=size, checkpoints=checkpoints, device=device,
                                              backend=backend, progress=progress, predictor_scope=predictor_scope)
        return _animate(read_frames(entries, sources, progress), out_dir, convention=convention, fps=fps or 30.0,
                        smooth=smooth, min_cutoff=min_cutoff, beta=beta, writers=writers, feet=feet,
                        progress=progress)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _animate(frames: list[Frame], out_dir: Path, *, convention: str, fps: float, smooth: bool,
             min_cutoff: float, beta: float, progress: Progress, writers=None, feet: str = "lock") -> Path:
    names, tracks_cam, valid, present, conf, height = tracks_from_frames(frames)
    tracks = camera_to_avatar_axes(tracks_cam)
    # origin on the ground under the first usable frame's pelvis
    ok_frames = valid.any(1)
    first = int(np.flatnonzero(ok_frames)[0])
    pelvis = 0.5 * (tracks[first, names.index("hip_L")] + tracks[first, names.index("hip_R")])
    foot_joints = [names.index(n) for n in names if n.startswith(("ankle_", "heel_", "big_toe_", "small_toe_"))]
    ground = (np.min(tracks[valid[:, foot_joints].any(1)][:, foot_joints, 1]) if valid[:, foot_joints].any()
              else pelvis[1] - 0.5 * height)
    tracks = tracks - np.array([pelvis[0], ground, pelvis[2]])
    motion, smoothed = motion_from_tracks(names, tracks, valid, fps, convention=convention, height=height,
                                          smooth=smooth, min_cutoff=min_cutoff, beta=beta, present=present,
                                          feet=feet)
    motion.confidence = conf
    motion.filled |= ~valid.any(1)
    if progress:
        progress("animate", 0.8, "writing outputs")
    with fileio.atomic_directory(out_dir) as tmp:
        (tmp / "frames").mkdir()
        scene = motion_scene(motion)
        written = {}
        for writer in writers or writers_for(None, "motion"):
            written.update(writer.motion(scene, tmp))
        write_frame_json(tmp / "frames", motion, smoothed, names, [f.source for f in frames])
        (tmp / "skeleton.json").write_text(json.dumps(motion.skeleton, indent=1))
        summary = {"format": ANIMATION_FORMAT, "version": ANIMATION_VERSION, "fps": fps, "frames": len(frames),
                   "filled_frames": [int(t) for t in np.flatnonzero(motion.filled)], "convention": convention,
                   "unusable_frames": {str(t): f.reason for t, f in enumerate(frames)
                                       if motion.filled[t] and f.reason},
                   "units": "metres", "frame": "avatar (glTF: +Y up, person faces +Z)",
                   "smoothing": {"filter": "one_euro", "min_cutoff_hz": min_cutoff, "beta": beta} if smooth else None,
                   "feet": motion.feet or {"mode": "off"},
                   "files": {**written, "skeleton": "skeleton.json", "frames": "frames/"}}
        (tmp / "animation.json").write_text(json.dumps(summary, indent=1))
        if progress:
            progress("animate", 1.0, "done")   # last chance for the client to cancel
    return out_dir
