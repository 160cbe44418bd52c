"""The face/hair border on closed one-photo avatars: labels and colour against the truth.

Usage: .venv/bin/python bench/bench_hairline.py [--size 768x1024] [--synthetic 3] [--outfits trousers] [--samples]
                                                [--band-cm 3] [--keep DIR] [--compare [--against coarse|seam|raw|legs]]
                                                [--time R]

Each person is built as a closed avatar (build_avatar's defaults, glb and ply): engine.synthetic
people (seeds 101..., exact maps) and, with --samples, the three people of ../shared/samples
(their ground-truth maps as a predictions bundle). The avatar's surface is sampled (four points
per triangle, area-weighted); each sample has the material slot of its triangle and the base
colour of the texture at its interpolated UV (bilinear). The truth at a sample:

- engine.synthetic: the class and albedo of the true surface where the camera's ray through
  the sample hits it (within 2 cm of the sample), else at the nearest point of its outer skin;
- ../shared/samples: only samples the photo sees (within 1.5 cm of the true pointmap's depth at
  their pixel); class Hair or skin by which of the two colours the true albedo there is nearer
  (the samples' seg map is ragged on purpose, their albedo is not), colour the true albedo.

Over the samples whose true class is Hair or Face_Neck and that lie within --band-cm of a sample
of the other class (the hairline band) it prints, per person and island (seen = front island,
hidden = the rest of a closed avatar): `skin->hair` the share of true skin in the hair slot,
`hair->skin` the share of true hair in another slot, `colour` the mean |texture - true albedo|
in sRGB levels (0-255, all channels); and `border` the length (m) of the mesh edges between the
hair slot and the skin slot above the shoulders (a saw-tooth border is long).

The collar (`collar`): over the seen front-island samples whose true class is Face_Neck or
Upper_Clothing and that lie within 1.5 cm of a sample of the other (the neck's border with the
shirt), `skin->cloth` the share of the true skin area in another slot than skin, `cloth->skin`
the share of the true clothing in the skin slot, and (../shared/samples only) `colour->` the
share of either whose texture colour is nearer the other class's (the true class by the nearer of
the two colours over the pixels the seg calls either, as the hair and face; engine.synthetic: the
true surface's class, whose colours leave the shirt's stripes out: a white stripe reads as
skin). The slots' roughness differs (skin 0.55, clothing 0.85): a slot border along whole
triangles beside the texture's edge shows as a comb of triangles with the skin's sheen.

The legs' hems and the shoes' tops (`hems`, `shoes`), the collar's figures over the legs: per
island (seen = front, hidden = the rest; ../shared/samples: the seen only), over the samples
within 1.5 cm of the other side whose true class is a bare leg or foot (refine_border
.LEG_SKIN_CLASSES) or the trousers / shorts / socks (LEG_CLOTHING_CLASSES), `skin->cloth` the
share of the true bare leg in another slot than skin, `cloth->skin` the share of the true
clothing in the skin slot; and whose true class is a shoe or what meets it (the bare leg, foot,
trousers, socks), `shoe->off` the share of the true shoe in another slot than shoes, `off->shoe`
the share of the rest in the shoes slot. The truth: engine.synthetic's true surface (--outfits
shorts: bare legs under shorts, socks and shoes; trousers: the trousers' hems on the shoes);
../shared/samples' (bare legs under shorts, shoes): a shoe or not by the nearer of the shoe's
and the leg's median true albedo (the seg is ragged, the albedo not), and over the leg / shorts
pixels the class most of the seg's 7 x 7 pixels around carry (the shorts and the legs are one
grey: the albedo cannot tell them; this truth is the seg's own border, smoothed). Each build's
face count (`faces`, mesh.ply) is printed too.

The head's seen/hidden UV island seam (the mesh.ply's edges between a front-island and a
hidden-island triangle that both have a Hair or face-class corner): `seam wobble` the mean
distance (mm) of its vertices from the line the seam runs along around them (the principal
axis of its edges within 1 cm, length-weighted): a seam along whole 7-11 mm triangles is a
staircase some millimetres off its own course, a fine one is not; `seam colour` the mean
|texture - true albedo| (sRGB levels) of the samples within 1 cm of the seam, where a staircase
puts the hidden side's colour on seen skin and the photo's on the hidden hair (synthetic: every
sample; ../shared/samples: the seen ones only, the truth is a photo).

--compare also builds every person without one of the hairline's fixes, in the same tree and
process, so the two differ only by it: --against coarse (default) without engine.geometry
.refine_border's face/hair split (the slots follow the solid's own 7-11 mm triangles), --against
seam without its split along the head's island seam (refine_seam: the seam follows whole
triangles), --against raw without the occluding-edge colour fix (every seen vertex reads its
own pixel), --against legs with refine_border.BORDERS' first two only (the hems' and the shoes'
triangles left whole). --time R: per person also the seconds the two splits add to its build, on
its built surface (stages.refine_head; the seen weight without and with its vertex average, which
the seam split reads; refine_seam), median of R runs, with the load average; with --against legs
also stages.refine_head with the first two borders and with all, runs interleaved, medians, and
their face counts. Printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SAMPLES = REPO.parent / "shared" / "samples"
# four points per triangle (barycentric): the centre and one toward each corner
BARYCENTRIC = np.array([[1 / 3, 1 / 3, 1 / 3], [2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])


def avatar_samples(out_dir: Path) -> dict:
    """The avatar's surface as area samples in the camera frame: points, weights, slot names,
    texture colour (sRGB 0-255, bilinear at the UV), island (0 front, 1 hidden); and the hair/skin
    slot border length above the shoulders."""
    import trimesh
    from PIL import Image

    manifest = json.loads((out_dir / "avatar.json").read_text())
    layout = manifest["textures"]["layout"]
    to_camera = np.linalg.inv(np.asarray(manifest["camera_to_avatar"], np.float64))
    texture = np.asarray(Image.open(out_dir / "textures" / "albedo.png").convert("RGB"), np.float64)
    th, tw = texture.shape[:2]
    scene = trimesh.load(out_dir / "avatar.glb", force="scene", process=False)
    points, weights, slots, uvs, corners = [], [], [], [], []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry[name]
        vertices = trimesh.transform_points(trimesh.transform_points(geometry.vertices, transform), to_camera)
        faces = np.asarray(geometry.faces)
        uv = np.column_stack([geometry.visual.uv[:, 0] * tw, (1.0 - geometry.visual.uv[:, 1]) * th])
        area = 0.5 * np.linalg.norm(np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                                             vertices[faces[:, 2]] - vertices[faces[:, 0]]), axis=1)
        for bary in BARYCENTRIC:
            points.append(np.einsum("k,fkd->fd", bary, vertices[faces]))
            uvs.append(np.einsum("k,fkd->fd", bary, uv[faces]))
            weights.append(area / len(BARYCENTRIC))
            slots.append(np.full(len(faces), geometry.visual.material.name, object))
        corners.append((geometry.visual.material.name, vertices[faces]))
    uv = np.concatenate(uvs)
    return {
        "points": np.concatenate(points), "weights": np.concatenate(weights), "slots": np.concatenate(slots),
        "colours": bilinear(texture, uv - 0.5),
        "island": (uv[:, 0] >= layout["island_width"] + layout["gutter"] / 2).astype(np.int64),
        "border_m": slot_border_length(corners),
    }


def trimesh_faces(path: Path) -> np.ndarray:
    import trimesh

    return np.asarray(trimesh.load(path, process=False).faces)


def bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x0 = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, w - 2)
    y0 = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, h - 2)
    fx = np.clip(xy[:, 0] - x0, 0.0, 1.0)[:, None]
    fy = np.clip(xy[:, 1] - y0, 0.0, 1.0)[:, None]
    top = (1 - fx) * image[y0, x0] + fx * image[y0, x0 + 1]
    bottom = (1 - fx) * image[y0 + 1, x0] + fx * image[y0 + 1, x0 + 1]
    return (1 - fy) * top + fy * bottom


def slot_border_length(corners: list) -> float:
    """Length (m) of the edges that a hair-slot triangle and a skin-slot triangle share."""
    chosen = [(slot, triangles) for slot, triangles in corners if slot in ("hair", "skin")]
    if len({slot for slot, _ in chosen}) < 2:
        return 0.0
    # corners welded by position (UV seams split vertices), numbered together
    keys = np.round(np.concatenate([t.reshape(-1, 3) for _, t in chosen]) * 1e6).astype(np.int64)
    _, ids = np.unique(keys, axis=0, return_inverse=True)
    ids = ids.reshape(-1)
    n = np.int64(ids.max() + 1)
    edges, start = {}, 0
    for slot, triangles in chosen:
        corner = ids[start: start + triangles.size // 3].reshape(-1, 3)
        start += triangles.size // 3
        pairs = np.sort(np.concatenate([corner[:, [0, 1]], corner[:, [1, 2]], corner[:, [2, 0]]]), axis=1)
        lengths = np.linalg.norm(np.concatenate([triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 1],
                                                 triangles[:, 0] - triangles[:, 2]]), axis=1)
        edges.setdefault(slot, {}).update(zip((pairs[:, 0] * n + pairs[:, 1]).tolist(), lengths.tolist()))
    return float(sum(edges["hair"][key] for key in edges["hair"].keys() & edges["skin"].keys()))


def head_seam(out_dir: Path) -> dict:
    """The head's seen/hidden island seam in the camera frame: `points` along its edges every
    millimetre, `wobble_mm` (module docstring), `length_m`."""
    import trimesh
    from PIL import Image
    from scipy.spatial import cKDTree

    from engine.avatar.labels import FRONT_ONLY_CLASSES, class_ids

    manifest = json.loads((out_dir / "avatar.json").read_text())
    layout = manifest["textures"]["layout"]
    to_camera = np.linalg.inv(np.asarray(manifest["camera_to_avatar"], np.float64))
    mesh = trimesh.load(out_dir / "mesh.ply", process=False)
    raw = mesh.metadata["_ply_raw"]["vertex"]["data"]
    vertices = trimesh.transform_points(np.asarray(mesh.vertices, np.float64), to_camera)
    faces = np.asarray(mesh.faces, np.int64)
    tw = Image.open(out_dir / "textures" / "albedo.png").size[0]
    hidden_vertex = np.asarray(raw["s"], np.float64) * tw >= layout["island_width"] + layout["gutter"] / 2
    head_vertex = np.isin(np.asarray(raw["label"]), np.append(class_ids(FRONT_ONLY_CLASSES), class_ids(["Hair"])))
    face_hidden = hidden_vertex[faces[:, 0]]
    face_head = head_vertex[faces].any(axis=1)
    _, weld = np.unique(np.round(vertices * 1e6).astype(np.int64), axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    point = np.zeros((weld.max() + 1, 3))
    point[weld] = vertices
    sides = []
    for hidden in (False, True):
        f = weld[faces[face_head & (face_hidden == hidden)]]
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        sides.append(np.unique(edges[:, 0] * np.int64(len(point)) + edges[:, 1]))
    keys = np.intersect1d(sides[0], sides[1])
    if len(keys) == 0:
        return {"points": np.zeros((0, 3)), "wobble_mm": float("nan"), "length_m": 0.0}
    a, b = point[keys // len(point)], point[keys % len(point)]
    length = np.linalg.norm(b - a, axis=1)
    mid = 0.5 * (a + b)
    ends = np.unique(np.concatenate([keys // len(point), keys % len(point)]))
    tree = cKDTree(mid)
    offsets = []
    for p, near in zip(point[ends], tree.query_ball_point(point[ends], 0.01)):
        if len(near) < 3:
            continue
        w = length[near] / length[near].sum()
        centre = w @ mid[near]
        d = mid[near] - centre
        axis = np.linalg.eigh((d * w[:, None]).T @ d)[1][:, -1]
        off = p - centre
        offsets.append(np.linalg.norm(off - (off @ axis) * axis))
    steps = np.maximum(np.ceil(length / 0.001).astype(np.int64), 1)
    t = np.concatenate([(np.arange(n) + 0.5) / n for n in steps])
    along = np.repeat(a, steps, axis=0) + t[:, None] * np.repeat(b - a, steps, axis=0)
    return {"points": along, "wobble_mm": 1000.0 * float(np.mean(offsets)) if offsets else float("nan"),
            "length_m": float(length.sum())}


def seam_colour(avatar: dict, seam: dict, truth_class: np.ndarray, truth_colour: np.ndarray, within_m: float = 0.01):
    """Mean |texture - true albedo| (sRGB levels) of the samples within `within_m` of the seam
    whose truth is known (truth_class >= 0); NaN when none."""
    from scipy.spatial import cKDTree

    if not len(seam["points"]):
        return float("nan")
    near = cKDTree(seam["points"]).query(avatar["points"], distance_upper_bound=within_m)[0] < within_m
    chosen = near & (truth_class >= 0)
    if not chosen.any():
        return float("nan")
    error = np.abs(avatar["colours"] - truth_colour).mean(axis=1)
    return float((avatar["weights"] * error)[chosen].sum() / avatar["weights"][chosen].sum())


def synthetic_truth(person, points_camera: np.ndarray):
    """(class id, albedo sRGB 0-255) of the true surface at each point: where the camera's ray
    through the point hits the true surface within 2 cm of it, the hit (the seen sides of the
    head, exactly); elsewhere the nearest point of the true outer surface, the union's triangles
    without those the hair cap covers (the head's skin under it, which is no surface one sees:
    a closed avatar a few millimetres inside the cap is nearest to it)."""
    import open3d as o3d

    from engine.avatar.labels import class_ids
    from engine.colour import linear_to_srgb
    from engine.synthetic.body import MATERIAL_COLOURS, build_body

    body = build_body(person.posed, person.meta.get("outfit", "trousers"), person.meta.get("detail", True))
    vertices = np.asarray(person.mesh.vertices, np.float64)
    triangles = vertices[body.faces]
    normal = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(body.faces.astype(np.uint32)))
    rays = np.concatenate([triangles.mean(axis=1) + 1e-4 * normal, normal], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    hit_face = hit["primitive_ids"].numpy().astype(np.int64)
    hair_id = class_ids(["Hair"])[0]
    covered = (hit["t_hit"].numpy() < 0.03) & (body.face_labels[np.clip(hit_face, 0, len(body.faces) - 1)] == hair_id)
    covered &= body.face_labels != hair_id
    keep = np.nonzero(~covered)[0]
    outer = o3d.t.geometry.RaycastingScene()
    outer.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(body.faces[keep].astype(np.uint32)))
    points = np.asarray(points_camera, np.float64)
    face = keep[outer.compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))["primitive_ids"].numpy().astype(np.int64)]
    # a point the camera sees is what the camera's ray through it hits (its texture comes from there)
    distance = np.linalg.norm(points, axis=1)
    along = np.concatenate([np.zeros_like(points), points / distance[:, None]], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(along))
    seen = np.abs(hit["t_hit"].numpy() - distance) < 0.02
    face = np.where(seen, hit["primitive_ids"].numpy().astype(np.int64), face)
    # the head's classes only matter here: the shirt's stripes are left plain
    return body.face_labels[face].astype(np.int64), 255.0 * linear_to_srgb(MATERIAL_COLOURS[body.face_materials[face]])


def _photo_pixels(points_camera: np.ndarray, pointmap: np.ndarray, K: np.ndarray):
    """(row, col) of each camera-space point's photo pixel (clamped) and whether the photo sees
    it there (the pointmap's depth within 1.5 cm of its own)."""
    h, w = pointmap.shape[:2]
    xy = (points_camera @ K.T)[:, :2] / points_camera[:, 2:3]
    col = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, h - 1)
    with np.errstate(invalid="ignore"):
        seen = np.abs(pointmap[row, col, 2] - points_camera[:, 2]) < 0.015
    return row, col, seen


