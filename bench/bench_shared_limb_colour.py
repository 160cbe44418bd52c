"""The hidden side's colour of the shared people's skin limbs (../shared/samples) against their true albedo.

Usage: .venv/bin/python bench/bench_shared_limb_colour.py [--people person_102] [--avatar DIR]

Each person is built as the default avatar from its exact maps (bench/look_avatars.py's shared
bundle, build_avatar's defaults), or --avatar names a built one (one person). The mannequins' skin
is one albedo, so the truth of a skin part is its pixels' median albedo in gt_maps (sRGB); each
avatar vertex's true class is that of the nearest true vertex (gt_mesh.ply), labelled as
bench/bench_shared_labels.py labels it (its pixel where seen, else the geodesically nearest seen
one's). Printed per skin part (forearms, upper arms, hands), front and hidden island apart: the
vertices, their texture colour's mean |error| against the truth in sRGB levels, and the share more
than 20 levels off (specks of another part's colour). And the reverse: of the vertices whose truth is
the shirt (Upper_Clothing), per island, the share whose colour lies nearer the skin's albedo than
any of the shirt's own colours (skin patches on the shirt, the back behind an arm). Nothing asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

PARTS = ("Right_Lower_Arm", "Left_Lower_Arm", "Right_Upper_Arm", "Left_Upper_Arm", "Right_Hand", "Left_Hand")
SPECK = 20.0  # sRGB levels: a texel this far off the skin shows another part's colour


def limb_errors(name: str, avatar: Path) -> dict:
    """{(part, island): (vertices, mean |error|, share > SPECK)} of one built avatar."""
    import trimesh
    from scipy.spatial import cKDTree

    from bench_back_colour import avatar_surface
    from bench_shared_labels import SAMPLES, true_vertex_classes
    from engine.avatar.labels import class_ids
    from engine.colour import linear_to_srgb

    with np.load(SAMPLES / name / "gt_maps.npz") as data:
        maps = {k: data[k] for k in data.files}
    true = trimesh.load(SAMPLES / name / "gt_mesh.ply", process=False)
    true_v = np.asarray(true.vertices, np.float64)
    true_cls = true_vertex_classes(maps, true_v, np.asarray(true.faces))
    camera, _, colours, island = avatar_surface(avatar)
    _, nearest = cKDTree(true_v).query(camera, workers=-1)
    truth = true_cls[nearest]
    out = {}
    shirt = class_ids(["Upper_Clothing"])[0]
    skin = 255.0 * linear_to_srgb(np.median(maps["albedo"][maps["seg"] == class_ids(["Left_Upper_Arm"])[0]], axis=0))
    shirt_colours = np.unique(np.round(255.0 * linear_to_srgb(maps["albedo"][maps["seg"] == shirt]) / 8) * 8, axis=0)
    if len(shirt_colours):
        nearer_skin = np.linalg.norm(colours - skin, axis=1) < cKDTree(shirt_colours).query(colours)[0]
        for side, which in (("front", 0), ("hidden", 1)):
            on = (truth == shirt) & (island == which)
            if on.any():
                out["Upper_Clothing coloured as skin", side] = (int(on.sum()), float("nan"), float(nearer_skin[on].mean()))
    for part in PARTS:
        cid = class_ids([part])[0]
        albedo = 255.0 * linear_to_srgb(np.median(maps["albedo"][maps["seg"] == cid], axis=0))
        for side, which in (("front", 0), ("hidden", 1)):
            err = np.abs(colours[(truth == cid) & (island == which)] - albedo).mean(axis=1)
            if len(err):
                out[part, side] = (len(err), float(err.mean()), float((err > SPECK).mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", default="person_102")
    parser.add_argument("--avatar", type=Path, help="a built avatar of the one person named (skips the build)")
    args = parser.parse_args()
    from look_avatars import SHARED_SAMPLES, build, shared_bundle

    for name in args.people.split(","):
        with tempfile.TemporaryDirectory() as work:
            avatar = args.avatar
            if avatar is None:
                avatar = Path(work) / "avatar"
                build([shared_bundle(SHARED_SAMPLES / name, Path(work) / "bundle")], avatar)
            for (part, side), (n, err, specks) in limb_errors(name, avatar).items():
                if np.isnan(err):
                    print(f"{name} {part} {side:6s} vertices {n:5d}  nearer the skin: {100 * specks:5.2f} %")
                    continue
                print(f"{name} {part:16s} {side:6s} vertices {n:5d}  error {err:5.2f}  > {SPECK:.0f}: {100 * specks:5.1f} %")


if __name__ == "__main__":
    main()
