"""Back colour of a closed avatar from one photo, against the true albedo of the back; and the seam.

Usage: .venv/bin/python bench/bench_back_colour.py [--size 384x512] [--people 3] [--legacy] [--degraded]

Held-out engine.synthetic people (seeds 101..) are built as closed avatars (build_avatar,
watertight, exact maps with the true albedo, texture 1024). The same posed person is rendered
again from behind (yaw 180 deg): its albedo there is the truth of the back. Every avatar vertex
that the back camera sees (within 1.5 cm of its depth there) is coloured by the avatar's texture
at its UV and compared with the back render's albedo at its pixel; vertices seen by the front
camera likewise against the front render. Errors are mean absolute differences in sRGB levels
(0-255, all channels). --legacy also builds with the earlier hidden-side colour (the crop of
the photo again, face refilled from hair) for comparison. --degraded builds from the issue's
degraded maps instead (engine.synthetic.degrade, seeded per person: 1 cm smooth depth error with
zero mean, noise, blur, 3 deg normals, 2 px flying rim); the truth stays the exact renders.

The seam where the front and hidden islands meet: at every border vertex, the mean texture
colour of the front island's faces around it minus that of the hidden island's faces (the
colour step one sees crossing the border, about one edge, ~7 mm, each side), against the same
step of the true albedo at those vertices (nearest point of the true surface): `seam step`
is the mean |avatar step - true step| in sRGB levels (0 = the border shows only what the
person has there), `border` the border's length in metres (a saw-tooth border is long).
Printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def legacy_hidden_side_colour(bundle, window_colour, colour_valid, layout, window_seg=None):
    """The hidden side as built before: the photo crop again, face pixels refilled from hair."""
    from engine.avatar import textures as tx
    from engine.avatar.appearance import FRONT_ONLY_CLASSES, MIN_HAIR_PIXELS
    from engine.avatar.labels import class_ids

    if bundle.seg is None:
        return window_colour
    rows, cols = tx.crop_window(layout, colour_valid.shape)
    seg, valid = bundle.seg[rows, cols], colour_valid[rows, cols]
    front_only = np.isin(seg, class_ids(FRONT_ONLY_CLASSES))
    hair = valid & np.isin(seg, class_ids(["Hair"]))
    source = hair if hair.sum() >= MIN_HAIR_PIXELS else valid & ~front_only
    refill = tx.push_pull_fill(window_colour, source)
    return np.where(front_only[..., None], refill, window_colour)


def avatar_vertex_colours(out_dir: Path):
    """Avatar vertices in the camera frame, their texture colour (sRGB 0-255) and UVs (v down)."""
    import trimesh
    from PIL import Image

    manifest = json.loads((out_dir / "avatar.json").read_text())
    scene = trimesh.load(out_dir / "avatar.glb", force="scene")
    texture = np.asarray(Image.open(out_dir / "textures" / "albedo.png").convert("RGB"), np.float64)
    th, tw = texture.shape[:2]
    vertices, colours, uvs = [], [], []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry[name]
        uv = np.column_stack([geometry.visual.uv[:, 0], 1.0 - geometry.visual.uv[:, 1]])  # glTF v-down
        vertices.append(trimesh.transform_points(geometry.vertices, transform))
        uvs.append(uv)
        colours.append(texture[np.clip((uv[:, 1] * th).astype(int), 0, th - 1), np.clip((uv[:, 0] * tw).astype(int), 0, tw - 1)])
    to_avatar = np.asarray(manifest["camera_to_avatar"], np.float64)
    camera = trimesh.transform_points(np.concatenate(vertices), np.linalg.inv(to_avatar))
    return camera, np.concatenate(colours), np.concatenate(uvs)


def avatar_surface(out_dir: Path):
    """The avatar as one mesh: camera-frame vertices, faces, texture colour per vertex (sRGB
    0-255) and island per vertex (0 front, 1 hidden, from where its UV lies in the atlas)."""
    import trimesh
    from PIL import Image

    manifest = json.loads((out_dir / "avatar.json").read_text())
    layout = manifest["textures"]["layout"]
    scene = trimesh.load(out_dir / "avatar.glb", force="scene", process=False)
    texture = np.asarray(Image.open(out_dir / "textures" / "albedo.png").convert("RGB"), np.float64)
    th, tw = texture.shape[:2]
    vertices, faces, uvs, offset = [], [], [], 0
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry[name]
        vertices.append(trimesh.transform_points(geometry.vertices, transform))
        uvs.append(np.column_stack([geometry.visual.uv[:, 0], 1.0 - geometry.visual.uv[:, 1]]))
        faces.append(np.asarray(geometry.faces) + offset)
        offset += len(geometry.vertices)
    uv = np.concatenate(uvs)
    colours = texture[np.clip((uv[:, 1] * th).astype(int), 0, th - 1), np.clip((uv[:, 0] * tw).astype(int), 0, tw - 1)]
    island = (uv[:, 0] * tw >= layout["island_width"] + layout["gutter"] / 2).astype(np.int64)
    camera = trimesh.transform_points(np.concatenate(vertices), np.linalg.inv(np.asarray(manifest["camera_to_avatar"], np.float64)))
    return camera, np.concatenate(faces), colours, island


def true_albedo_srgb(person, points_camera: np.ndarray) -> np.ndarray:
    """The true albedo (sRGB 0-255) at the nearest point of the person's true surface: the
    material of the nearest triangle, striped like engine.synthetic's renderer does."""
    import open3d as o3d

    from engine.colour import linear_to_srgb
    from engine.synthetic.body import MATERIAL_COLOURS, MATERIALS, build_body, shirt_stripes, shorts_checker

    body = build_body(person.posed, person.meta.get("outfit", "trousers"), person.meta.get("detail", True))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(person.mesh.vertices, np.float32)), o3d.core.Tensor(body.faces.astype(np.uint32)))
    closest = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points_camera, np.float32)))
    face = closest["primitive_ids"].numpy().astype(np.int64)
    point_body = (closest["points"].numpy().astype(np.float64) - person.camera.body_to_camera[:3, 3]) @ person.camera.body_to_camera[:3, :3]
    material = body.face_materials[face]
    colour = MATERIAL_COLOURS[material].astype(np.float64)
    height = person.posed.skeleton.height
    shirt, shorts = material == MATERIALS["shirt"], material == MATERIALS["shorts"]
    colour[shirt] = np.where(shirt_stripes(point_body[shirt], height)[:, None] > 0, [0.78, 0.76, 0.70], colour[shirt])
    colour[shorts] = np.where(shorts_checker(point_body[shorts], height)[:, None] > 0, [0.75, 0.72, 0.62], colour[shorts])
    return 255.0 * linear_to_srgb(colour)


