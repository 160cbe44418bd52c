"""Frames -> animation: a synthetic sequence with known motion, jitter, gaps; the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.motion.animate import motion_from_tracks
from engine.motion.filters import one_euro
from engine.rig.lift import lift_joints

FPS = 30.0
METRIC = ["shoulder", "elbow", "wrist", "hip", "knee", "ankle"]
# bone heads that sit on the metric joints in the rigify convention
HEADS = {"shoulder_{s}": "upper_arm.{s}", "elbow_{s}": "forearm.{s}", "wrist_{s}": "hand.{s}",
         "hip_{s}": "thigh.{s}", "knee_{s}": "shin.{s}", "ankle_{s}": "foot.{s}"}


def rotation(axis, angle):
    axis = axis / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


@pytest.fixture(scope="module")
def sequence(shared_samples):
    """60 frames: the left forearm swings fast about the elbow (1.5 Hz), the body walks sideways."""
    d = shared_samples / "person_101"
    maps = np.load(d / "gt_maps.npz")
    kp = np.array(json.loads((d / "keypoints.json").read_text())["keypoints"], np.float64)
    joints = lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"])
    base = joints.positions * [1, -1, -1]
    names = joints.names
    moving = [i for i, n in enumerate(names) if n == "wrist_L" or (n.endswith("_L") and n[:-2].rstrip("1234")
                                                                    in ("thumb", "index", "middle", "ring", "pinky"))]
    elbow, shoulder = base[names.index("elbow_L")], base[names.index("shoulder_L")]
    hinge = np.cross(elbow - shoulder, base[names.index("wrist_L")] - elbow)
    T = 60
    t = np.arange(T)
    angle = 0.6 * np.sin(2 * np.pi * 1.5 * t / FPS)
    tracks = np.repeat(base[None], T, axis=0)
    for k in range(T):
        R = rotation(hinge, angle[k])
        tracks[k, moving] = (base[moving] - elbow) @ R.T + elbow
    tracks += (0.01 * t)[:, None, None] * np.array([1.0, 0, 0])
    return names, tracks, joints.height


def joint_error_cm(motion, names, truth) -> float:
    bones = motion.names
    W = motion.world()
    errs = []
    for j, b in HEADS.items():
        for s in "LR":
            errs.append(np.linalg.norm(W[:, bones.index(b.format(s=s)), :3, 3] - truth[:, names.index(j.format(s=s))], axis=1))
    return float(np.mean(errs) * 100)


def test_known_motion_recovered_exactly(sequence):
    names, tracks, height = sequence
    valid = np.ones(tracks.shape[:2], bool)
    motion, _ = motion_from_tracks(names, tracks, valid, FPS, height=height, smooth=False)
    assert joint_error_cm(motion, names, tracks) < 1.0
    # bone lengths are fixed over the sequence
    W = motion.world()
    fa, ha = motion.names.index("forearm.L"), motion.names.index("hand.L")
    lengths = np.linalg.norm(W[:, ha, :3, 3] - W[:, fa, :3, 3], axis=1)
    assert lengths.std() < 1e-6


def test_jitter_removed_without_lag(sequence):
    names, tracks, height = sequence
    rng = np.random.default_rng(3)
    noisy = tracks + rng.normal(0, 0.01, tracks.shape)
    valid = np.ones(tracks.shape[:2], bool)
    motion, smoothed = motion_from_tracks(names, noisy, valid, FPS, height=height)
    assert joint_error_cm(motion, names, tracks) < 3.0
    knee = names.index("knee_R")   # still relative to the body: its jitter must drop
    hips = [names.index("hip_L"), names.index("hip_R")]
    rel = lambda x: x[10:, knee] - x[10:, hips].mean(1)  # noqa: E731
    raw_err = np.linalg.norm(rel(noisy) - rel(tracks), axis=1).mean()
    smooth_err = np.linalg.norm(rel(smoothed) - rel(tracks), axis=1).mean()
    assert smooth_err < 0.6 * raw_err
    # the fast wrist: the smoothed track lags the truth by at most one frame
    w = names.index("wrist_L")
    truth = tracks[:, w, 1] - tracks[:, w, 1].mean()
    est = smoothed[:, w, 1] - smoothed[:, w, 1].mean()
    lags = range(0, 6)
    scores = [np.dot(truth[: len(truth) - lag], est[lag:]) for lag in lags]
    assert int(np.argmax(scores)) <= 1


def test_one_euro_follows_a_step_quickly():
    x = np.zeros((40, 1, 3))
    x[20:, 0, 0] = 0.5
    y = one_euro(x, FPS)
    assert y[22, 0, 0] > 0.35     # a fast 50 cm move is followed within two frames
    assert np.allclose(y[:20], 0)


def test_missing_frames_filled_and_marked(sequence):
    names, tracks, height = sequence
    valid = np.ones(tracks.shape[:2], bool)
    valid[20:24] = False
    gappy = tracks.copy()
    gappy[20:24] = 0.0
    motion, filled = motion_from_tracks(names, gappy, valid, FPS, height=height, smooth=False)
    assert motion.filled[20:24].all() and not motion.filled[:20].any()
    assert np.abs(filled[20:24] - tracks[20:24]).max() < 0.1   # interpolated, not zeros


def test_animate_command_on_bundles(shared_samples, tmp_path):
    """Three predicted bundles (one synthetic person, the middle frame empty) -> all outputs."""
    from engine.bundle import Bundle, write_bundle
    from engine.cli import main
    d = shared_samples / "person_101"
    maps = np.load(d / "gt_maps.npz")
    kp = np.array(json.loads((d / "keypoints.json").read_text())["keypoints"], np.float32)
    frames = tmp_path / "frames"
    for i in range(3):
        empty = i == 1
        mask = np.zeros_like(maps["mask"]) if empty else maps["mask"]
        h, w = mask.shape
        b = Bundle(image=np.zeros((h, w, 3), np.uint8), mask=mask, keypoints=kp, seg=maps["seg"],
                   normal=None, pointmap=maps["pointmap"], albedo=None, K=maps["K"])
        write_bundle(b, frames / f"f{i:03d}")
    assert main(["animate", str(frames), "--out", str(tmp_path / "anim"), "--rig", "mixamo"]) == 0
    out = tmp_path / "anim"
    summary = json.loads((out / "animation.json").read_text())
    assert summary["frames"] == 3 and summary["filled_frames"] == [1]
    frame = json.loads((out / "frames" / "000001.json").read_text())
    assert frame["filled"] is True and "mixamorig:LeftForeArm" in frame["bones"]
    bvh = (out / "animation.bvh").read_text()
    assert bvh.startswith("HIERARCHY") and "Frames: 3" in bvh
    from engine.formats.gltf import read_glb_json
    doc = read_glb_json(out / "animation.glb")
    assert len(doc["animations"]) == 1 and len(doc["skins"]) == 1


def encode_video(path, frames, fps):
    """Frames (T x H x W x 3 uint8) -> a near-lossless H.264 file with the static ffmpeg."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    h, w = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", macro_block_size=1,
                                         output_params=["-crf", "0", "-preset", "ultrafast"],
                                         pix_fmt_out="yuv444p")
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()


