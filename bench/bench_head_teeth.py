"""How ragged the hair/skin edge on the seen side of a closed avatar's head is (issue 13's teeth).

Usage: .venv/bin/python bench/bench_head_teeth.py AVATAR_DIR BUNDLE_DIR [--seed 102 --pose arms_forward --size 768x1024]

For an avatar of an engine.synthetic person, e.g. `bench/look_avatars.py --out DIR --cases crops`
(AVATAR_DIR = DIR/avatars/crops-102, BUNDLE_DIR = DIR/work/bundles/crops-102). Over the front island's
faces on the head (the true class at their centre Hair or Face_Neck, within 4 cm of both):

- `iso-line`: the length (m) of the line where the texture (read at each vertex's UV, one value per
  corner, linear over the triangle) is halfway between the true hair's and the true skin's colour: a
  toothed edge is long. `truth` is the same line of the true class read at the vertices (1 hair, 0
  skin), whose zigzag across the triangles makes it a little longer than the true smooth edge.
- `stretched`: the faces whose corners' reads span more than 1.5 px (3 px) of the photo beyond their
  own projection's span (a triangle whose corners read across the photo's staircase).
- `skin->hair` / `hair->skin`: the shares of the true skin / hair area (faces) whose texture is nearer
  the other; `colour`: the area-weighted mean |texture - true albedo| (sRGB levels).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_hairline import bilinear, synthetic_truth  # noqa: E402

EDGES = ((0, 1), (1, 2), (2, 0))


def avatar_mesh(out_dir: Path):
    """(vertices in the camera frame, faces, texel xy, the avatar's manifest) over all slots."""
    import trimesh
    from PIL import Image

    manifest = json.loads((out_dir / "avatar.json").read_text())
    tw, th = Image.open(out_dir / "textures" / "albedo.png").size
    to_camera = np.linalg.inv(np.asarray(manifest["camera_to_avatar"], np.float64))
    scene = trimesh.load(out_dir / "avatar.glb", force="scene", process=False)
    vertices, faces, texels, count = [], [], [], 0
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry[name]
        vertices.append(trimesh.transform_points(trimesh.transform_points(geometry.vertices, transform), to_camera))
        faces.append(np.asarray(geometry.faces) + count)
        texels.append(np.column_stack([geometry.visual.uv[:, 0] * tw, (1.0 - geometry.visual.uv[:, 1]) * th]))
        count += len(geometry.vertices)
    return np.concatenate(vertices), np.concatenate(faces), np.concatenate(texels), manifest


def iso_line_length(vertices: np.ndarray, faces: np.ndarray, values: np.ndarray) -> float:
    """Length (m) of the line where `values` (per vertex, linear over each face) crosses zero."""
    a, p = values[faces], vertices[faces]
    crosses = np.stack([a[:, i] * a[:, j] < 0 for i, j in EDGES], axis=1)
    points = np.stack([p[:, i] + (a[:, i] / np.where(crosses[:, k], a[:, i] - a[:, j], 1.0))[:, None] * (p[:, j] - p[:, i])
                       for k, (i, j) in enumerate(EDGES)], axis=1)
    two = crosses.sum(axis=1) == 2
    pick = np.argsort(~crosses[two], axis=1, kind="stable")[:, :2]
    ends = points[two][np.arange(int(two.sum()))[:, None], pick]
    return float(np.linalg.norm(ends[:, 0] - ends[:, 1], axis=1).sum())


def longest_side(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return np.max([np.linalg.norm(points[faces[:, i]] - points[faces[:, j]], axis=1) for i, j in EDGES], axis=0)


def main() -> None:
    from PIL import Image
    from scipy.spatial import cKDTree

    from engine.avatar.islands import project
    from engine.avatar.labels import class_ids
    from engine.bundle import read_bundle
    from engine.synthetic import make_person

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("avatar", type=Path)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--seed", type=int, default=102)
    parser.add_argument("--pose", default="arms_forward")
    parser.add_argument("--size", default="768x1024")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    person = make_person(args.seed, pose=None if args.pose == "random" else args.pose, width=width, height=height)
    K = read_bundle(args.bundle).K

    vertices, faces, texels, manifest = avatar_mesh(args.avatar)
    layout = manifest["textures"]["layout"]
    texture = np.asarray(Image.open(args.avatar / "textures" / "albedo.png").convert("RGB"), np.float64)
    colour = bilinear(texture, texels - 0.5)
    hair_id, face_id = class_ids(["Hair", "Face_Neck"])
    centres = vertices[faces].mean(axis=1)
    truth_class, truth_colour = synthetic_truth(person, centres)
    is_hair, is_skin = truth_class == hair_id, truth_class == face_id
    near_hair = cKDTree(centres[is_hair]).query(centres, distance_upper_bound=0.04)[0] < 0.04
    near_skin = cKDTree(centres[is_skin]).query(centres, distance_upper_bound=0.04)[0] < 0.04
    front = (texels[faces][:, :, 0] < layout["island_width"]).all(axis=1)
    head = front & (is_hair | is_skin) & near_hair & near_skin

    hair_colour, skin_colour = np.median(truth_colour[is_hair], axis=0), np.median(truth_colour[is_skin], axis=0)
    axis = hair_colour - skin_colour
    hairness = (colour - skin_colour) @ axis / (axis @ axis)  # per vertex: 0 skin, 1 hair
    vertex_class, _ = synthetic_truth(person, vertices)
    ragged = iso_line_length(vertices, faces[head], hairness - 0.5)
    truth = iso_line_length(vertices, faces[head], (vertex_class == hair_id) - 0.5)

    # the reads in photo pixels (the front island is the photo's crop, scaled)
    x0, y0, x1, y1 = layout["crop_photo_px"]
    read = np.column_stack([x0 + texels[:, 0] * (x1 - x0) / layout["island_width"],
                            y0 + texels[:, 1] * (y1 - y0) / texture.shape[0]])
    widened = longest_side(read, faces[head]) - longest_side(project(vertices, K), faces[head])

    area = 0.5 * np.linalg.norm(np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                                         vertices[faces[:, 2]] - vertices[faces[:, 0]]), axis=1)
    face_hairness = hairness[faces].mean(axis=1)
    skin_area, hair_area = area * (head & is_skin), area * (head & is_hair)
    error = np.abs(colour[faces].mean(axis=1) - truth_colour).mean(axis=1)
    print(f"{args.avatar.name}: front-island head {int(head.sum())} faces  iso-line {ragged:.3f} m (truth {truth:.3f} m)  "
          f"stretched >1.5 px {int((widened > 1.5).sum())}, >3 px {int((widened > 3).sum())}  "
          f"skin->hair {100 * (skin_area * (face_hairness > 0.5)).sum() / skin_area.sum():.1f} %  "
          f"hair->skin {100 * (hair_area * (face_hairness < 0.5)).sum() / hair_area.sum():.1f} %  "
          f"colour {np.average(error[head], weights=area[head]):.2f}")


if __name__ == "__main__":
    main()