def sample_truth(maps: dict, points_camera: np.ndarray):
    """(class id or -1 where unseen, albedo sRGB 0-255) from a shared sample's true maps: Hair or
    Face_Neck by the nearer of the two colours, over the head pixels the seg calls either."""
    from engine.avatar.labels import class_ids
    from engine.colour import linear_to_srgb

    hair_id, face_id = class_ids(["Hair", "Face_Neck"])
    albedo, seg, pointmap, K = maps["albedo"], maps["seg"], maps["pointmap"], maps["K"]
    row, col, seen = _photo_pixels(points_camera, pointmap, K)
    head = np.isin(seg, [hair_id, face_id])
    hair_colour = np.median(albedo[seg == hair_id], axis=0)
    skin_colour = np.median(albedo[seg == face_id], axis=0)
    axis = skin_colour - hair_colour
    towards_skin = ((albedo[row, col] - hair_colour) @ axis) / (axis @ axis)
    cls = np.where(towards_skin < 0.5, hair_id, face_id)
    cls = np.where(seen & head[row, col], cls, np.where(seen, seg[row, col], -1))
    return cls.astype(np.int64), 255.0 * linear_to_srgb(np.clip(albedo[row, col], 0.0, 1.0))


COLLAR_BAND_M = 0.015
COLLAR_ZONE_PX = 6
COLLAR_MIN_PIXELS = 200


