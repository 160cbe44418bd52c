"""Retargeting: a motion onto any skeleton, whatever its rest pose, bone rolls and proportions.

Every skeleton is a RestSkeleton: bone names, parents, and each bone's rest frame in its own world
(orthonormal axes + head position; any units, any up axis). The source's bones and the target's
are paired through the humanoid parts of engine.motion.bone_maps.

How a pose is carried over (docs/retarget.md):
1. Axes. The motion lives in the avatar frame (+Y up, the person faces +Z); the target's up and
   facing come from its rest pose (hips -> neck, left hip/shoulder -> right), snapped to the
   nearest world axis. One rotation G takes the one to the other.
2. A common reference pose. Walking the target's hierarchy from the root, each paired source
   bone is swung by the smallest rotation that lays its rest direction (head -> the head of the
   part that follows it: upper arm -> forearm, hand -> middle finger ...) along the target's, on
   top of its parent's swing: the source posed, joint by joint, into the target's rest pose. The
   constant C_b = (source bone in that pose)^-1 x (target bone at rest) ties the two bones'
   axes, rolls included.
3. Per frame (vectorised over frames): a paired target bone's world axes are the source bone's
   world axes times C_b, so its direction and its twist about itself follow the source's; a bone
   without a partner keeps its rest rotation relative to its parent. Heads follow from the
   target's own bone offsets; the hips travel with the source's hips scaled by the leg-length
   ratio (target legs / source legs), the source's ground origin landing on the target's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.errors import EngineError
from engine.motion.bone_maps import (CONTROL_SOURCE, HUMANOID_SET, convention_map, detect, direction_children,
                                      followers)

AXIS_SNAP_DEG = 25.0   # a rest facing this close to a world axis is taken as that axis


@dataclass
class RestSkeleton:
    """A skeleton at rest: parents come before children."""

    names: list[str]
    parents: np.ndarray                # B, -1 for roots
    rest: np.ndarray                   # B x 4 x 4 world frames (orthonormal axes, head position)
    tails: np.ndarray | None = None    # B x 3 bone ends, where the source format has them
    parts: dict[str, str] = field(default_factory=dict)  # bone -> humanoid part, where the file says

    def __post_init__(self) -> None:
        self.parents = np.asarray(self.parents, np.int64)
        self.rest = np.asarray(self.rest, np.float64)
        B = len(self.names)
        if self.parents.shape != (B,) or self.rest.shape != (B, 4, 4):
            raise EngineError(f"skeleton: {B} names but parents {self.parents.shape} and rest {self.rest.shape}")
        if B == 0:
            raise EngineError("skeleton has no bones")
        if np.any(self.parents >= np.arange(B)):
            raise EngineError("skeleton: every bone's parent must come before it")
        if len(set(self.names)) != B:
            raise EngineError("skeleton: bone names repeat")
        if not np.isfinite(self.rest).all():
            raise EngineError("skeleton: rest transforms are not finite")

    @property
    def heads(self) -> np.ndarray:
        return self.rest[:, :3, 3]

    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def rest_local(self) -> np.ndarray:
        """B x 4 x 4 rest frames relative to the parent (roots: to the world)."""
        local = self.rest.copy()
        has = self.parents >= 0
        local[has] = np.linalg.inv(self.rest[self.parents[has]]) @ self.rest[has]
        return local


def topological_order(parents: list[int] | np.ndarray) -> np.ndarray:
    """Indices with every parent before its children; a clear error on a cycle."""
    parents = [int(p) for p in parents]
    if all(p < b for b, p in enumerate(parents)):
        return np.arange(len(parents))      # already in order: keep it
    depth = [-1] * len(parents)
    for b in range(len(parents)):
        chain, p = [], b
        while p >= 0 and depth[p] < 0:
            if p in chain:
                raise EngineError("skeleton: the parent links form a cycle")
            chain.append(p)
            p = parents[p]
        d = depth[p] if p >= 0 else -1
        for q in reversed(chain):
            d += 1
            depth[q] = d
    return np.argsort(np.array(depth), kind="stable")


def reordered(names: list[str], parents: list[int], rest: np.ndarray, tails: np.ndarray | None = None,
              parts: dict | None = None) -> tuple[RestSkeleton, np.ndarray]:
    """A RestSkeleton from bones in any order; also the order used (new index -> old index)."""
    order = topological_order(parents)
    new_of_old = np.empty(len(order), np.int64)
    new_of_old[order] = np.arange(len(order))
    par = np.array([new_of_old[parents[o]] if parents[o] >= 0 else -1 for o in order], np.int64)
    sk = RestSkeleton([names[o] for o in order], par, np.asarray(rest)[order],
                      None if tails is None else np.asarray(tails)[order], dict(parts or {}))
    return sk, order


# --- rotations ----------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 1e-12, n, 1.0)


def swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction a to direction b (3 x 3)."""
    a, b = _unit(a), _unit(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1 + 1e-9:          # opposite: half a turn about any axis perpendicular to a
        axis = _unit(np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0]))
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def orthonormal(m: np.ndarray) -> np.ndarray:
    """Nearest rotation to each ... x 3 x 3 matrix (polar decomposition; scale and shear dropped)."""
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    flip = np.linalg.det(r) < 0
    if np.any(flip):
        u = u.copy()
        u[flip, :, -1] *= -1
        r = u @ vt
    return r


