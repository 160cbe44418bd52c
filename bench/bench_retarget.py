"""Retargeting accuracy and speed on engine.synthetic motions with known joint tracks.

    .venv/bin/python bench/bench_retarget.py [--frames 60] [--timing-frames 1000]

Accuracy (issue 12): same proportions with another rest pose (T-pose, A-pose), random bone rolls
and other names: world joint positions of the retargeted character against the source's (goal:
< 1 cm mean); a character 20% taller with 15% longer arms: bone directions (goal: < 2 degrees
mean). Feet: foot skate of the character on grounded motions before and after locking its feet
(engine/motion/retarget_feet.py). Speed: planning + retargeting N frames onto the rigify-named 67-bone character and onto a
Mixamo-named one (goal: 1,000 frames under 1 s), and writing the GLB.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.motion.bone_maps import direction_children
from engine.motion.retarget import plan_retarget, retarget
from engine.motion.retarget_synthetic import character, humanoid_parts, synthetic_motion, without_parts

CASES = [
    ("T-pose, random rolls", dict(rest_pose="tpose", roll_seed=1)),
    ("A-pose, random rolls, Mixamo names", dict(rest_pose="apose", roll_seed=2, names="mixamo")),
    ("T-pose, random rolls, Unreal names", dict(rest_pose="tpose", roll_seed=3, names="unreal")),
    ("A-pose, random rolls, VRM names", dict(rest_pose="apose", roll_seed=4, names="vrm")),
]
TALL = ("20% taller, arms +15%, T-pose, rolls, Mixamo", dict(rest_pose="tpose", roll_seed=5, scale=1.2,
                                                            arm_scale=1.15, names="mixamo"))
EXTREMITIES = ("leftHand", "rightHand", "leftFoot", "rightFoot")
FEET_CASES = (("20% taller", dict(rest_pose="tpose", roll_seed=5, scale=1.2, names="mixamo")),
              ("shins +25%", dict(rest_pose="tpose", roll_seed=5, shin_scale=1.25, names="mixamo")),
              ("x1.1, shins -20%", dict(rest_pose="apose", roll_seed=7, scale=1.1, shin_scale=0.8, names="unreal")))


def position_errors_cm(source, result, scale=1.0) -> tuple[np.ndarray, list[str]]:
    sp, tp = humanoid_parts(source.skeleton), humanoid_parts(result.plan.target)
    common = [p for p in sp if p in tp]
    s = source.world[:, [sp[p] for p in common]][..., :3, 3] * scale
    t = result.world[:, [tp[p] for p in common]][..., :3, 3]
    return np.linalg.norm(s - t, axis=-1) * 100, common


def direction_errors_deg(source, result) -> np.ndarray:
    sp, tp = humanoid_parts(source.skeleton), humanoid_parts(result.plan.target)
    out = []
    for p in sp:
        c = next((c for c in direction_children(p) if c in sp and c in tp), None)
        if p not in tp or c is None:
            continue
        ds = source.world[:, sp[c], :3, 3] - source.world[:, sp[p], :3, 3]
        dt = result.world[:, tp[c], :3, 3] - result.world[:, tp[p], :3, 3]
        cos = (ds * dt).sum(-1) / np.linalg.norm(ds, axis=-1) / np.linalg.norm(dt, axis=-1)
        out.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return np.stack(out, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--timing-frames", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    print("accuracy (exact synthetic motions, mean / max over frames and joints)")
    for kind in ("walk", "wave", "kick"):
        source = synthetic_motion(kind, args.frames)
        for label, kw in CASES:
            target = character(source.skeleton, **kw)
            result = retarget(plan_retarget(source.skeleton, target), source.world, source.fps)
            err, common = position_errors_cm(source, result)
            ext = err[:, [common.index(p) for p in EXTREMITIES]]
            print(f"  {kind:5s} {label:38s} joints {err.mean():.2e} / {err.max():.2e} cm; hands+feet "
                  f"{ext.mean():.2e} cm  ({len(common)} joints)")
        label, kw = TALL
        target = character(source.skeleton, **kw)
        plan = plan_retarget(source.skeleton, target)
        result = retarget(plan, source.world, source.fps)
        ang = direction_errors_deg(source, result)
        err, _ = position_errors_cm(source, result, plan.scale)
        print(f"  {kind:5s} {label:38s} directions {ang.mean():.2e} / {ang.max():.2e} deg ({ang.shape[1]} bones); "
              f"root scale {plan.scale:.3f}; joints vs scaled source {err.mean():.1f} cm (longer arms)")
        # other topology: no upper chest, no shoulders, no middle finger joints (children re-hung)
        dropped = ("upperChest", "leftShoulder", "rightShoulder") + tuple(
            f"{s}{f}Intermediate" for s in ("left", "right") for f in ("Index", "Middle", "Ring", "Little"))
        target = without_parts(character(source.skeleton, rest_pose="tpose", roll_seed=6, names="mixamo"), dropped)
        result = retarget(plan_retarget(source.skeleton, target), source.world, source.fps)
        err, common = position_errors_cm(source, result)
        ext = err[:, [common.index(p) for p in EXTREMITIES]]
        print(f"  {kind:5s} {'fewer bones (upper chest, shoulders, finger joints)':38s} joints {err.mean():.2e} / "
              f"{err.max():.2e} cm; hands+feet {ext.mean():.2e} cm ({len(target.names)} bones)")

    print("\nfeet on the character (grounded motions with their true contacts; foot skate, mm per frame, "
          "of the character's foot and toe heads in contact frames: retargeted -> feet locked)")
    from engine.motion.retarget_feet import lock_target_feet
    for kind in ("walk_line", "turn", "squat", "jump", "side_step"):
        source = synthetic_motion(kind, args.frames)
        row = []
        for label, kw in FEET_CASES:
            target = character(source.skeleton, **kw)
            plan = plan_retarget(source.skeleton, target)
            result = retarget(plan, source.world, source.fps)
            planted, report = lock_target_feet(plan, source.world, result, source.contact)
            skate = report["skate_mm_per_frame"]
            ang = direction_errors_deg(source, planted)
            row.append(f"{label} {skate['before']:.2f} -> {skate['after']:.2f} (directions {ang.mean():.2f} deg)")
        print(f"  {kind:9s} " + "; ".join(row))

    print(f"\nspeed ({args.timing_frames} frames; best of {args.repeats})")
    base = synthetic_motion("walk", 100)
    reps = -(-args.timing_frames // len(base.world))
    world = np.concatenate([base.world] * reps)[: args.timing_frames]
    for label, kw in (("rigify names, T-pose", dict(rest_pose="tpose", roll_seed=1)),
                      ("Mixamo names, A-pose", dict(rest_pose="apose", roll_seed=2, names="mixamo"))):
        target = character(base.skeleton, **kw)
        plans, runs, bases = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            plan = plan_retarget(base.skeleton, target)
            t1 = time.perf_counter()
            result = retarget(plan, world, base.fps)
            t2 = time.perf_counter()
            result.basis()
            t3 = time.perf_counter()
            plans.append(t1 - t0)
            runs.append(t2 - t1)
            bases.append(t3 - t2)
        print(f"  {label:24s} {len(target.names)} bones: plan {min(plans) * 1000:.1f} ms, retarget "
              f"{min(runs) * 1000:.1f} ms, local/rest-relative curves {min(bases) * 1000:.1f} ms "
              f"(total {(min(plans) + min(runs) + min(bases)) * 1000:.1f} ms)")
    grounded = synthetic_motion("walk_line", 100)
    reps = -(-args.timing_frames // len(grounded.world))
    g_world = np.concatenate([grounded.world] * reps)[: args.timing_frames]
    g_contact = np.concatenate([grounded.contact] * reps)[: args.timing_frames]
    target = character(grounded.skeleton, rest_pose="tpose", roll_seed=5, shin_scale=1.25, names="mixamo")
    plan = plan_retarget(grounded.skeleton, target)
    result = retarget(plan, g_world, grounded.fps)
    locks = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        lock_target_feet(plan, g_world, result, g_contact)
        locks.append(time.perf_counter() - t0)
    print(f"  feet lock on the character (walk_line, shins +25%): {min(locks) * 1000:.1f} ms (IK + a second retarget pass)")
    from engine.motion.retarget_gltf import write_glb
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_glb(Path(tmp) / "a.glb", result)
        print(f"  GLB of {len(world)} frames x {len(target.names)} bones written in "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms ({(Path(tmp) / 'a.glb').stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