def sample_collar_class(maps: dict, points_camera: np.ndarray) -> np.ndarray:
    """The class (Face_Neck, Upper_Clothing, or -1) of the points a shared sample's photo sees on
    pixels its seg calls either and whose true albedo is nearer one of the two classes' medians
    than the hair's: by the nearer of the two (the seg is ragged on purpose, the albedo is not);
    only within COLLAR_ZONE_PX of both classes' pieces of COLLAR_MIN_PIXELS or more."""
    from engine.avatar.labels import class_ids

    face_id, cloth_id, hair_id = class_ids(["Face_Neck", "Upper_Clothing", "Hair"])
    albedo, seg, pointmap, K = maps["albedo"], maps["seg"], maps["pointmap"], maps["K"]
    row, col, seen = _photo_pixels(points_camera, pointmap, K)
    if not (seg == face_id).any() or not (seg == cloth_id).any():
        return np.full(len(points_camera), -1, np.int64)
    skin = np.median(albedo[seg == face_id], axis=0)
    cloth = np.median(albedo[seg == cloth_id], axis=0)
    axis = skin - cloth
    colour = np.nan_to_num(albedo)
    towards_skin = ((colour - cloth) @ axis) / (axis @ axis)
    either = np.isin(seg, [face_id, cloth_id])
    if (seg == hair_id).any():  # a ragged seg's hair pixels called face or shirt are neither
        to_hair = np.linalg.norm(colour - np.median(albedo[seg == hair_id], axis=0), axis=-1)
        either &= to_hair > np.minimum(np.linalg.norm(colour - skin, axis=-1), np.linalg.norm(colour - cloth, axis=-1))
    # the collar: pixels within COLLAR_ZONE_PX of both classes' large pieces (specks and the mixed
    # pixels along a lock of hair are left out)
    from scipy import ndimage

    zone = np.ones_like(either)
    for part in (either & (towards_skin >= 0.5), either & (towards_skin < 0.5)):
        pieces, _ = ndimage.label(part)
        large = part & (np.bincount(pieces.ravel())[pieces] >= COLLAR_MIN_PIXELS)
        zone &= ndimage.binary_dilation(large, iterations=COLLAR_ZONE_PX)
    keep = (either & zone)[row, col] & seen
    return np.where(keep, np.where(towards_skin[row, col] >= 0.5, face_id, cloth_id), -1).astype(np.int64)