# --- the plan -----------------------------------------------------------------------------------
@dataclass
class RetargetPlan:
    """What ties a source skeleton to a target: computed once, applied to any number of frames."""

    source: RestSkeleton
    target: RestSkeleton
    source_of: np.ndarray          # B_t: paired source bone, or -1
    part_of: dict[str, str]        # target bone -> humanoid part (paired bones that have one)
    correction: np.ndarray         # B_t x 3 x 3: C_b
    axes: np.ndarray               # 3 x 3: G, source world -> target world
    scale: float                   # target legs / source legs
    hips: int                      # target bone that travels (-1: none): the body control, else the hips
    source_hips: int
    anchor: int                    # target bone whose head lands on the source's (scaled) hips head
    convention: str                # the target convention detected ("map" when a map was given)
    source_convention: str
    notes: list[str] = field(default_factory=list)
    followers: dict[str, str] = field(default_factory=dict)  # bone -> part, posed but not keyed

    @property
    def keyed(self) -> np.ndarray:
        """B_t bool: the bones a client keys (paired, not posed by the rig's own constraints)."""
        return (self.source_of >= 0) & ~np.isin(self.target.names, list(self.followers))

    def bone_map(self) -> dict[str, str]:
        """target bone -> source bone (keyed bones), for display and for saving."""
        keyed = self.keyed
        return {self.target.names[b]: self.source.names[s] for b, s in enumerate(self.source_of) if keyed[b]}


# the engine's rig tables (engine.options' `rig`) -> bone-map conventions
RIG_CONVENTIONS = {"rigify": "rigify", "mixamo": "mixamo", "game": "unreal"}


def _parts(sk: RestSkeleton, convention: str | None = None) -> tuple[str, dict[str, str]]:
    """(convention, humanoid part -> bone) of a skeleton: the convention asked for, else its own
    part labels when it carries them, else the convention detected from its names."""
    if convention:
        name = RIG_CONVENTIONS.get(convention, convention)
        return name, convention_map(name, sk.names)
    if sk.parts:
        return "file", {p: b for b, p in sk.parts.items() if p in HUMANOID_SET}
    return detect(sk.names)


