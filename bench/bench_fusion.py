"""Two photos of one person (front and back) fused into one closed solid, against the truth.

Usage: .venv/bin/python bench/bench_fusion.py [--size 768x1024] [--people 3] [--swap-sides]

Held-out engine.synthetic people (seeds 101..) are rendered from the front and, with the same
pose, from behind (yaw 180 deg, its own camera). Each view's joints are lifted from its
keypoints (engine.rig.lift); geometry.fusion registers the back view into the front camera
(joint fit, then ICP) and closes the union. --swap-sides names the back view's keypoints by
image side (left <-> right swapped), as a pose model that does not see the person's back may.
Printed per person, exact and degraded maps (engine.synthetic.degrade + 2 px flying rim, seeded
per view): Chamfer to the whole true body (as bench_closed.py), the one-photo closed solid's
for comparison, the registration error (back camera's true pose vs the found one) and seconds.
Nothing is asserted; the machine is shared, times are indicative.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def view_of(render, *, swap_sides: bool = False):
    from engine.geometry.fusion import View, swap_sides as swap
    from engine.rig.lift import lift_joints

    joints = lift_joints(render.keypoints, render.pointmap, render.seg, render.K, mask=render.mask)
    named = {n: (joints.positions[i], float(joints.confidence[i])) for i, n in enumerate(joints.names)}
    if swap_sides:
        named = {swap(n): v for n, v in named.items()}
    return View(render.pointmap, render.mask, render.K, render.normal, render.seg, named)


def true_back_to_front(front, back) -> np.ndarray:
    """4 x 4: the back camera's frame -> the front camera's (both from the body frame)."""
    return front.camera.body_to_camera @ np.linalg.inv(back.camera.body_to_camera)


def main() -> None:
    from bench_closed import build_closed, closed_metrics, truth_of

    from engine.geometry.fusion import fuse_views
    from engine.synthetic import degrade, make_person, render

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="768x1024")
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--swap-sides", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    poses = ["bent", "arms_forward", None, "step", None, "apose"]
    print(f"two views fused, {width} x {height}, back view sides swapped: {args.swap_sides}")
    for i in range(args.people):
        seed, pose = 101 + i, poses[i % len(poses)]
        front = make_person(seed, pose=pose, width=width, height=height)
        back = render(front.posed, width, height, yaw_deg=180.0)
        truth = truth_of(front)
        truth_T = true_back_to_front(front, back)
        for case in ("exact", "degraded"):
            f, b = (front, back) if case == "exact" else (
                degrade(front, seed=seed, flying_rim_px=2.0), degrade(back, seed=seed + 1000, flying_rim_px=2.0))
            start = time.perf_counter()
            fused = fuse_views([view_of(f), view_of(b, swap_sides=args.swap_sides)])
            seconds = time.perf_counter() - start
            m = closed_metrics(truth, fused.vertices, fused.faces)
            single, _ = build_closed(f, detail="normals", resolution="full")
            one = closed_metrics(truth, single.vertices, single.faces)
            T = fused.transforms[1]
            angle = np.degrees(np.arccos(np.clip((np.trace(T[:3, :3].T @ truth_T[:3, :3]) - 1) / 2, -1, 1)))
            seen = b.pointmap[b.mask]  # the back view's points: how far the found pose moves them from the true one
            shift = np.linalg.norm((seen @ T[:3, :3].T + T[:3, 3]) - (seen @ truth_T[:3, :3].T + truth_T[:3, 3]), axis=1).mean()
            reg = fused.stats["views"][1]
            print(f"{pose or 'random'}-{seed:<4d} {case:9s} fused chamfer {m['chamfer_cm']:.3f} cm (volume {m['volume_ratio']:.3f}, "
                  f"watertight {m['watertight']}, inward {m['inward']:.4f})  one photo {one['chamfer_cm']:.3f} cm  "
                  f"registration {angle:.2f} deg, back points moved {shift * 100:.2f} cm from the truth (joints "
                  f"{reg['joint_residual_m'] * 100:.1f} cm rms, sides swapped {reg['sides_swapped']})  {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