def collar_figures(avatar: dict, collar_class: np.ndarray, truth_colour: np.ndarray, colour_truth: bool = True) -> dict:
    """The neck/shirt border on the front island (see the module's doc): slot and texture shares
    on the wrong side, within COLLAR_BAND_M of the other class (the texture's share NaN unless
    `colour_truth`: the true colours are the photo's); {} without both classes."""
    from scipy.spatial import cKDTree

    from engine.avatar.labels import class_ids

    face_id, cloth_id = class_ids(["Face_Neck", "Upper_Clothing"])
    front = avatar["island"] == 0
    points = avatar["points"]
    is_skin, is_cloth = (collar_class == face_id) & front, (collar_class == cloth_id) & front
    if not is_skin.any() or not is_cloth.any():
        return {}
    near_cloth = cKDTree(points[is_cloth]).query(points, distance_upper_bound=COLLAR_BAND_M)[0] < COLLAR_BAND_M
    near_skin = cKDTree(points[is_skin]).query(points, distance_upper_bound=COLLAR_BAND_M)[0] < COLLAR_BAND_M
    band_skin, band_cloth = is_skin & near_cloth, is_cloth & near_skin
    ws, wc = avatar["weights"] * band_skin, avatar["weights"] * band_cloth
    if ws.sum() == 0 or wc.sum() == 0:
        return {}
    skin_colour = np.average(truth_colour[band_skin], axis=0, weights=ws[band_skin])
    cloth_colour = np.average(truth_colour[band_cloth], axis=0, weights=wc[band_cloth])
    axis = skin_colour - cloth_colour
    looks_skin = ((avatar["colours"] - cloth_colour) @ axis) / max(float(axis @ axis), 1e-9) >= 0.5
    slot_skin = avatar["slots"] == "skin"
    return {
        "skin->cloth": float((ws * ~slot_skin).sum() / ws.sum()),
        "cloth->skin": float((wc * slot_skin).sum() / wc.sum()),
        "colour->": float(((ws * ~looks_skin).sum() + (wc * looks_skin).sum()) / (ws.sum() + wc.sum()))
        if colour_truth else float("nan"),
        "area_cm2": float((ws.sum() + wc.sum()) * 1e4),
    }