def pair_bones(source: RestSkeleton, target: RestSkeleton, bone_map: dict[str, str] | None = None,
               target_convention: str | None = None) -> tuple[dict[str, str], dict[str, str], str, str, list[str]]:
    """(target bone -> source bone, target bone -> humanoid part, target convention, source
    convention, notes). bone_map: target bone -> humanoid part or source bone name;
    target_convention: read the target's names in this convention instead of detecting it."""
    source_convention, source_parts = _parts(source)
    source_bone_part = {b: p for p, b in source_parts.items()}
    # a control (the body) follows a source part of another name
    source_parts = source_parts | {c: source_parts[p] for c, p in CONTROL_SOURCE.items() if p in source_parts}
    notes: list[str] = []
    pairs: dict[str, str] = {}
    part_of: dict[str, str] = {}
    if bone_map is not None:
        target_convention = "map"
        known = set(target.names)
        unknown = [t for t in bone_map if t not in known]
        if unknown:
            raise EngineError(f"bone map names bones the target does not have: {', '.join(unknown[:8])}")
        source_names = set(source.names)
        for t, value in bone_map.items():
            if value in HUMANOID_SET:
                if value in source_parts:
                    pairs[t], part_of[t] = source_parts[value], value
                else:
                    notes.append(f"{t}: the motion has no {value}; left at rest")
            elif value in source_names:
                pairs[t] = value
                if value in source_bone_part:
                    part_of[t] = source_bone_part[value]
            elif value:
                raise EngineError(f"bone map: '{value}' (for {t}) is neither a humanoid part (hips, leftUpperArm, ...) "
                                  f"nor a bone of the motion")
    else:
        target_convention, target_parts = _parts(target, target_convention)
        for part, t in target_parts.items():
            if part in source_parts:
                pairs[t], part_of[t] = source_parts[part], part
        # bones outside the humanoid set (palms, heels, a second neck bone) pair by equal names
        used = set(pairs.values())
        source_index = set(source.names)
        for t in target.names:
            if t not in pairs and t in source_index and t not in used:
                pairs[t] = t
    if "hips" not in part_of.values():
        notes.append("no hips paired: the character does not travel")
    return pairs, part_of, target_convention, source_convention, notes


def _direction(sk: RestSkeleton, b: int, child: int | None) -> np.ndarray | None:
    if child is not None:
        d = sk.heads[child] - sk.heads[b]
    elif sk.tails is not None:
        d = sk.tails[b] - sk.heads[b]
    else:
        return None
    return d if np.linalg.norm(d) > 1e-9 else None


def _world_axes(target: RestSkeleton, parts: dict[str, int]) -> np.ndarray:
    """3 x 3 columns (left, up, forward) of the target's rest body, snapped to world axes."""
    heads = target.heads
    need = ("hips", "leftUpperLeg", "rightUpperLeg")
    if any(p not in parts for p in need):
        return np.eye(3)
    top = next((parts[p] for p in ("neck", "head", "upperChest", "chest", "spine") if p in parts), None)
    left = heads[parts["leftUpperLeg"]] - heads[parts["rightUpperLeg"]]
    if "leftUpperArm" in parts and "rightUpperArm" in parts:
        left = left + _unit(heads[parts["leftUpperArm"]] - heads[parts["rightUpperArm"]]) * np.linalg.norm(left)
    # rest poses stand upright: up is the world axis nearest hips -> neck (glTF's +Y without a torso)
    spine = heads[top] - heads[parts["hips"]] if top is not None else np.array([0.0, 1.0, 0.0])
    k = int(np.argmax(np.abs(spine)))
    up = np.zeros(3)
    up[k] = np.sign(spine[k])
    left = _unit(left - up * (left @ up))
    forward = np.cross(left, up)
    k = int(np.argmax(np.abs(forward)))
    if abs(forward[k]) > np.cos(np.radians(AXIS_SNAP_DEG)):
        forward = np.sign(forward[k]) * np.eye(3)[k]
        left = np.cross(up, forward)
    return np.stack([left, up, forward], 1)


def _leg_length(sk: RestSkeleton, parts: dict[str, int]) -> float | None:
    total = []
    for s in ("left", "right"):
        chain = [parts.get(f"{s}UpperLeg"), parts.get(f"{s}LowerLeg"), parts.get(f"{s}Foot")]
        if None not in chain:
            h = sk.heads[chain]
            total.append(np.linalg.norm(h[1] - h[0]) + np.linalg.norm(h[2] - h[1]))
    return float(np.mean(total)) if total else None


