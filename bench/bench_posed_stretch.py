"""How far an avatar's surface stretches when its own rig raises both upper arms (the pose of
bench/render_posed.py), in numpy: no Blender, no render.

Usage: .venv/bin/python bench/bench_posed_stretch.py AVATAR_DIR [AVATAR_DIR ...] [--angle 60]
           [--stored]

Per avatar: its mesh.ply (vertices, faces, labels) and skeleton.json; the skin weights computed
again by the working tree's engine.rig.weights (so a change to the weights is measured without
building again), or with --stored read from avatar.glb (what the build wrote). Both upper arms
turn `--angle` degrees up about the avatar's front-back axis (linear blend skinning over the
deform bones, engine.rig.pose), and every face's area and edge lengths are compared with the rest
pose. Printed per avatar:
    sheet %      share of the rest surface (by area) in faces whose area grew more than 2x
    sheet cm2    the posed area of those faces: the size of the sheets one sees
    grown cm2    the whole surface's posed area less its rest area (what the pose adds, wherever)
    edges %      share of edges longer than 2x their rest length
    max edge     the largest edge length ratio
    squashed %   share of the rest surface in faces shrunk below half their area (folds)
    dragged %    share of the trunk beside the arms (Torso, Upper_Clothing past the arm's radius
                 + 2.5 cm from every arm segment, along the arm) moved more than 2 cm: the flank
                 raised with the arm as a wing
A sheet where arm and trunk are united in the closed solid cannot vanish (the surface must span
the gap the raised arm opens); the weights only trade how much of the arm's and the trunk's
surface is drawn into it (sheet %, dragged %) against its own size (grown cm2): blended over a
few rings, linear blend skinning pulls the band's vertices in and the sheet is smaller.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from engine.batch.preview import PLY_TYPES, read_ply  # noqa: E402
from engine.rig import deform_bones  # noqa: E402
from engine.rig.pose import forward_kinematics, skin_vertices  # noqa: E402

STRETCH = 2.0
# the trunk that should stay: Torso / Upper_Clothing farther than the arm's radius and this margin
# from every arm segment, beside the arm's length (past this share of the upper arm: the shoulder
# bends at its root); dragged when it moves more than DRAGGED
TRUNK_MARGIN = 0.025
ARM_FROM = 0.35
DRAGGED = 0.02


def read_labels(path: Path) -> np.ndarray | None:
    """The mesh.ply's per-vertex `label` property (uchar), or None."""
    data = path.read_bytes()
    header = data[:data.index(b"end_header\n")].decode("ascii").splitlines()
    if not any(line.split()[-1:] == ["label"] for line in header if line.startswith("property")):
        return None
    fields, count = [], 0
    for line in header:
        words = line.split()
        if words[:1] == ["element"]:
            if words[1] != "vertex":
                break
            count = int(words[2])
        elif words[:1] == ["property"]:
            fields.append((words[2], "<" + PLY_TYPES[words[1]]))
    offset = data.index(b"end_header\n") + len(b"end_header\n")
    return np.frombuffer(data, np.dtype(fields), count=count, offset=offset)["label"].astype(np.int64)


def stored_weights(avatar_dir: Path, n_vertices: int, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(V x 4 deform-bone indices, V x 4 weights) of avatar.glb's skinned mesh, in `names` order."""
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(avatar_dir / "avatar.glb"))
    blob = gltf.binary_blob()
    skin = gltf.skins[0]
    joint_names = [gltf.nodes[j].name for j in skin.joints]
    position = {n: i for i, n in enumerate(names)}
    remap = np.array([position.get(n, -1) for n in joint_names])   # non-deforming joints carry no weight

    def accessor(index):
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        dtype = {5121: np.uint8, 5123: np.uint16, 5126: np.float32}[acc.componentType]
        width = {"VEC4": 4, "VEC3": 3}[acc.type]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        return np.frombuffer(blob, dtype, acc.count * width, start).reshape(acc.count, width)

    primitive = gltf.meshes[0].primitives[0]       # the material slots share one vertex array
    joints = accessor(primitive.attributes.JOINTS_0)
    weights = accessor(primitive.attributes.WEIGHTS_0).astype(np.float32)
    if len(joints) != n_vertices:
        raise SystemExit(f"{avatar_dir}: glb has {len(joints)} skinned vertices, mesh.ply {n_vertices}")
    index = remap[joints.astype(np.int64)]
    if (weights[index < 0] > 0).any():
        raise SystemExit(f"{avatar_dir}: weight on a joint that is not a deform bone")
    return np.maximum(index, 0), weights


def turn(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation matrix about a unit axis."""
    x, y, z = axis
    K = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    a = np.radians(degrees)
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def raised_arms(heads, tails, parents, names, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Global rotations and new heads with both upper arms turned up sideways about the avatar's
    front-back axis (+Z; the sign per side that lifts the bone's tail)."""
    local = np.tile(np.eye(3), (len(heads), 1, 1))
    for side in "LR":
        b = names.index(f"upper_arm.{side}")
        bone = tails[b] - heads[b]
        local[b] = max((turn(np.array([0.0, 0.0, s]), degrees) for s in (1.0, -1.0)),
                       key=lambda R: (R @ bone)[1])
    return forward_kinematics(heads, tails, parents, local)


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v = vertices[faces]
    return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)