# a side of a hem's or a shoe's band smaller than this is no figure (the samples' hidden island:
# a few edge-on samples)
LEG_MIN_BAND_CM2 = 5.0


def leg_border_figures(avatar: dict, leg_class: np.ndarray) -> dict:
    """The hems' and the shoes' tops' slots on the wrong side (module doc), per island:
    {island: {'skin->cloth', 'cloth->skin', 'shoe->off', 'off->shoe' (NaN where a side of a
    border's band is under LEG_MIN_BAND_CM2), 'hem_cm2', 'shoe_cm2'}}; leg_class: the true class
    per sample (-1: unknown)."""
    from engine.avatar.labels import class_ids
    from engine.geometry.refine_border import LEG_CLOTHING_CLASSES, LEG_SKIN_CLASSES, SHOE_CLASSES

    skin, cloth, shoe = (np.isin(leg_class, class_ids(names)) for names in (LEG_SKIN_CLASSES, LEG_CLOTHING_CLASSES, SHOE_CLASSES))
    out = {}
    for island, name in ((0, "seen"), (1, "hidden")):
        on = avatar["island"] == island
        figures = {}
        for (one, other), (wrong_one, wrong_other), slot, area in (
                ((skin, cloth), ("skin->cloth", "cloth->skin"), "skin", "hem_cm2"),
                ((shoe, skin | cloth), ("shoe->off", "off->shoe"), "shoes", "shoe_cm2")):
            w_one, w_other = _band_weights(avatar, one & on, other & on, COLLAR_BAND_M)
            in_slot = avatar["slots"] == slot
            if min(w_one.sum(), w_other.sum()) * 1e4 < LEG_MIN_BAND_CM2:
                figures.update({wrong_one: float("nan"), wrong_other: float("nan"), area: 0.0})
                continue
            figures.update({wrong_one: float((w_one * ~in_slot).sum() / w_one.sum()),
                            wrong_other: float((w_other * in_slot).sum() / w_other.sum()),
                            area: float((w_one.sum() + w_other.sum()) * 1e4)})
        if figures["hem_cm2"] or figures["shoe_cm2"]:
            out[name] = figures
    return out


def _band_weights(avatar: dict, one: np.ndarray, other: np.ndarray, band_m: float):
    """The area weights of the `one` samples within band_m of an `other` sample, and of the
    `other` ones within band_m of a `one` (zeros where either is empty)."""
    from scipy.spatial import cKDTree

    zero = np.zeros(len(one))
    if not one.any() or not other.any():
        return zero, zero
    points = avatar["points"]
    near_other = cKDTree(points[other]).query(points, distance_upper_bound=band_m)[0] < band_m
    near_one = cKDTree(points[one]).query(points, distance_upper_bound=band_m)[0] < band_m
    return avatar["weights"] * (one & near_other), avatar["weights"] * (other & near_one)


LEG_SEG_WINDOW = 3  # the samples' shorts | leg truth: the seg's majority over 7 x 7 pixels


def sample_leg_class(maps: dict, points_camera: np.ndarray) -> np.ndarray:
    """The true class (a shoe, bare leg or shorts class, or -1) of the points a shared sample's
    photo sees on the pixels its seg calls a leg, shorts or shoe class: a shoe when the true
    albedo is nearer the shoes' median than the legs' (the seg is ragged, the albedo is not),
    else the leg / shorts class most of the seg's pixels within LEG_SEG_WINDOW carry (the two
    are one grey: only the seg, smoothed, tells them)."""
    from engine.avatar.labels import class_ids
    from engine.geometry.refine_border import LEG_CLOTHING_CLASSES, LEG_SKIN_CLASSES, SHOE_CLASSES

    albedo, seg, pointmap, K = maps["albedo"], maps["seg"], maps["pointmap"], maps["K"]
    row, col, seen = _photo_pixels(points_camera, pointmap, K)
    shoe_ids, leg_ids = class_ids(SHOE_CLASSES), class_ids(LEG_SKIN_CLASSES + LEG_CLOTHING_CLASSES)
    is_shoe, is_leg = np.isin(seg, shoe_ids), np.isin(seg, leg_ids)
    unknown = np.full(len(points_camera), -1, np.int64)
    if not is_shoe.any() or not is_leg.any():
        return unknown
    colour = np.nan_to_num(albedo[row, col])
    to_shoe = np.linalg.norm(colour - np.median(albedo[is_shoe], axis=0), axis=1)
    to_leg = np.linalg.norm(colour - np.median(albedo[np.isin(seg, class_ids(LEG_SKIN_CLASSES))], axis=0), axis=1)
    # the leg / shorts class most of the window's pixels carry (shoe pixels do not vote)
    h, w = seg.shape
    votes = np.zeros((len(row), int(seg.max()) + 1))
    rows = np.arange(len(row))
    for dr in range(-LEG_SEG_WINDOW, LEG_SEG_WINDOW + 1):
        for dc in range(-LEG_SEG_WINDOW, LEG_SEG_WINDOW + 1):
            says = seg[np.clip(row + dr, 0, h - 1), np.clip(col + dc, 0, w - 1)].astype(np.int64)
            votes[rows, says] += np.isin(says, leg_ids)
    leg_class = np.argmax(votes, axis=1)
    on_either = (is_shoe | is_leg)[row, col] & seen
    return np.where(on_either, np.where(to_shoe < to_leg, shoe_ids[0], np.where(votes[rows, leg_class] > 0, leg_class, -1)),
                    unknown).astype(np.int64)