def plan_retarget(source: RestSkeleton, target: RestSkeleton, bone_map: dict[str, str] | None = None, *,
                  target_convention: str | None = None, source_axes: np.ndarray | None = None) -> RetargetPlan:
    """Pair the bones and compute the constant corrections (steps 1 and 2 of the module doc).

    target_convention: a bone-map convention (or an engine rig table name) for the target's names;
    source_axes: 3 x 3 columns (left, up, forward) of the source's world; default the avatar
    frame's (+X left, +Y up, +Z forward)."""
    pairs, part_of, convention, source_convention, notes = pair_bones(source, target, bone_map, target_convention)
    if not pairs:
        raise EngineError("no bone of the target pairs with a bone of the motion: give a bone map")
    t_index, s_index = target.index(), source.index()
    B = len(target.names)
    source_of = np.full(B, -1, np.int64)
    for t, s in pairs.items():
        source_of[t_index[t]] = s_index[s]
    target_part_bone = {p: t_index[t] for t, p in part_of.items()}
    source_part_bone = {p: int(source_of[b]) for p, b in target_part_bone.items()}
    # constraint-driven bones posed like a part (a generated Rigify rig's ORG- bones)
    follow = {t: p for t, p in followers(target.names).items() if p in source_part_bone}
    follower_part_bone = {p: t_index[t] for t, p in follow.items()}
    for t, p in follow.items():
        source_of[t_index[t]] = source_part_bone[p]

    G = _world_axes(target, target_part_bone) @ (np.eye(3) if source_axes is None else np.asarray(source_axes)).T
    src_rot = G @ source.rest[:, :3, :3]
    src_heads = source.heads @ G.T
    tgt_rot = target.rest[:, :3, :3]
    target_tails = target.tails is not None

    swing_of = np.tile(np.eye(3), (B, 1, 1))      # D_b: the source posed into the target's rest
    correction = np.tile(np.eye(3), (B, 1, 1))
    for b in range(B):
        p = target.parents[b]
        inherited = swing_of[p] if p >= 0 else np.eye(3)
        s = source_of[b]
        if s < 0:
            swing_of[b] = inherited
            continue
        name = target.names[b]
        part, bones_of = (follow[name], follower_part_bone) if name in follow else (part_of.get(name), target_part_bone)
        measured = b
        if bones_of is target_part_bone and part in follower_part_bone:
            # a control the rig poses another bone like (spine_fk -> ORG-spine) takes that bone's
            # direction: the control may point the other way (down from the torso's pivot)
            measured, bones_of = follower_part_bone[part], follower_part_bone
        child = next((c for c in direction_children(part) if c in bones_of and c in source_part_bone), None) \
            if part else None
        # a control that carries the whole body turns with its source part from their rests (no swing)
        d_t = None if part in CONTROL_SOURCE else _direction(target, measured, bones_of[child] if child else None)
        if child:
            d_s = src_heads[source_part_bone[child]] - src_heads[s]
        else:
            d_s = (source.tails[s] @ G.T - src_heads[s]) if source.tails is not None and target_tails else None
        D = inherited
        if d_t is not None and d_s is not None and np.linalg.norm(d_s) > 1e-9:
            D = swing(inherited @ d_s, d_t) @ inherited
        swing_of[b] = D
        correction[b] = (D @ src_rot[s]).T @ tgt_rot[b]

    scale = 1.0
    legs_t, legs_s = _leg_length(target, target_part_bone), _leg_length(source, source_part_bone)
    if legs_t and legs_s:
        scale = legs_t / legs_s
    else:
        notes.append("legs not paired on both sides: root motion is not scaled")
    hips = target_part_bone.get("body", target_part_bone.get("hips", -1))
    # the pelvis: the bone the rig poses like the hips (a generated Rigify rig's ORG-spine), else the
    # hips bone; the travelling bone (a body control sits elsewhere) is placed so its head lands
    # where the source's hips are
    anchor = follower_part_bone.get("hips", target_part_bone.get("hips", hips))
    if hips < 0 or not _descends(target.parents, anchor, hips):
        anchor = hips
    return RetargetPlan(source, target, source_of, part_of, correction, G, scale, hips,
                        source_part_bone.get("hips", -1), anchor, convention, source_convention, notes, follow)


