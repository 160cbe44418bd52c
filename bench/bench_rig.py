"""Rig timings: lifting + skeleton + skin weights on a ~300k-vertex mesh, and seconds per frame
for animation without the model passes. Prints figures (no assertions).

Uses ../shared/samples/person_101 (subdivided to ~300k vertices) when present."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
REPEATS = 3
sys.path.insert(0, str(REPO))


def main() -> None:
    import trimesh
    from engine.rig import rig_from_joints
    from engine.motion.animate import motion_from_tracks
    from engine.rig.lift import lift_joints

    d = REPO.parent / "shared" / "samples" / "person_101"
    maps = dict(np.load(d / "gt_maps.npz"))      # decompressed once: lifting is timed, not npz reads
    kp = np.array(json.loads((d / "keypoints.json").read_text())["keypoints"], np.float64)
    mesh = trimesh.load(d / "gt_mesh.ply", process=False)
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    while len(v) < 300_000:
        v, f = trimesh.remesh.subdivide(v, f)
    uv = v @ maps["K"].T
    col = np.clip((uv[:, 0] / uv[:, 2]).astype(int), 0, maps["seg"].shape[1] - 1)
    row = np.clip((uv[:, 1] / uv[:, 2]).astype(int), 0, maps["seg"].shape[0] - 1)
    labels = maps["seg"][row, col]
    M = np.diag([1.0, -1.0, -1.0, 1.0])
    va = v * [1, -1, -1]
    print(f"mesh: {len(v)} vertices, {len(f)} faces")
    rig_from_joints(lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"]),
                    va, f, labels, M)                                   # warm-up: imports, caches
    # the machine is shared: each figure is the best of REPEATS runs (CPU seconds beside it)
    for rest in ("photo", "tpose"):
        runs = []
        for _ in range(REPEATS):
            t0, c0 = time.perf_counter(), time.process_time()
            joints = lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"])
            t1 = time.perf_counter()
            rig_from_joints(joints, va, f, labels, M, rest_pose=rest)
            t2, c2 = time.perf_counter(), time.process_time()
            runs.append((t2 - t0, t1 - t0, t2 - t1, c2 - c0))
        total, lift, rig, cpu = min(runs)
        print(f"rest={rest}: lifting {lift:.3f} s, skeleton + weights {rig:.3f} s, total {total:.3f} s "
              f"(best of {REPEATS}; cpu {cpu:.3f} s; median total {np.median([r[0] for r in runs]):.3f} s)")

    T = 120
    t0 = time.perf_counter()
    frames = [lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"]) for _ in range(10)]
    t_lift = (time.perf_counter() - t0) / 10
    # a frame as animate sees it: read the predictions bundle from disk, then lift
    import tempfile
    from engine.bundle import Bundle, read_bundle, write_bundle
    from engine.motion.frames import read_frame
    with tempfile.TemporaryDirectory() as tmp:
        h, w = maps["mask"].shape
        write_bundle(Bundle(image=np.zeros((h, w, 3), np.uint8), mask=maps["mask"], keypoints=kp.astype(np.float32),
                            seg=maps["seg"], normal=None, pointmap=maps["pointmap"], albedo=None, K=maps["K"]),
                     Path(tmp) / "frame")
        t0 = time.perf_counter()
        for _ in range(10):
            read_frame(Path(tmp) / "frame")
        t_read_lift = (time.perf_counter() - t0) / 10
    base = frames[0].positions * [1, -1, -1]
    tracks = base[None] + np.random.default_rng(0).normal(0, 0.01, (T,) + base.shape)
    t0 = time.perf_counter()
    motion_from_tracks(frames[0].names, tracks, np.ones(tracks.shape[:2], bool), 30.0, height=frames[0].height,
                       feet="off")
    t_motion = (time.perf_counter() - t0) / T
    from engine.motion.feet import lock_feet
    t0 = time.perf_counter()
    for _ in range(REPEATS):
        lock_feet(tracks, frames[0].names, 30.0)
    t_feet = (time.perf_counter() - t0) / REPEATS / T
    print(f"animation per frame (no model passes): lifting {t_lift * 1000:.1f} ms (bundle read + lifting "
          f"{t_read_lift * 1000:.1f} ms) + smoothing/skeleton/rotations {t_motion * 1000:.1f} ms = "
          f"{(t_read_lift + t_motion) * 1000:.1f} ms")
    print(f"feet lock (ground, contacts, locked feet, leg IK on the joints): {t_feet * 1000:.2f} ms per frame")

if __name__ == "__main__":
    main()