def test_video_frames_decode_in_order_with_their_rate(tmp_path):
    from engine.motion.animate import list_frames
    from engine.motion.video import decode_video
    T, h, w = 7, 48, 64
    y, x = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([(x * 4 + 20 * t) % 256, (y * 5) % 256, np.full_like(x, 30 * t)], -1)
                       for t in range(T)]).astype(np.uint8)
    video = tmp_path / "clip.mp4"
    encode_video(video, frames, fps=12)
    assert list_frames(video) == ("video", [video])
    paths, fps = decode_video(video, tmp_path / "frames")
    assert len(paths) == T and fps == pytest.approx(12.0)
    from PIL import Image
    decoded = np.stack([np.asarray(Image.open(p)) for p in paths])
    assert decoded.shape == frames.shape
    # colour conversion rounding only; a frame out of order would be off by 20+ levels
    assert np.abs(decoded.astype(int) - frames).mean() < 3.0
    assert decode_video(video, tmp_path / "two", max_frames=2)[0][-1].name == "000001.png"


def test_video_errors_are_clear(tmp_path, monkeypatch):
    import sys
    from engine.errors import InputImageError
    from engine.motion.video import decode_video
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    if _has_ffmpeg():
        with pytest.raises(InputImageError, match="broken.mp4"):
            decode_video(broken, tmp_path / "out")
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)     # as if not installed
    with pytest.raises(InputImageError, match="imageio-ffmpeg"):
        decode_video(broken, tmp_path / "out")
    with pytest.raises(InputImageError, match="no such video"):
        decode_video(tmp_path / "missing.mp4", tmp_path / "out")


def _has_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def test_animate_command_on_a_video(shared_samples, tmp_path, monkeypatch):
    """Video -> decoded frames -> (model passes replaced by the sample's exact predictions, after
    checking each decoded frame is the photo that was encoded) -> animation at the video's rate."""
    pytest.importorskip("imageio_ffmpeg")
    from PIL import Image
    import engine.motion.frames
    from engine.bundle import Bundle, write_bundle
    from engine.cli import main
    d = shared_samples / "person_101"
    maps = np.load(d / "gt_maps.npz")
    kp = np.array(json.loads((d / "keypoints.json").read_text())["keypoints"], np.float32)
    photo = np.asarray(Image.open(d / "image.png").convert("RGB"))
    video = tmp_path / "clip.mp4"
    encode_video(video, np.stack([photo] * 4), fps=24)
    seen = []

    def exact_predictions(photos, out_dir, **kwargs):   # per photo: its bundle (or why none)
        out = []
        for i, p in enumerate(photos):
            frame = np.asarray(Image.open(p).convert("RGB"))
            assert frame.shape == photo.shape and np.abs(frame.astype(int) - photo).mean() < 3.0
            seen.append(Path(p))
            b = Bundle(image=frame, mask=maps["mask"], keypoints=kp, seg=maps["seg"], normal=None,
                       pointmap=maps["pointmap"], albedo=None, K=maps["K"])
            out.append(write_bundle(b, Path(out_dir) / f"{i:06d}"))
        return out

    monkeypatch.setattr(engine.motion.frames, "predict_frames", exact_predictions)
    assert main(["animate", str(video), "--out", str(tmp_path / "anim")]) == 0
    summary = json.loads((tmp_path / "anim" / "animation.json").read_text())
    assert summary["frames"] == 4 and summary["fps"] == pytest.approx(24.0) and summary["filled_frames"] == []
    assert len(seen) == 4 and not seen[0].exists()          # decoded frames were temporary