def _descends(parents: np.ndarray, b: int, ancestor: int) -> bool:
    while b >= 0:
        if b == ancestor:
            return True
        b = int(parents[b])
    return False


# --- applying it --------------------------------------------------------------------------------
@dataclass
class RetargetResult:
    """The target's pose per frame, in the forms clients ask for."""

    plan: RetargetPlan
    world: np.ndarray              # T x B x 4 x 4 target bone frames (target world)
    fps: float

    def local(self) -> np.ndarray:
        """T x B x 4 x 4 relative to the parent bone (roots: world), as glTF nodes hold them."""
        parents = self.plan.target.parents
        out = self.world.copy()
        has = parents >= 0
        out[:, has] = _inverse_rigid(self.world[:, parents[has]]) @ self.world[:, has]
        return out

    def basis(self) -> np.ndarray:
        """T x B x 4 x 4 pose relative to the rest, in the bone's own rest axes: rest_local^-1 x
        local (Blender's pose-bone matrix_basis, Maya's rotation under the joint orient)."""
        return _inverse_rigid(self.plan.target.rest_local())[None] @ self.local()


def _inverse_rigid(m: np.ndarray) -> np.ndarray:
    out = np.zeros_like(m)
    rt = np.swapaxes(m[..., :3, :3], -1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -(rt @ m[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def retarget(plan: RetargetPlan, source_world: np.ndarray, fps: float = 30.0) -> RetargetResult:
    """Source bone frames per frame (T x B_s x 4 x 4, source world) -> the target's (step 3)."""
    source_world = np.asarray(source_world, np.float64)
    if source_world.ndim != 4 or source_world.shape[1:] != (len(plan.source.names), 4, 4):
        raise EngineError(f"motion frames have shape {source_world.shape}; the source skeleton has "
                          f"{len(plan.source.names)} bones (expected T x {len(plan.source.names)} x 4 x 4)")
    target = plan.target
    T, B = len(source_world), len(target.names)
    G = plan.axes
    rest_local = target.rest_local()
    rot = np.empty((T, B, 3, 3))
    pos = np.empty((T, B, 3))
    # the paired bones' world axes all at once: G x source axes x C_b
    paired = np.flatnonzero(plan.source_of >= 0)
    rot[:, paired] = G @ source_world[:, plan.source_of[paired], :3, :3] @ plan.correction[paired]
    travel = plan.scale * source_world[:, plan.source_hips, :3, 3] @ G.T if plan.hips >= 0 else None
    for b in range(B):                       # one step per bone, vectorised over frames
        p = target.parents[b]
        if plan.source_of[b] < 0:
            rot[:, b] = rest_local[b, :3, :3] if p < 0 else rot[:, p] @ rest_local[b, :3, :3]
        if b == plan.hips:
            pos[:, b] = travel
        elif p < 0:
            pos[:, b] = target.heads[b]
        else:
            pos[:, b] = pos[:, p] + rot[:, p] @ rest_local[b, :3, 3]
    if plan.anchor != plan.hips:
        # the body control travels so that the pelvis below it is where the source's hips are
        carried = np.zeros(B, bool)
        for b in range(B):
            carried[b] = b == plan.hips or (target.parents[b] >= 0 and carried[target.parents[b]])
        pos[:, carried] += (travel - pos[:, plan.anchor])[:, None]
    world = np.zeros((T, B, 4, 4))
    world[..., :3, :3] = rot
    world[..., :3, 3] = pos
    world[..., 3, 3] = 1.0
    return RetargetResult(plan, world, fps)