def hairline_figures(avatar: dict, truth_class: np.ndarray, truth_colour: np.ndarray, band_m: float) -> dict:
    from scipy.spatial import cKDTree

    from engine.avatar.labels import class_ids

    hair_id, face_id = class_ids(["Hair", "Face_Neck"])
    points = avatar["points"]
    is_hair, is_face = truth_class == hair_id, truth_class == face_id
    out = {}
    if not is_hair.any() or not is_face.any():
        return out
    near_face = cKDTree(points[is_face]).query(points, distance_upper_bound=band_m)[0] < band_m
    near_hair = cKDTree(points[is_hair]).query(points, distance_upper_bound=band_m)[0] < band_m
    band_face, band_hair = is_face & near_hair, is_hair & near_face
    for island, name in ((0, "seen"), (1, "hidden")):
        on = avatar["island"] == island
        wf, wh = avatar["weights"] * (band_face & on), avatar["weights"] * (band_hair & on)
        if wf.sum() == 0 or wh.sum() == 0:
            continue
        slot_hair = avatar["slots"] == "hair"
        error = np.abs(avatar["colours"] - truth_colour).mean(axis=1)
        band = wf + wh
        out[name] = {
            "skin->hair": float((wf * slot_hair).sum() / wf.sum()),
            "hair->skin": float((wh * ~slot_hair).sum() / wh.sum()),
            "colour": float((band * error).sum() / band.sum()),
            "area_cm2": float(band.sum() * 1e4),
        }
    return out


@contextmanager
def hairline(variant: str):
    """The build as it is (`smooth`), without the occluding-edge colour fix (`raw`: every seen
    vertex reading its own pixel's colour, also beside an occluding edge), without the face/hair
    border's refinement (`coarse`: engine.geometry.refine_border skipped, slots follow the
    solid's own triangles), without the split along the head's island seam (`seam`:
    refine_seam skipped, the islands cut along whole triangles as every face reads its own
    weight) or without the hems' and the shoes' borders (`legs`: refine_border.BORDERS' first
    two only)."""
    from engine.avatar import appearance, stages
    from engine.geometry import refine_border as refine

    saved_layer, saved_refine, saved_seam = appearance._onto_its_own_layer, stages.refine_border, refine.refine_seam
    saved_borders = refine.BORDERS
    if variant == "raw":
        appearance._onto_its_own_layer = lambda vertices, photo_xy, pointmap, *_: photo_xy
    if variant == "coarse":
        stages.refine_border = lambda vertices, faces, labels, **_: (vertices, faces, labels)
    if variant == "seam":
        refine.refine_seam = lambda v, f, lab, fw, vw, **_: (v, f, lab, fw, vw, np.zeros(len(f), bool))
    if variant == "legs":
        refine.BORDERS = saved_borders[:2]
    try:
        yield
    finally:
        appearance._onto_its_own_layer, stages.refine_border, refine.refine_seam = saved_layer, saved_refine, saved_seam
        refine.BORDERS = saved_borders


def border_seconds(bundle_dir: Path, reps: int) -> dict:
    """stages.refine_head on the bundle's closed surface with BORDERS' first two (`before`) and
    with all (`after`), runs interleaved: median seconds and the face counts."""
    import time

    from engine.avatar import stages
    from engine.geometry import refine_border as refine

    inputs = stages.read(bundle_dir, detail="normals", rig=None)
    built = stages.surface(inputs, detail="normals", resolution="full", watertight=True, target_faces=None, progress=None)
    photos = [refine.Photo(inputs.bundle.seg, inputs.bundle.pointmap, inputs.K)]
    vertices = np.asarray(built.vertices, np.float64)
    seconds, faces = {"before": [], "after": []}, {"solid": len(built.faces)}
    borders = refine.BORDERS
    try:
        for _ in range(reps):
            for variant, kept in (("before", borders[:2]), ("after", borders)):
                refine.BORDERS = kept
                clock = time.perf_counter()
                _, out_faces, _ = stages.refine_head(vertices, built.faces, built.vertex_labels, photos)
                seconds[variant].append(time.perf_counter() - clock)
                faces[variant] = len(out_faces)
    finally:
        refine.BORDERS = borders
    return {"seconds": {k: float(np.median(v)) for k, v in seconds.items()}, "faces": faces}


