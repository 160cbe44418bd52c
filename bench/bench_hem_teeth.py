"""How ragged the hems' and the sock tops' colour edges on the seen side of a closed avatar are (issue 13).

Usage: .venv/bin/python bench/bench_hem_teeth.py --out DIR [--seed 101 --pose bent --outfit shorts] [--without] [--rings N]

Builds an engine.synthetic person (shorts: bare legs, socks, shoes) into DIR (or reuses DIR's avatar)
and, over the front island's faces on a border (the true classes at their centre on the two sides,
within 4 cm of both), per border (leg skin | shorts, leg skin | sock, sock | shoe) the length (m) of the
line where the colour is halfway between the two sides' true colours (bench_head_teeth's iso-line: a
toothed edge is long), read three ways at the vertices, linear over each face:

- `texture`: the avatar's texture at each vertex's UV (what the avatar shows at its vertices);
- `reads`: the photo's albedo (sRGB) at the pixel each vertex reads (the texel mapped back to the photo's crop);
- `projections`: the photo's albedo at each vertex's own projection (no read moved);
- `truth`: the true class at the vertices (1 one side, 0 the other): the mesh's own zigzag.

`reads` far above `projections` says the reads make the teeth; the two alike, the photo and the mesh
do. `stretched`: faces whose reads span 1.5 px more of the photo than their projections. `teeth`:
the texture's own staircase inside the triangles (texture_teeth), which the vertex figures cannot
see. `--without` builds without appearance._smooth_hem_edges (HEM_EDGES emptied); `--rings` sets
appearance.LAYER_BORDER_RINGS for the legs and feet before building (the head's constant stays).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_hairline import bilinear, synthetic_truth  # noqa: E402
from bench_head_teeth import avatar_mesh, iso_line_length, longest_side  # noqa: E402

SIDES_CM = 4.0
# a bend of the texture's hem line larger than this (photo px) between texel columns is a corner
CORNER_PX = 1.5


def texture_teeth(texture, layout, seg, one_ids, other_ids, one_colour, other_colour):
    """(mean bend px, columns): over the front island's texels within 2 photo px of the seg's
    border between the two sides, per texel column of each stretch of border the row (photo px,
    sub-texel) where the texture crosses halfway between the two colours, and the mean |second
    difference| of that row along the columns: a staircase of the photo's pixels bends at every
    step, a smooth edge hardly at all. Columns crossing more or less than once are left out, and
    bends over CORNER_PX (a corner, not a tooth)."""
    from scipy import ndimage

    one, other = np.isin(seg, one_ids), np.isin(seg, other_ids)
    zone = ndimage.binary_dilation(one, iterations=2) & ndimage.binary_dilation(other, iterations=2)
    x0, y0, x1, y1 = layout["crop_photo_px"]
    sx, sy = (x1 - x0) / layout["island_width"], (y1 - y0) / texture.shape[0]
    axis = one_colour - other_colour
    labels, _ = ndimage.label(ndimage.binary_dilation(zone, iterations=2))
    bends = []
    for box in ndimage.find_objects(labels):
        r0, r1, c0, c1 = box[0].start, box[0].stop, box[1].start, box[1].stop
        t0, t1 = int((r0 - y0) / sy), int(np.ceil((r1 - y0) / sy))
        u0, u1 = int((c0 - x0) / sx), int(np.ceil((c1 - x0) / sx))
        if t0 < 0 or u0 < 0 or u1 > layout["island_width"] or t1 > texture.shape[0] or u1 - u0 < 12:
            continue
        t = (texture[t0:t1, u0:u1] - other_colour) @ axis / (axis @ axis) - 0.5
        rows_px = y0 + (np.arange(t0, t1) + 0.5) * sy
        cols_px = x0 + (np.arange(u0, u1) + 0.5) * sx
        inside = zone[np.clip(rows_px.astype(int), 0, seg.shape[0] - 1)][:, np.clip(cols_px.astype(int), 0, seg.shape[1] - 1)]
        crossing = (t[:-1] * t[1:] < 0) & inside[:-1] & inside[1:]
        once = crossing.sum(axis=0) == 1
        if once.sum() < 12:
            continue
        row = np.argmax(crossing, axis=0)
        cols = np.arange(t.shape[1])
        a, b = t[row, cols], t[row + 1, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            y = rows_px[row] + sy * a / (a - b)
        # the bend from one texel column to the next, on three columns in a row crossing once
        y = np.where(once, y, 0.0)
        bend = np.abs(y[2:] - 2 * y[1:-1] + y[:-2])
        three = once[2:] & once[1:-1] & once[:-2]
        # a bend of more than CORNER_PX is a corner of the border or a jump between two of its
        # stretches, not a tooth
        bends.append(bend[three & (bend <= CORNER_PX)])
    if not bends:
        return float("nan"), 0
    r = np.concatenate(bends)
    return float(r.mean()), len(r)


def borders():
    from engine.avatar.labels import class_ids
    from engine.geometry.refine_border import LEG_SKIN_CLASSES

    return {"skin|shorts": (class_ids(LEG_SKIN_CLASSES), class_ids(["Lower_Clothing"])),
            "skin|sock": (class_ids(LEG_SKIN_CLASSES), class_ids(["Left_Sock", "Right_Sock"])),
            "sock|shoe": (class_ids(["Left_Sock", "Right_Sock"]), class_ids(["Left_Shoe", "Right_Shoe"]))}


def build(out: Path, args) -> Path:
    from engine.avatar.build import build_avatar
    from engine.bundle import write_bundle
    from engine.synthetic import make_person, to_bundle

    person = make_person(args.seed, pose=None if args.pose == "random" else args.pose, width=args.width,
                         height=args.height, outfit=args.outfit)
    bundle_dir = write_bundle(to_bundle(person), out / "bundle")
    import engine.avatar.appearance as appearance
    if args.rings is not None:
        appearance.LAYER_BORDER_RINGS = args.rings
    if args.without:
        appearance.HEM_EDGES = ()
    build_avatar(bundle_dir, out / "avatar", formats="glb,ply")
    return person


def main() -> None:
    from PIL import Image
    from scipy.spatial import cKDTree

    from engine.avatar.islands import project
    from engine.bundle import read_bundle
    from engine.colour import linear_to_srgb
    from engine.synthetic import make_person

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--pose", default="bent")
    parser.add_argument("--outfit", default="shorts")
    parser.add_argument("--size", default="768x1024")
    parser.add_argument("--without", action="store_true", help="build without appearance._smooth_hem_edges")
    parser.add_argument("--rings", type=int, default=None, help="LAYER_BORDER_RINGS off the head (default: the engine's)")
    args = parser.parse_args()
    args.width, args.height = (int(v) for v in args.size.split("x"))
    if (args.out / "avatar" / "avatar.json").exists():
        person = make_person(args.seed, pose=None if args.pose == "random" else args.pose, width=args.width,
                             height=args.height, outfit=args.outfit)
    else:
        person = build(args.out, args)
    bundle = read_bundle(args.out / "bundle")
    vertices, faces, texels, manifest = avatar_mesh(args.out / "avatar")
    layout = manifest["textures"]["layout"]
    texture = np.asarray(Image.open(args.out / "avatar" / "textures" / "albedo.png").convert("RGB"), np.float64)
    # the texture is made from the bundle's albedo (linear), not the shaded photo
    photo = 255.0 * linear_to_srgb(np.asarray(bundle.albedo, np.float64))
    x0, y0, x1, y1 = layout["crop_photo_px"]
    read = np.column_stack([x0 + texels[:, 0] * (x1 - x0) / layout["island_width"],
                            y0 + texels[:, 1] * (y1 - y0) / texture.shape[0]])
    projected = project(vertices, bundle.K)
    colours = {"texture": bilinear(texture, texels - 0.5), "reads": bilinear(photo, read - 0.5),
               "projections": bilinear(photo, projected - 0.5)}
    centres = vertices[faces].mean(axis=1)
    face_class, face_colour = synthetic_truth(person, centres)
    vertex_class, _ = synthetic_truth(person, vertices)
    front = (texels[faces][:, :, 0] < layout["island_width"]).all(axis=1)
    line = f"{args.out.name} seed {args.seed} {args.pose} {args.outfit}:"
    for name, (one_ids, other_ids) in borders().items():
        one, other = np.isin(face_class, one_ids), np.isin(face_class, other_ids)
        if not one.any() or not other.any():
            continue
        near_one = cKDTree(centres[one]).query(centres, distance_upper_bound=SIDES_CM / 100)[0] < SIDES_CM / 100
        near_other = cKDTree(centres[other]).query(centres, distance_upper_bound=SIDES_CM / 100)[0] < SIDES_CM / 100
        band = front & (one | other) & near_one & near_other
        if band.sum() < 20:
            continue
        one_colour, other_colour = np.median(face_colour[one], axis=0), np.median(face_colour[other], axis=0)
        axis = one_colour - other_colour
        lengths = {kind: iso_line_length(vertices, faces[band], (c - other_colour) @ axis / (axis @ axis) - 0.5)
                   for kind, c in colours.items()}
        truth = iso_line_length(vertices, faces[band], np.isin(vertex_class, one_ids) - 0.5)
        teeth, columns = texture_teeth(texture, layout, np.asarray(bundle.seg), one_ids, other_ids, one_colour, other_colour)
        widened = longest_side(read, faces[band]) - longest_side(projected, faces[band])
        line += (f"\n  {name:11s} {int(band.sum()):5d} faces  iso-line texture {lengths['texture']:.3f}  reads "
                 f"{lengths['reads']:.3f}  projections {lengths['projections']:.3f}  truth {truth:.3f} m  "
                 f"stretched >1.5 px {int((widened > 1.5).sum())}  teeth (bend) {teeth:.3f} px ({columns} columns)")
    print(line)


if __name__ == "__main__":
    main()
