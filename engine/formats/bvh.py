"""animation.bvh: the motion as a BVH hierarchy with world-aligned rest axes (the format's
convention), metres, +Y up; the root has position and rotation channels, every other joint
rotations (Z X Y order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.formats.scene import Scene

MOTION_FILE = "animation.bvh"


def euler_zxy_degrees(R: np.ndarray) -> np.ndarray:
    """... x 3 x 3 -> ... x 3 (z, x, y) degrees with R = Rz @ Rx @ Ry (BVH channel order)."""
    x = np.arcsin(np.clip(R[..., 2, 1], -1, 1))
    z = np.arctan2(-R[..., 0, 1], R[..., 1, 1])
    y = np.arctan2(-R[..., 2, 0], R[..., 2, 2])
    return np.degrees(np.stack([z, x, y], -1))


def _rest_frame(scene: Scene) -> int:
    """The frame whose pose is the BVH rest: the first one not filled in from its neighbours."""
    filled = np.asarray(scene.animation.frame_data.get("filled", np.zeros(scene.animation.frames, bool)), bool)
    return int(np.flatnonzero(~filled)[0]) if (~filled).any() else 0


def write_motion(scene: Scene, out_dir: Path) -> dict[str, str]:
    skeleton, animation = scene.skeleton, scene.animation
    names, parents = skeleton.names, skeleton.parents
    heads = skeleton.heads
    # without bone tails the leaves end where they start (a zero End Site offset)
    tails = skeleton.tails if skeleton.tails is not None else heads
    W = animation.world(parents)
    rest_rot = W[_rest_frame(scene), :, :3, :3]
    delta = W[:, :, :3, :3] @ np.swapaxes(rest_rot, -1, -2)[None]  # world rotation from rest
    local = delta.copy()
    has = parents >= 0
    local[:, has] = np.swapaxes(delta[:, parents[has]], -1, -2) @ delta[:, has]
    children = {b: [c for c in range(len(names)) if parents[c] == b] for b in range(len(names))}
    lines = ["HIERARCHY"]

    def emit(b: int, depth: int) -> None:
        pad = "  " * depth
        off = heads[b] if parents[b] < 0 else heads[b] - heads[parents[b]]
        kind = "ROOT" if parents[b] < 0 else "JOINT"
        lines.append(f"{pad}{kind} {names[b]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        if parents[b] < 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        for c in children[b]:
            emit(c, depth + 1)
        if not children[b]:
            end = tails[b] - heads[b]
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    roots = [b for b in range(len(names)) if parents[b] < 0]
    if len(roots) != 1:
        raise EngineError(f"BVH needs one root bone; the skeleton has {len(roots)}")
    emit(roots[0], 0)
    order: list[int] = []

    def walk(b: int) -> None:
        order.append(b)
        for c in children[b]:
            walk(c)

    walk(roots[0])
    eul = euler_zxy_degrees(local)  # T x B x 3
    root_pos = W[:, roots[0], :3, 3]
    lines += ["MOTION", f"Frames: {len(W)}", f"Frame Time: {1.0 / animation.fps:.6f}"]
    rows = np.concatenate([root_pos] + [eul[:, b] for b in order], axis=1)
    lines += [" ".join(f"{v:.5f}" for v in row) for row in rows]
    (Path(out_dir) / MOTION_FILE).write_text("\n".join(lines) + "\n")
    return {"bvh": MOTION_FILE}