def split_seconds(bundle_dir: Path, reps: int) -> dict:
    """Median seconds over `reps` runs on the bundle's closed surface of what the two splits add
    to a build: stages.refine_head; the seen weight alone (as without the seam split) and with
    its vertex average (what the split reads); refine_border.refine_seam."""
    import time

    from engine.avatar import islands, stages
    from engine.geometry.refine_border import Photo, refine_seam

    inputs = stages.read(bundle_dir, detail="normals", rig=None)
    built = stages.surface(inputs, detail="normals", resolution="full", watertight=True, target_faces=None, progress=None)
    bundle = inputs.bundle
    photos = [Photo(bundle.seg, bundle.pointmap, inputs.K)]
    runs: dict = {"refine_head": [], "seen weight": [], "seen weight with vertices": [], "seam split": []}
    for _ in range(reps):
        clock = time.perf_counter()
        vertices, faces, labels = stages.refine_head(np.asarray(built.vertices, np.float64), built.faces, built.vertex_labels, photos)
        runs["refine_head"].append(time.perf_counter() - clock)
        clock = time.perf_counter()
        weight = islands.seen_weight(vertices, faces, bundle.pointmap, inputs.K)
        runs["seen weight"].append(time.perf_counter() - clock)
        clock = time.perf_counter()
        weight, vertex_weight = islands.seen_weight(vertices, faces, bundle.pointmap, inputs.K, with_vertices=True)
        runs["seen weight with vertices"].append(time.perf_counter() - clock)
        clock = time.perf_counter()
        refine_seam(vertices, faces, labels, weight, vertex_weight, photos=photos)
        runs["seam split"].append(time.perf_counter() - clock)
    return {name: float(np.median(values)) for name, values in runs.items()}


def people(args):
    """(name, bundle, truth function, collar truth or None, legs' truth or None) per person."""
    from engine.synthetic import make_person, to_bundle

    width, height = (int(v) for v in args.size.split("x"))
    poses = ["bent", "arms_forward", None, "step", None, "apose"]
    for outfit in args.outfits.split(","):
        for i in range(args.synthetic):
            seed, pose = 101 + i, poses[i % len(poses)]
            person = make_person(seed, pose=pose, width=width, height=height, outfit=outfit)
            dressed = "" if outfit == "trousers" else f"{outfit}-"
            yield (f"synthetic {dressed}{pose or 'random'}-{seed}", to_bundle(person),
                   lambda p, person=person: synthetic_truth(person, p), None, None)
    if args.samples:
        from PIL import Image

        from engine.bundle import Bundle

        for sample in sorted(SAMPLES.glob("person_*")):
            maps = dict(np.load(sample / "gt_maps.npz"))
            keypoints = np.array(json.loads((sample / "keypoints.json").read_text())["keypoints"], np.float32)
            image = np.asarray(Image.open(sample / "image.png").convert("RGB"))
            bundle = Bundle(image=image, mask=maps["mask"], keypoints=keypoints, seg=maps["seg"], normal=maps["normal"],
                            pointmap=maps["pointmap"], albedo=maps["albedo"], K=maps["K"],
                            meta={"photo": {"name": sample.name + ".png"}, "notes": []})
            yield (f"sample {sample.name}", bundle, lambda p, maps=maps: sample_truth(maps, p),
                   lambda p, maps=maps: sample_collar_class(maps, p), lambda p, maps=maps: sample_leg_class(maps, p))


