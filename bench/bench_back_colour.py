"""Back colour of a closed avatar from one photo, against the true albedo of the back.

Usage: .venv/bin/python bench/bench_back_colour.py [--size 384x512] [--people 3] [--legacy]

Held-out engine.synthetic people (seeds 101..) are built as closed avatars (build_avatar,
watertight, exact maps with the true albedo, texture 1024). The same posed person is rendered
again from behind (yaw 180 deg): its albedo there is the truth of the back. Every avatar vertex
that the back camera sees (within 1.5 cm of its depth there) is coloured by the avatar's texture
at its UV and compared with the back render's albedo at its pixel; vertices seen by the front
camera likewise against the front render. Errors are mean absolute differences in sRGB levels
(0-255, all channels). --legacy also builds with the earlier hidden-side colour (the crop of
the photo again, face refilled from hair) for comparison. Printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def legacy_hidden_side_colour(bundle, window_colour, colour_valid, layout):
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
    from engine.synthetic import make_person, render, to_bundle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x512")
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--legacy", action="store_true", help="also the earlier hidden-side colour")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    poses = ["bent", "arms_forward", None, "step", None, "apose"]
    variants = {"current": appearance._hidden_side_colour}
    if args.legacy:
        variants["legacy"] = legacy_hidden_side_colour
    print(f"back colour error, {width} x {height}, sRGB levels (mean |difference|)")
    totals: dict = {}
    for i in range(args.people):
        seed, pose = 101 + i, poses[i % len(poses)]
        person = make_person(seed, pose=pose, width=width, height=height)
        back = render(person.posed, width, height, yaw_deg=180.0)
        with tempfile.TemporaryDirectory() as tmp:
            bundle_dir = write_bundle(to_bundle(person), Path(tmp) / "bundle")
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
                totals.setdefault(name, []).append((front_error, back_error))
                print(f"{pose or 'random'}-{seed:<4d} {name:8s} front {front_error:6.2f} ({n_front} vertices)  "
                      f"back {back_error:6.2f} ({n_back} vertices)", flush=True)
    for name, values in totals.items():
        front, back_ = np.mean(values, axis=0)
        print(f"mean {name:8s} front {front:6.2f}  back {back_:6.2f}  back/front {back_ / max(front, 1e-9):.2f}")


if __name__ == "__main__":
    main()