def stretch_figures(rest: np.ndarray, posed: np.ndarray, faces: np.ndarray) -> dict[str, float]:
    """The module docstring's figures for one posed mesh."""
    rest_area, posed_area = face_areas(rest, faces), face_areas(posed, faces)
    ratio = posed_area / np.maximum(rest_area, 1e-12)
    real = rest_area > 1e-10                         # degenerate faces have no ratio
    sheet = real & (ratio > STRETCH)
    squashed = real & (ratio < 1 / STRETCH)
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0)
    rest_len = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    edge_ratio = np.linalg.norm(posed[edges[:, 0]] - posed[edges[:, 1]], axis=1) / np.maximum(rest_len, 1e-9)
    edge_ratio = edge_ratio[rest_len > 1e-6]
    total = rest_area[real].sum()
    return {"sheet_pct": 100 * rest_area[sheet].sum() / total, "sheet_cm2": 1e4 * posed_area[sheet].sum(),
            "grown_cm2": 1e4 * (posed_area.sum() - total),
            "edges_pct": 100 * float(np.mean(edge_ratio > STRETCH)), "max_edge": float(edge_ratio.max()),
            "squashed_pct": 100 * rest_area[squashed].sum() / total}


def arm_radius(vertices: np.ndarray, head: np.ndarray, tail: np.ndarray) -> float:
    """An arm's radius at a bone: the median distance from its segment of the surface on the arm's
    outer side (away from the body's midline, x = 0), between 30 and 90 % of its length, where
    nothing else lies."""
    axis = tail - head
    length = np.linalg.norm(axis)
    unit = axis / length
    rel = vertices - head
    t = rel @ unit / length
    radial = rel - np.outer(rel @ unit, unit)
    distance = np.linalg.norm(radial, axis=1)
    outward = np.array([np.sign(head[0]), 0.0, 0.0])
    outward -= unit * (outward @ unit)
    outward /= np.linalg.norm(outward)
    outer = (t > 0.3) & (t < 0.9) & (distance < 0.15) & (radial @ outward > 0.8 * distance)
    return float(np.median(distance[outer])) if outer.any() else 0.05


def trunk_dragged(rest, posed, faces, labels, heads, tails, names) -> float:
    """Share (%, by area) of the trunk beside the arms (TRUNK_MARGIN, ARM_FROM) moved more than
    DRAGGED: the flank raised with the arm as a wing."""
    from engine.rig.joints import TORSO, UPPER_CLOTHING

    beside = np.zeros(len(rest), bool)
    near = np.zeros(len(rest), bool)
    for name in ("upper_arm.L", "upper_arm.R", "forearm.L", "forearm.R"):
        b = names.index(name)
        a, ab = heads[b], tails[b] - heads[b]
        t = (rest - a) @ ab / (ab @ ab)
        distance = np.linalg.norm(rest - (a + np.clip(t, 0, 1)[:, None] * ab), axis=1)
        radius = arm_radius(rest, heads[b], tails[b])
        near |= distance <= radius + TRUNK_MARGIN
        start = ARM_FROM if name.startswith("upper_arm") else 0.0
        beside |= (t > start) & (t < 1) & (distance < radius + 0.15)
    trunk = np.isin(labels, (TORSO, UPPER_CLOTHING)) & beside & ~near
    moved = np.linalg.norm(posed - rest, axis=1) > DRAGGED
    area = face_areas(rest, faces)
    in_trunk = trunk[faces].all(1)
    return 100 * area[in_trunk & moved[faces].any(1)].sum() / max(area[in_trunk].sum(), 1e-12)


def measure(avatar_dir: Path, degrees: float, stored: bool) -> dict[str, float]:
    from engine.rig.weights import compute_weights

    vertices, faces, _ = read_ply(avatar_dir / "mesh.ply")
    labels = read_labels(avatar_dir / "mesh.ply")
    skeleton = json.loads((avatar_dir / "skeleton.json").read_text())
    names, index, parents = deform_bones(skeleton)
    bones = skeleton["bones"]
    heads = np.array([bones[i]["head"] for i in index], np.float64)
    tails = np.array([bones[i]["tail"] for i in index], np.float64)
    if stored:
        wj, w = stored_weights(avatar_dir, len(vertices), names)
    else:
        wj, w = compute_weights(vertices, faces, labels, heads, tails, parents,
                                [bones[i]["part"] for i in index], [bones[i]["side"] for i in index],
                                height=float(skeleton["height"]))
    R, new_heads = raised_arms(heads, tails, parents, names, degrees)
    posed = skin_vertices(vertices, wj, w, heads, R, new_heads)
    figures = stretch_figures(vertices, posed, faces)
    figures["dragged_pct"] = (float("nan") if labels is None
                              else trunk_dragged(vertices, posed, faces, labels, heads, tails, names))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("avatars", type=Path, nargs="+")
    parser.add_argument("--angle", type=float, default=60.0, help="degrees the upper arms turn up (default 60)")
    parser.add_argument("--stored", action="store_true", help="the glb's weights, not computed again")
    args = parser.parse_args()
    print(f"{'avatar':<14} {'sheet %':>8} {'sheet cm2':>10} {'grown cm2':>10} {'edges %':>8} {'max edge':>9} {'squashed %':>10} {'dragged %':>9}")
    for avatar in args.avatars:
        f = measure(avatar, args.angle, args.stored)
        print(f"{avatar.name:<14} {f['sheet_pct']:8.2f} {f['sheet_cm2']:10.1f} {f['grown_cm2']:10.1f} {f['edges_pct']:8.2f} "
              f"{f['max_edge']:9.1f} {f['squashed_pct']:10.2f} {f['dragged_pct']:9.2f}")


if __name__ == "__main__":
    main()