def main() -> None:
    from engine.avatar.build import build_avatar
    from engine.bundle import write_bundle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="768x1024", help="synthetic people's photo size WxH")
    parser.add_argument("--synthetic", type=int, default=3, help="how many engine.synthetic people")
    parser.add_argument("--outfits", default="trousers", help="engine.synthetic outfits, comma-separated (trousers, shorts)")
    parser.add_argument("--samples", action="store_true", help="also ../shared/samples' three people")
    parser.add_argument("--band-cm", type=float, default=3.0)
    parser.add_argument("--keep", type=Path, help="keep the avatars under this folder")
    parser.add_argument("--time", type=int, default=0, metavar="R", help="also time the splits, median of R runs")
    parser.add_argument("--compare", action="store_true", help="also without one of the hairline's fixes (--against)")
    parser.add_argument("--against", choices=["coarse", "seam", "raw", "legs"], default="coarse",
                        help="coarse: without the border's refinement; seam: without the split along the head's island seam; "
                             "raw: without the occluding-edge colour fix; legs: without the hems' and shoes' borders")
    args = parser.parse_args()
    print(f"hairline band {args.band_cm} cm; skin->hair, hair->skin: shares of the band's true skin/hair area in the "
          "wrong slot; colour: mean |texture - true albedo|, sRGB levels")
    totals: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for name, bundle, truth, collar_truth, legs_truth in people(args):
            slug = name.replace(" ", "_")
            bundle_dir = write_bundle(bundle, Path(tmp) / f"{slug}_bundle")
            if args.time:
                seconds = split_seconds(bundle_dir, args.time)
                print(f"{name:28s} refine_head {seconds['refine_head']:.3f} s  seen weight {seconds['seen weight']:.3f} s, "
                      f"with vertices {seconds['seen weight with vertices']:.3f} s  refine_seam {seconds['seam split']:.3f} s "
                      f"(median of {args.time}; load {os.getloadavg()[0]:.1f})", flush=True)
                if args.against == "legs":
                    cost = border_seconds(bundle_dir, args.time)
                    print(f"{name:28s} refine_head two borders {cost['seconds']['before']:.3f} s, all {cost['seconds']['after']:.3f} s; "
                          f"faces solid {cost['faces']['solid']} -> {cost['faces']['before']} -> {cost['faces']['after']} "
                          f"(interleaved, median of {args.time}; load {os.getloadavg()[0]:.1f})", flush=True)
            for variant in (["smooth", args.against] if args.compare else ["smooth"]):
                with hairline(variant):
                    out = build_avatar(bundle_dir, root / f"{slug}_{variant}", formats="glb,ply")
                avatar = avatar_samples(out)
                truth_class, truth_colour = truth(avatar["points"])
                figures = hairline_figures(avatar, truth_class, truth_colour, args.band_cm / 100.0)
                seam = head_seam(out)
                seam_figures = (seam["wobble_mm"], seam_colour(avatar, seam, truth_class, truth_colour), seam["length_m"])
                totals.setdefault((name.split()[0], variant, "seam"), []).append(seam_figures)
                line = (f"{name:28s} {variant:6s} border {avatar['border_m']:5.2f} m  head seam: wobble {seam_figures[0]:4.2f} mm  "
                        f"colour {seam_figures[1]:6.2f}  length {seam_figures[2]:4.2f} m")
                for island, f in figures.items():
                    line += (f"  {island}: skin->hair {100 * f['skin->hair']:5.1f} %  hair->skin {100 * f['hair->skin']:5.1f} %  "
                             f"colour {f['colour']:6.2f} ({f['area_cm2']:4.0f} cm2)")
                    totals.setdefault((name.split()[0], variant, island), []).append(
                        (f["skin->hair"], f["hair->skin"], f["colour"], avatar["border_m"]))
                collar_class = truth_class if collar_truth is None else collar_truth(avatar["points"])
                collar = collar_figures(avatar, collar_class, truth_colour, colour_truth=collar_truth is not None)
                if collar:
                    texture = "" if np.isnan(collar["colour->"]) else f"  colour-> {100 * collar['colour->']:5.1f} %"
                    line += (f"  collar: skin->cloth {100 * collar['skin->cloth']:5.1f} %  cloth->skin "
                             f"{100 * collar['cloth->skin']:5.1f} %{texture} ({collar['area_cm2']:4.0f} cm2)")
                    totals.setdefault((name.split()[0], variant, "collar"), []).append(
                        (collar["skin->cloth"], collar["cloth->skin"], collar["colour->"]))
                legs = leg_border_figures(avatar, truth_class if legs_truth is None else legs_truth(avatar["points"]))
                faces = len(trimesh_faces(out / "mesh.ply"))
                line += f"  faces {faces}"
                totals.setdefault((name.split()[0], variant, "faces"), []).append((faces,))
                for island, f in legs.items():
                    line += (f"  {island} hems: skin->cloth {100 * f['skin->cloth']:5.1f} %  cloth->skin {100 * f['cloth->skin']:5.1f} % "
                             f"({f['hem_cm2']:4.0f} cm2)  shoes: shoe->off {100 * f['shoe->off']:5.1f} %  off->shoe "
                             f"{100 * f['off->shoe']:5.1f} % ({f['shoe_cm2']:4.0f} cm2)")
                    totals.setdefault((name.split()[0], variant, f"legs {island}"), []).append(
                        (f["skin->cloth"], f["cloth->skin"], f["shoe->off"], f["off->shoe"]))
                print(line, flush=True)
    for (kind, variant, island), values in sorted(totals.items()):
        if island == "faces":
            print(f"mean {kind:9s} {variant:6s} faces {np.mean(values):.0f}")
            continue
        if island.startswith("legs"):
            s2c, c2s, s2o, o2s = np.nanmean(values, axis=0)
            print(f"mean {kind:9s} {variant:6s} {island[5:]:6s} hems skin->cloth {100 * s2c:5.1f} %  cloth->skin {100 * c2s:5.1f} %  "
                  f"shoes shoe->off {100 * s2o:5.1f} %  off->shoe {100 * o2s:5.1f} %")
            continue
        if island == "collar":
            s2c, c2s, wrong = np.mean(values, axis=0)
            texture = "" if np.isnan(wrong) else f"  texture on the wrong side {100 * wrong:5.1f} %"
            print(f"mean {kind:9s} {variant:6s} collar skin->cloth {100 * s2c:5.1f} %  cloth->skin {100 * c2s:5.1f} %{texture}")
            continue
        if island == "seam":
            wobble, colour, length = np.nanmean(values, axis=0)
            print(f"mean {kind:9s} {variant:6s} head seam wobble {wobble:4.2f} mm  colour {colour:6.2f}  length {length:4.2f} m")
            continue
        s2h, h2s, colour, border = np.mean(values, axis=0)
        print(f"mean {kind:9s} {variant:6s} {island:6s} skin->hair {100 * s2h:5.1f} %  hair->skin {100 * h2s:5.1f} %  colour {colour:6.2f}  "
              f"border {border:5.2f} m")
    print(f"load average {os.getloadavg()[0]:.1f} (a shared machine: figures only, no timings)")


if __name__ == "__main__":
    main()
