"""Foot skate before and after the feet clean-up (engine.motion.feet) on engine.synthetic motions
whose stance feet truly stay put (engine/synthetic/grounded.py). Prints figures, no assertions.

Per motion and view: frames rendered, predictions exact or degraded (pointmap noise 1 cm,
keypoints 3 px), animate run with --feet off and --feet lock; skate = mean horizontal slide of
the ankle, heel and toes in the frames where the ground truth says the foot stands (this frame
and the last), mm per frame, measured on the animation's per-frame joints (frames/*.json).

    .venv/bin/python bench/bench_feet.py [--frames 45] [--motions walk_line,turn] [--exact]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def skate_mm(joints: np.ndarray, names: list[str], contacts: np.ndarray) -> float:
    from engine.motion.contacts import foot_skate_mm
    return foot_skate_mm(joints, names, contacts)


def main() -> None:
    from engine.bundle import write_bundle
    from engine.motion.animate import animate_frames
    from engine.synthetic import degrade, make_motion, make_sequence, to_bundle

    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=45)
    ap.add_argument("--motions", default="walk_line,turn,squat,jump,side_step")
    ap.add_argument("--views", default="0,35", help="yaw of the person to the camera, degrees")
    ap.add_argument("--exact", action="store_true", help="exact predictions (default: degraded)")
    args = ap.parse_args()
    fps = 30.0
    print(f"{'motion':10s} {'yaw':>4s}  skate mm/frame: truth  off  lock   (contact frames L/R, seconds)")
    for motion in args.motions.split(","):
        for yaw in (float(v) for v in args.views.split(",")):
            t0 = time.perf_counter()
            track = make_motion(args.frames, motion, fps=fps, width=256, height=384, yaw_deg=yaw)
            frames = make_sequence(args.frames, motion, fps=fps, width=256, height=384, yaw_deg=yaw)
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                for i, f in enumerate(frames):
                    write_bundle(to_bundle(f if args.exact else degrade(f, seed=i)), tmp / "b" / f"{i:04d}")
                figures = []
                for feet in ("off", "lock"):
                    anim = animate_frames(tmp / "b", tmp / feet, fps=fps, feet=feet)
                    docs = [json.loads((anim / "frames" / f"{i:06d}.json").read_text()) for i in range(args.frames)]
                    names = list(docs[0]["joints"])
                    joints = np.array([[d["joints"][n] for n in names] for d in docs])
                    figures.append(skate_mm(joints, names, track.contacts))
            truth_names = ["ankle_L", "heel_L", "toe_L", "ankle_R", "heel_R", "toe_R"]
            truth = np.stack([track.joint(n) for n in truth_names], 1)
            up, _ = track.ground_camera()
            from engine.motion.contacts import foot_skate_mm
            t_names = ["ankle_L", "heel_L", "big_toe_L", "ankle_R", "heel_R", "big_toe_R"]
            truth_skate = foot_skate_mm(truth, t_names, track.contacts, up)
            print(f"{motion:10s} {yaw:4.0f}  {truth_skate:20.2f} {figures[0]:5.1f} {figures[1]:5.1f}   "
                  f"({int(track.contacts[:, 0].sum())}/{int(track.contacts[:, 1].sum())}, "
                  f"{time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