def seam_step(camera: np.ndarray, faces: np.ndarray, colours: np.ndarray, island: np.ndarray, truth: np.ndarray):
    """(mean |avatar step - true step| over the border, sRGB levels; border vertices; border
    length in metres). Copies of a vertex (same position) are one border point; its front side
    is the mean over the front faces around it, its hidden side over the hidden ones."""
    _, weld = np.unique(np.round(camera * 1e6).astype(np.int64), axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    face_island = island[faces[:, 0]]
    n = weld.max() + 1
    sides = []
    for value in (0, 1):
        f = faces[face_island == value]
        corner_point = np.repeat(weld[f], 3, axis=1).reshape(-1)  # each corner's point, once per vertex of its face
        neighbour = np.tile(f, (1, 3)).reshape(-1)  # ... paired with every vertex of that face
        count = np.bincount(corner_point, minlength=n)
        mean = [np.bincount(corner_point, c[neighbour], minlength=n) / np.maximum(count, 1)
                for c in (colours[:, 0], colours[:, 1], colours[:, 2], truth[:, 0], truth[:, 1], truth[:, 2])]
        sides.append((count > 0, np.stack(mean, 1)))
    border = sides[0][0] & sides[1][0]
    step = sides[0][1][border] - sides[1][1][border]
    error = np.abs(step[:, :3] - step[:, 3:]).mean()
    # border length: edges of front faces whose both ends are border points and that also bound a hidden face
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    welded = np.sort(weld[edges], axis=1)
    on_border = border[welded].all(axis=1)
    edge_island = np.tile(face_island, 3)
    front_edges = {tuple(e) for e in welded[on_border & (edge_island == 0)]}
    hidden_edges = {tuple(e) for e in welded[on_border & (edge_island == 1)]}
    shared = np.array(sorted(front_edges & hidden_edges)).reshape(-1, 2)
    first = np.zeros((n, 3))
    first[weld] = camera
    length = float(np.linalg.norm(first[shared[:, 0]] - first[shared[:, 1]], axis=1).sum())
    return float(error), int(border.sum()), length


def seen_colour_error(points_body, colours, view, tolerance=0.015):
    """Mean |texture - true albedo| (sRGB levels) over the vertices `view` (a Render) sees."""
    from engine.colour import linear_to_srgb

    cam = view.camera.to_camera(points_body)
    xy = view.camera.project(cam)
    H, W = view.mask.shape
    col, row = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
    col, row = np.clip(col, 0, W - 1), np.clip(row, 0, H - 1)
    seen = inside & view.mask[row, col] & (np.abs(view.pointmap[row, col, 2] - cam[:, 2]) < tolerance)
    truth = 255.0 * linear_to_srgb(view.albedo[row[seen], col[seen]])
    return float(np.abs(colours[seen] - truth).mean()), int(seen.sum())


def main() -> None:
    from engine.avatar import appearance
    from engine.avatar.build import build_avatar
    from engine.bundle import write_bundle
    from engine.synthetic import degrade, make_person, render, to_bundle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x512")
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--legacy", action="store_true", help="also the earlier hidden-side colour")
    parser.add_argument("--degraded", action="store_true", help="build from degraded maps (flying rim included)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    poses = ["bent", "arms_forward", None, "step", None, "apose"]
    variants = {"current": appearance._hidden_side_colour}
    if args.legacy:
        variants["legacy"] = legacy_hidden_side_colour
    print(f"back colour error, {width} x {height}{', degraded maps' if args.degraded else ''}, sRGB levels (mean |difference|)")
    totals: dict = {}
    for i in range(args.people):
        seed, pose = 101 + i, poses[i % len(poses)]
        person = make_person(seed, pose=pose, width=width, height=height)
        back = render(person.posed, width, height, yaw_deg=180.0)
        with tempfile.TemporaryDirectory() as tmp:
            given = degrade(person, seed=seed, flying_rim_px=2.0, centred=True) if args.degraded else person
            bundle_dir = write_bundle(to_bundle(given), Path(tmp) / "bundle")
            for name, hidden in variants.items():
                appearance._hidden_side_colour = hidden
                try:
                    out = build_avatar(bundle_dir, Path(tmp) / name, detail="normals", watertight=True, texture_size=1024)
                finally:
                    appearance._hidden_side_colour = variants["current"]
                camera, colours, _ = avatar_vertex_colours(out)
                body = (camera - person.camera.body_to_camera[:3, 3]) @ person.camera.body_to_camera[:3, :3]
                back_error, n_back = seen_colour_error(body, colours, back)
                front_error, n_front = seen_colour_error(body, colours, person)
                surface_camera, faces, surface_colours, island = avatar_surface(out)
                seam, n_seam, border_m = seam_step(surface_camera, faces, surface_colours, island,
                                                   true_albedo_srgb(person, surface_camera))
                totals.setdefault(name, []).append((front_error, back_error, seam, border_m))
                print(f"{pose or 'random'}-{seed:<4d} {name:8s} front {front_error:6.2f} ({n_front} vertices)  "
                      f"back {back_error:6.2f} ({n_back} vertices)  seam step {seam:6.2f} ({n_seam} border vertices, "
                      f"border {border_m:5.2f} m)", flush=True)
    for name, values in totals.items():
        front, back_, seam, border_m = np.mean(values, axis=0)
        print(f"mean {name:8s} front {front:6.2f}  back {back_:6.2f}  back/front {back_ / max(front, 1e-9):.2f}  "
              f"seam step {seam:6.2f}  border {border_m:5.2f} m")
    print(f"load average {os.getloadavg()[0]:.1f} (a shared machine: figures only, no timings)")


if __name__ == "__main__":
    main()
