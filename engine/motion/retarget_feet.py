"""Feet that stay planted on the retargeted character.

Retargeting carries bone directions over; the hips travel by the leg-length ratio. A character
whose legs are proportioned like the motion's (all leg bones scaled alike) then stands where the
motion stood, but one with other thigh-to-shin proportions, or a wider pelvis, slides its feet
while the motion's stand still. With the motion's foot contacts (animate's `--feet lock` writes
them per frame), what each planted ankle of the target does beyond the motion's own ankle (scaled
like the root) is held on its median through the contact run (easing in and out,
engine.motion.feet), so the foot slides, rolls and lifts only as the motion's does, and the leg is
re-solved by the same two-bone IK (a goal beyond the straight leg lifts the foot); the turns
are put into the motion's thigh and shin rotations and the motion retargeted again, so every
bone that plays or follows those parts (a Rigify rig's ORG- bones) moves with them. Foot skate on
the target is reported before and after (mm per frame when the character is in metres).
"""

from __future__ import annotations

import numpy as np

from engine.motion.contacts import SIDES, contact_runs, skate_mm
from engine.motion.feet import leg_turns, lock_planted
from engine.motion.retarget import RetargetPlan, RetargetResult, retarget

LEG = ("UpperLeg", "LowerLeg", "Foot")
SIDE_WORDS = ("left", "right")     # contacts are [left, right], as SIDES


def _bones_of_parts(plan: RetargetPlan) -> dict[str, int]:
    index = plan.target.index()
    return {part: index[bone] for bone, part in plan.part_of.items()}


def foot_points(plan: RetargetPlan, world: np.ndarray) -> list[np.ndarray]:
    """[left, right] T x P x 3: the target's points that move with each foot (foot and toes heads)."""
    bones = _bones_of_parts(plan)
    out = []
    for side in SIDE_WORDS:
        picked = [bones[p] for p in (f"{side}Foot", f"{side}Toes") if p in bones]
        out.append(world[:, picked][..., :3, 3] if picked else np.zeros((len(world), 0, 3)))
    return out


def target_skate_mm(plan: RetargetPlan, result: RetargetResult, contact: np.ndarray) -> float:
    up = plan.axes @ np.array([0.0, 1.0, 0.0])
    return skate_mm(foot_points(plan, result.world), contact, up)


def lock_target_feet(plan: RetargetPlan, source_world: np.ndarray, result: RetargetResult,
                     contact: np.ndarray) -> tuple[RetargetResult, dict]:
    """(the result with planted feet, report). contact: T x 2 bool [left, right] of the motion."""
    contact = np.asarray(contact, bool)
    bones = _bones_of_parts(plan)
    before = target_skate_mm(plan, result, contact)
    source_world = np.array(source_world, np.float64, copy=True)
    G = plan.axes
    locked = {}
    for k, side in enumerate(SIDE_WORDS):
        legs = [bones.get(side + p) for p in LEG]
        if None in legs or not contact[:, k].any():
            continue
        th, sh, ft = legs
        H, K, A = (result.world[:, b, :3, 3] for b in legs)
        # what the target's ankle does beyond the motion's own ankle (scaled like the root): held
        # still through each contact run, so the foot slides, rolls and lifts exactly as the
        # motion's does (a uniformly scaled character is left as it is)
        own = plan.scale * source_world[:, plan.source_of[ft], :3, 3] @ G.T
        held, moved = lock_planted(A - own, contact[:, k])
        if not moved.any():
            continue
        goal = own + held
        goal = _within_reach(goal, H, K, A, G[:, 1])
        S1, S21, _, _ = leg_turns(H[moved], K[moved], A[moved], goal[moved])
        # the target's world turns in the motion's world: R_source <- G^T S G R_source
        for b, S in ((th, S1), (sh, S21)):
            s = plan.source_of[b]
            source_world[moved, s, :3, :3] = G.T @ S @ G @ source_world[moved, s, :3, :3]
        locked[SIDES[k]] = int(moved.sum())
    if not locked:
        return result, {"locked": False, "note": "no leg of the character stands in the motion's contacts"}
    planted = retarget(plan, source_world, result.fps)
    after = target_skate_mm(plan, planted, contact)
    return planted, {
        "locked": True,
        "contact_frames": {side: [[int(a), int(b)] for a, b in contact_runs(contact[:, k])]
                           for k, side in enumerate(SIDES)},
        "frames_moved": locked,
        "skate_mm_per_frame": {"before": _rounded(before), "after": _rounded(after)},
    }


def _within_reach(goal: np.ndarray, hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Goals beyond the straight leg raised along `up` until the leg reaches them: the foot keeps
    its spot on the floor and lifts (the hips are not lowered)."""
    reach = 0.9999 * (np.median(np.linalg.norm(knee - hip, axis=1)) + np.median(np.linalg.norm(ankle - knee, axis=1)))
    d = goal - hip
    along = d @ up
    disc = along ** 2 - (d * d).sum(1) + reach ** 2
    lift = np.where(((d * d).sum(1) > reach ** 2) & (disc >= 0), -along + np.sqrt(np.maximum(disc, 0.0)), 0.0)
    return goal + lift[:, None] * up


def _rounded(v: float):
    return None if not np.isfinite(v) else round(float(v), 3)
