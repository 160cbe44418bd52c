"""The mannequin's surface: closed triangle meshes of body parts around a posed skeleton.

Each part is a loft: rings of elliptical cross-section along a polyline of joints, closed by
half-ellipsoid caps. Every face carries a Sapiens segmentation class and a material; a little
surface detail (shirt folds, a belt ridge, a nose) gives the normal maps something that a smooth
pointmap misses. Parts overlap at the joints like a mannequin's; a renderer sees the union.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import trimesh

from engine.paths import asset
from engine.synthetic.skeleton import FINGERS, PosedSkeleton

N_AROUND = 28


def seg_class_ids() -> dict[str, int]:
    table = json.loads(asset("seg_classes.json").read_text())["classes"]
    return {c["name"]: c["id"] for c in table}


# linear-RGB base colours; "shirt" is striped by the renderer
MATERIALS = {"skin": 0, "shirt": 1, "trousers": 2, "shoes": 3, "belt": 4, "hair": 5, "socks": 6, "shorts": 7}
MATERIAL_COLOURS = np.array([
    (0.62, 0.42, 0.31),   # skin
    (0.08, 0.20, 0.50),   # shirt (dark stripe; the light stripe is computed)
    (0.13, 0.13, 0.16),   # trousers
    (0.04, 0.04, 0.04),   # shoes
    (0.30, 0.14, 0.05),   # belt
    (0.07, 0.045, 0.03),  # hair
    (0.70, 0.70, 0.66),   # socks
    (0.45, 0.08, 0.06),   # shorts (red squares; the checker's other squares are computed)
], dtype=np.float32)

# "trousers": long trousers (the legs are Lower_Clothing); "shorts": bare thighs and shins
# (Left_Upper_Leg, Left_Lower_Leg ...) under shorts, with socks (Left_Sock ...)
OUTFITS = ("trousers", "shorts")


@dataclass
class BodyMesh:
    vertices: np.ndarray          # V x 3 body frame
    faces: np.ndarray             # F x 3
    face_labels: np.ndarray       # F uint8 seg class
    face_materials: np.ndarray    # F uint8 index into MATERIAL_COLOURS
    face_parts: np.ndarray        # F uint16 index into part_names
    part_names: list[str] = field(default_factory=list)
    part_radius: dict[str, float] = field(default_factory=dict)  # typical radius per part, metres

    def trimesh(self) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def _frame(axis: np.ndarray, hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to `axis`, the first as close to `hint` as possible."""
    e1 = hint - axis * np.dot(hint, axis)
    if np.linalg.norm(e1) < 1e-6:
        e1 = np.cross(axis, [0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.cross(axis, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


def loft(points, rx, rz, hint, *, rings_per_segment=6, cap_rings=5, radial=None):
    """Closed surface along a polyline: elliptical rings (rx along `hint`, rz across), capped.

    radial(t, phi) -> scale factor (t in [0, 1] along the part) adds surface detail. Returns
    (vertices, faces, t per face in [0, 1]).
    """
    points = np.asarray(points, float)
    rx, rz = np.asarray(rx, float), np.asarray(rz, float)
    seg = np.diff(points, axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    total = seg_len.sum()
    # ring positions along the polyline (arc length), radii interpolated between the points
    s_knots = np.concatenate([[0.0], np.cumsum(seg_len)])
    s = np.linspace(0.0, total, rings_per_segment * len(seg) + 1)
    centres = np.stack([np.interp(s, s_knots, points[:, k]) for k in range(3)], axis=1)
    ring_rx, ring_rz = np.interp(s, s_knots, rx), np.interp(s, s_knots, rz)
    axis_start, axis_end = seg[0] / seg_len[0], seg[-1] / seg_len[-1]
    # caps: half-ellipsoids whose depth is the end radius
    a = np.linspace(0.0, np.pi / 2, cap_rings + 1)[1:-1]
    cap0_d, cap1_d = min(ring_rx[0], ring_rz[0]), min(ring_rx[-1], ring_rz[-1])
    # start cap rings run from near the pole to the first ring, end cap rings the other way
    start_off, start_scale = -np.cos(a) * cap0_d, np.sin(a)
    ring_pos = np.concatenate([centres[0] + start_off[:, None] * axis_start, centres,
                               centres[-1] + (np.cos(a[::-1]) * cap1_d)[:, None] * axis_end])
    scale = np.concatenate([start_scale, np.ones(len(s)), np.sin(a[::-1])])
    rxs = np.concatenate([np.full(len(a), ring_rx[0]), ring_rx, np.full(len(a), ring_rx[-1])]) * scale
    rzs = np.concatenate([np.full(len(a), ring_rz[0]), ring_rz, np.full(len(a), ring_rz[-1])]) * scale
    t_ring = np.concatenate([np.zeros(len(a)), s / total, np.ones(len(a))])
    # per-ring frame: tangent of the polyline, cross-section axes from the hint
    tangents = np.gradient(ring_pos, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    e1 = hint[None, :] - tangents * (tangents @ hint)[:, None]
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(tangents, e1)
    phi = np.linspace(0.0, 2 * np.pi, N_AROUND, endpoint=False)
    factor = radial(t_ring[:, None], phi[None, :]) if radial is not None else 1.0
    ring = (ring_pos[:, None, :]
            + (rxs[:, None] * np.cos(phi)[None, :] * factor)[..., None] * e1[:, None, :]
            + (rzs[:, None] * np.sin(phi)[None, :] * factor)[..., None] * e2[:, None, :])
    R = len(ring_pos)
    verts = np.concatenate([ring.reshape(-1, 3),
                            [centres[0] - cap0_d * axis_start, centres[-1] + cap1_d * axis_end]])
    idx = np.arange(R * N_AROUND).reshape(R, N_AROUND)
    nxt = np.roll(idx, -1, axis=1)
    quads_a, quads_b = idx[:-1], idx[1:]
    quads_an, quads_bn = nxt[:-1], nxt[1:]
    # outward winding: (a, a_next, b) with the ring order running along +tangent
    tri1 = np.stack([quads_a, quads_b, quads_an], -1).reshape(-1, 3)
    tri2 = np.stack([quads_an, quads_b, quads_bn], -1).reshape(-1, 3)
    pole0, pole1 = R * N_AROUND, R * N_AROUND + 1
    fan0 = np.stack([np.full(N_AROUND, pole0), idx[0], nxt[0]], -1)
    fan1 = np.stack([np.full(N_AROUND, pole1), nxt[-1], idx[-1]], -1)
    faces = np.concatenate([tri1, tri2, fan0, fan1])
    t_face = np.concatenate([np.repeat(t_ring[:-1], N_AROUND), np.repeat(t_ring[:-1], N_AROUND),
                             np.zeros(N_AROUND), np.ones(N_AROUND)])
    # make the winding outward whatever the frame's handedness
    mesh = trimesh.Trimesh(verts, faces, process=False)
    if mesh.volume < 0:
        faces = faces[:, ::-1]
    return verts, faces, t_face


def ellipsoid(centre, radii, rotation, n_lat=18, n_lon=N_AROUND):
    """Closed ellipsoid mesh; returns (vertices, faces, local unit-sphere coordinates per face)."""
    lat = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    unit = np.stack([np.sin(lat)[:, None] * np.cos(lon)[None, :],
                     np.cos(lat)[:, None] * np.ones_like(lon)[None, :],
                     np.sin(lat)[:, None] * np.sin(lon)[None, :]], -1).reshape(-1, 3)
    unit = np.concatenate([unit, [[0, 1, 0], [0, -1, 0]]])
    verts = centre + (unit * radii) @ np.asarray(rotation).T
    idx = np.arange(len(lat) * n_lon).reshape(len(lat), n_lon)
    nxt = np.roll(idx, -1, axis=1)
    tri1 = np.stack([idx[:-1], nxt[:-1], idx[1:]], -1).reshape(-1, 3)
    tri2 = np.stack([nxt[:-1], nxt[1:], idx[1:]], -1).reshape(-1, 3)
    top, bottom = len(unit) - 2, len(unit) - 1
    fan_top = np.stack([np.full(n_lon, top), nxt[0], idx[0]], -1)
    fan_bottom = np.stack([np.full(n_lon, bottom), idx[-1], nxt[-1]], -1)
    faces = np.concatenate([tri1, tri2, fan_top, fan_bottom])
    if trimesh.Trimesh(verts, faces, process=False).volume < 0:
        faces = faces[:, ::-1]
    return verts, faces, unit[faces].mean(axis=1)


class _Builder:
    def __init__(self):
        self.verts, self.faces, self.labels, self.materials, self.parts = [], [], [], [], []
        self.part_names: list[str] = []
        self.part_radius: dict[str, float] = {}
        self.n = 0
        self.classes = seg_class_ids()

    def add(self, name, verts, faces, labels, materials, radius):
        self.part_names.append(name)
        self.part_radius[name] = float(radius)
        self.verts.append(verts)
        self.faces.append(faces + self.n)
        self.n += len(verts)
        self.labels.append(np.broadcast_to(labels, len(faces)).astype(np.uint8))
        self.materials.append(np.broadcast_to(materials, len(faces)).astype(np.uint8))
        self.parts.append(np.full(len(faces), len(self.part_names) - 1, np.uint16))

    def tube(self, name, points, rx, rz, hint, labels, materials, radius):
        """A lofted part along `points` (see loft), added with one class and material."""
        v, f, _ = loft(points, rx, rz, hint)
        self.add(name, v, f, labels, materials, radius)

    def mesh(self) -> BodyMesh:
        return BodyMesh(np.concatenate(self.verts).astype(np.float64), np.concatenate(self.faces),
                        np.concatenate(self.labels), np.concatenate(self.materials),
                        np.concatenate(self.parts), self.part_names, self.part_radius)


def build_body(posed: PosedSkeleton, outfit: str = "trousers", detail: bool = True) -> BodyMesh:
    """The mannequin around a posed skeleton (body frame, metres), dressed in `outfit` (OUTFITS).
    detail=False leaves out the shirt folds and the belt ridge: a smooth body whose normals a
    pointmap fully explains."""
    if outfit not in OUTFITS:
        raise ValueError(f"unknown outfit {outfit!r}; known: {', '.join(OUTFITS)}")
    h = posed.skeleton.height
    J, R = posed.__getitem__, lambda n: posed.rotations[posed.skeleton.index(n)]
    b = _Builder()
    c = b.classes
    M = MATERIALS

    # torso: hips to the base of the neck; shirt above the belt, trousers below; folds on the shirt
    waist_t = 0.3
    pelvis_low = J("pelvis") + R("pelvis") @ np.array([0, -0.045 * h, 0])
    torso_pts = [pelvis_low, J("pelvis"), J("spine1"), J("chest"), J("neck") + R("neck") @ np.array([0, -0.03 * h, 0])]
    rx = np.array([0.092, 0.094, 0.083, 0.097, 0.055]) * h
    rz = np.array([0.062, 0.060, 0.056, 0.062, 0.036]) * h

    def torso_detail(t, phi):
        folds = 1.0 + 0.012 * np.sin(9 * phi) * np.clip((t - waist_t) / 0.4, 0, 1) * np.clip((0.9 - t) / 0.2, 0, 1)
        belt = 1.0 + 0.05 * np.exp(-(((t - waist_t) / 0.025) ** 2))
        return folds * belt

    v, f, t = loft(torso_pts, rx, rz, R("chest") @ np.array([1.0, 0, 0]), rings_per_segment=10,
                   radial=torso_detail if detail else None)
    labels = np.where(t < waist_t - 0.03, c["Lower_Clothing"],
                      np.where(t < waist_t + 0.03, c["Apparel"], c["Upper_Clothing"]))
    lower_material = M["trousers"] if outfit == "trousers" else M["shorts"]
    mats = np.where(t < waist_t - 0.03, lower_material, np.where(t < waist_t + 0.03, M["belt"], M["shirt"]))
    b.add("torso", v, f, labels, mats, 0.06 * h)

    # neck and head (+ nose, hair cap)
    v, f, _ = loft([J("neck") - R("neck") @ np.array([0, 0.02 * h, 0]), J("head") + R("head") @ np.array([0, 0.02 * h, 0])],
                   [0.031 * h] * 2, [0.033 * h] * 2, R("neck") @ np.array([1.0, 0, 0]))
    b.add("neck", v, f, c["Face_Neck"], M["skin"], 0.032 * h)
    head_r = np.array([0.058, 0.074, 0.066]) * h
    v, f, _ = ellipsoid(J("head_center"), head_r, R("head"))
    b.add("head", v, f, c["Face_Neck"], M["skin"], 0.062 * h)
    nose_c = J("head_center") + R("head") @ np.array([0, -0.012 * h, 0.064 * h])
    v, f, _ = ellipsoid(nose_c, np.array([0.008, 0.013, 0.011]) * h, R("head"), n_lat=8, n_lon=12)
    b.add("nose", v, f, c["Face_Neck"], M["skin"], 0.01 * h)
    v, f, unit = ellipsoid(J("head_center") + R("head") @ np.array([0, 0.006 * h, -0.004 * h]), head_r * 1.06, R("head"))
    keep = (unit[:, 1] > 0.35) | ((unit[:, 2] < 0.1) & (unit[:, 1] > -0.45))  # skull cap and back
    b.add("hair", v, f[keep], c["Hair"], M["hair"], 0.065 * h)

    for side, s in (("L", 1.0), ("R", -1.0)):
        side_name = "Left" if side == "L" else "Right"
        out = R(f"shoulder_{side}") @ np.array([1.0, 0, 0])
        # upper arm with a short sleeve over its top half
        start = J(f"shoulder_{side}") - 0.02 * h * (J(f"elbow_{side}") - J(f"shoulder_{side}")) / 0.186 / h
        b.tube(f"upper_arm_{side}", [start, J(f"elbow_{side}")], [0.029 * h, 0.024 * h], [0.030 * h, 0.024 * h],
               out, c[f"{side_name}_Upper_Arm"], M["skin"], 0.027 * h)
        sleeve_end = start + 0.5 * (J(f"elbow_{side}") - start)
        b.tube(f"sleeve_{side}", [start, sleeve_end], [0.034 * h, 0.031 * h], [0.035 * h, 0.031 * h], out,
               c["Upper_Clothing"], M["shirt"], 0.033 * h)
        b.tube(f"forearm_{side}", [J(f"elbow_{side}"), J(f"wrist_{side}")], [0.023 * h, 0.016 * h],
               [0.024 * h, 0.018 * h], R(f"elbow_{side}") @ np.array([1.0, 0, 0]), c[f"{side_name}_Lower_Arm"],
               M["skin"], 0.02 * h)
        # palm and fingers
        knuckle_mid = 0.5 * (J(f"forefinger0_{side}") + J(f"pinky_finger0_{side}"))
        palm_c = 0.5 * (J(f"wrist_{side}") + knuckle_mid)
        palm_len = np.linalg.norm(knuckle_mid - J(f"wrist_{side}"))
        Rw = R(f"wrist_{side}")
        v, f, _ = ellipsoid(palm_c, np.array([0.011 * h, palm_len / 2 + 0.006 * h, 0.026 * h]), Rw, n_lat=10, n_lon=16)
        b.add(f"palm_{side}", v, f, c[f"{side_name}_Hand"], M["skin"], 0.012 * h)
        for finger in FINGERS:
            pts = [J(f"{finger}{k}_{side}") for k in range(4)]
            r0 = 0.0068 * h if finger == "thumb" else 0.0055 * h
            v, f, _ = loft(pts, [r0, r0 * 0.95, r0 * 0.9, r0 * 0.75], [r0, r0 * 0.95, r0 * 0.9, r0 * 0.75],
                           Rw @ np.array([1.0, 0, 0]), rings_per_segment=3, cap_rings=4)
            b.add(f"{finger}_{side}", v, f, c[f"{side_name}_Hand"], M["skin"], r0)
        # legs in trousers (or bare under shorts, with socks), shoes
        thigh_top = J(f"hip_{side}") + np.array([0, 0.02 * h, 0])
        thigh_hint, shin_hint = R(f"hip_{side}") @ np.array([1.0, 0, 0]), R(f"knee_{side}") @ np.array([1.0, 0, 0])
        hip, knee, ankle = J(f"hip_{side}"), J(f"knee_{side}"), J(f"ankle_{side}")
        # bare legs are a little slimmer than trouser legs
        leg_scale, leg_classes, leg_material = (
            (1.0, (c["Lower_Clothing"],) * 2, M["trousers"]) if outfit == "trousers"
            else (0.93, (c[f"{side_name}_Upper_Leg"], c[f"{side_name}_Lower_Leg"]), M["skin"]))
        g = leg_scale * h
        b.tube(f"thigh_{side}", [thigh_top, knee], [0.05 * g, 0.034 * g], [0.05 * g, 0.035 * g], thigh_hint,
               leg_classes[0], leg_material, 0.042 * g)
        b.tube(f"shin_{side}", [knee, ankle], [0.034 * g, 0.022 * g], [0.035 * g, 0.024 * g], shin_hint,
               leg_classes[1], leg_material, 0.028 * g)
        if outfit == "shorts":
            shin = ankle - knee
            b.tube(f"shorts_{side}", [thigh_top, thigh_top + 0.45 * (knee - thigh_top)], [0.053 * h, 0.047 * h],
                   [0.053 * h, 0.047 * h], thigh_hint, c["Lower_Clothing"], M["shorts"], 0.05 * h)
            b.tube(f"sock_{side}", [knee + 0.72 * shin, ankle + 0.01 * shin / np.linalg.norm(shin)],
                   [0.025 * h, 0.0235 * h], [0.027 * h, 0.0255 * h], shin_hint, c[f"{side_name}_Sock"],
                   M["socks"], 0.025 * h)
        heel, toe = J(f"heel_{side}"), J(f"toe_{side}")
        up = R(f"ankle_{side}") @ np.array([0, 1.0, 0])
        mid = 0.5 * (heel + toe) + 0.012 * h * up
        v, f, _ = loft([heel + 0.01 * h * up, mid, toe], [0.021 * h, 0.03 * h, 0.025 * h],
                       [0.026 * h, 0.03 * h, 0.016 * h], R(f"ankle_{side}") @ np.array([1.0, 0, 0]))
        b.add(f"shoe_{side}", v, f, c[f"{side_name}_Shoe"], M["shoes"], 0.025 * h)
    return b.mesh()


def shorts_checker(points_body: np.ndarray, height: float) -> np.ndarray:
    """1 on the light squares of the shorts' checker (3-D cells 2.5 % of the height wide, so the
    pattern runs across the legs' seams and shows any texture misregistration in two directions)."""
    cells = np.floor(points_body / (0.025 * height)).astype(np.int64)
    return (cells.sum(axis=1) % 2 == 0).astype(np.float32)


def shirt_stripes(points_body: np.ndarray, height: float) -> np.ndarray:
    """1 on the light stripes of the shirt (horizontal bands, 4 % of the height apart)."""
    return (np.floor(points_body[:, 1] / (0.02 * height)) % 2 == 0).astype(np.float32)
