"""The closed solid's vertex labels on the shared people (../shared/samples/person_101..103) against
their true surface.

Usage: .venv/bin/python bench/bench_shared_labels.py [--people person_101,person_102,person_103]
                                                     [--save FILE.npz] [--against FILE.npz]
                                                     [--set NAME=VALUE ...]

Each person is built closed from its exact maps and its keypoints (build_surface: detail normals,
full resolution, watertight, no crops), as docs/avatar.md's thirteenth session measured "Shared
people". The shared people's true mesh (gt_mesh.ply) has no labels, so the truth is made from the
photo: a true vertex seen in the photo (its pixel's point within SEEN_M of it) takes its pixel's
class, every other one the class of the seen true vertex geodesically nearest (along the true mesh's
edges). Each built vertex's truth is that of its nearest true vertex.

Printed per person (nothing asserted): the share of built vertices whose label differs from the
truth (all, and the hidden ones: more than HIDDEN_M behind their pixel's front, or off the mask),
the hidden vertices whose truth is the trunk, its clothes or a leg (TRUNK_AND_LEGS) labelled a
forearm or a hand (the hip behind a hanging hand), the hidden vertices under an upper arm's pixel
whose truth is the arm labelled trunk (the arm's own back; watertight._behind_the_limbs) and the
reverse, and the largest confusions "true class labelled built class" in vertices. --save writes
every person's labels; --against a saved file counts the vertices relabelled since (the solids must
be the same: a label rule moves no point), and how many of those were wrong and are right now, and
the reverse. --set NAME=VALUE sets a constant of engine.geometry.watertight first (BEHIND_HANDS=0:
the build without _behind_the_hands).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SAMPLES = REPO.parent / "shared" / "samples"

SEEN_M = 0.01  # a true vertex this close to its pixel's point is the one the photo shows
HIDDEN_M = 0.02  # a built vertex this far behind its pixel's front is on the hidden side
TRUNK_AND_LEGS = ("Torso", "Upper_Clothing", "Lower_Clothing", "Apparel", "Left_Upper_Leg", "Right_Upper_Leg")
HAND_AND_FOREARM = ("Left_Hand", "Right_Hand", "Left_Lower_Arm", "Right_Lower_Arm")
UPPER_ARMS = ("Left_Upper_Arm", "Right_Upper_Arm")


def project(points: np.ndarray, K: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel row, column of each camera-frame point (clipped) and whether it falls in the image."""
    h, w = shape
    uvw = points @ K.T
    x, y = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return np.clip(y.astype(np.int64), 0, h - 1), np.clip(x.astype(np.int64), 0, w - 1), inside


def true_vertex_classes(maps: dict, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Class per true vertex: its pixel's where the photo sees it, else the geodesically nearest seen one's."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    seg, mask, pointmap, K = maps["seg"], maps["mask"], maps["pointmap"], maps["K"].astype(np.float64)
    r, c, inside = project(vertices, K, seg.shape)
    with np.errstate(invalid="ignore"):
        seen = inside & mask[r, c] & (np.linalg.norm(pointmap[r, c] - vertices, axis=1) < SEEN_M) & (seg[r, c] > 0)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    length = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)
    n = len(vertices)
    graph = coo_matrix((length, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    sources = np.flatnonzero(seen)
    _, _, nearest = dijkstra(graph, directed=False, indices=sources, min_only=True, return_predecessors=True)
    classes = np.zeros(n, np.int64)
    reached = nearest >= 0
    classes[reached] = seg[r[nearest[reached]], c[nearest[reached]]]
    return classes


def built(maps: dict, keypoints: np.ndarray):
    from engine.geometry import build_surface

    return build_surface(maps["pointmap"], maps["normal"], maps["mask"], maps["seg"], maps["K"].astype(np.float64),
                         detail="normals", resolution="full", watertight=True, keypoints=keypoints)


def measure(name: str) -> dict:
    import trimesh
    from scipy.spatial import cKDTree

    from engine.geometry.labels import class_ids

    with np.load(SAMPLES / name / "gt_maps.npz") as data:
        maps = {k: data[k] for k in data.files}
    true = trimesh.load(SAMPLES / name / "gt_mesh.ply", process=False)
    true_v = np.asarray(true.vertices, np.float64)
    true_cls = true_vertex_classes(maps, true_v, np.asarray(true.faces))
    keypoints = np.array(json.loads((SAMPLES / name / "keypoints.json").read_text())["keypoints"], np.float64)
    surface = built(maps, keypoints)
    vertices = np.asarray(surface.vertices, np.float64)
    labels = np.asarray(surface.vertex_labels, np.int64)
    _, nearest = cKDTree(true_v).query(vertices, workers=-1)
    truth = true_cls[nearest]
    r, c, inside = project(vertices, maps["K"].astype(np.float64), maps["seg"].shape)
    with np.errstate(invalid="ignore"):
        hidden = ~(inside & maps["mask"][r, c]) | (vertices[:, 2] > maps["pointmap"][r, c, 2] + HIDDEN_M)
    under_upper_arm = hidden & inside & np.isin(maps["seg"][r, c], class_ids(UPPER_ARMS))
    return {"vertices": vertices, "labels": labels, "truth": truth, "hidden": hidden, "under_upper_arm": under_upper_arm}


def report(name: str, m: dict, before: dict | None) -> None:
    from engine.geometry.labels import TRUNK_CLASSES, class_ids, class_names

    names = class_names()
    labels, truth, hidden = m["labels"], m["truth"], m["hidden"]
    wrong = labels != truth
    hand_on_trunk = hidden & np.isin(truth, class_ids(TRUNK_AND_LEGS)) & np.isin(labels, class_ids(HAND_AND_FOREARM))
    trunk_on_hand = hidden & np.isin(labels, class_ids(TRUNK_AND_LEGS)) & np.isin(truth, class_ids(HAND_AND_FOREARM))
    print(f"{name}: {len(labels)} vertices, wrong {100 * wrong.mean():.2f} %, hidden ({hidden.sum()}) wrong "
          f"{100 * wrong[hidden].mean():.2f} %; hidden trunk/thigh labelled forearm/hand {hand_on_trunk.sum()}, "
          f"hidden forearm/hand labelled trunk/thigh {trunk_on_hand.sum()}")
    under = m["under_upper_arm"]
    arm_truth, trunk_truth = np.isin(truth, class_ids(UPPER_ARMS)), np.isin(truth, class_ids(TRUNK_CLASSES))
    arm_label, trunk_label = np.isin(labels, class_ids(UPPER_ARMS)), np.isin(labels, class_ids(TRUNK_CLASSES))
    print(f"    hidden under an upper arm's pixel {under.sum()}: the arm's own back (truth the arm) {(under & arm_truth).sum()}, "
          f"labelled trunk {(under & arm_truth & trunk_label).sum()}; truth the trunk {(under & trunk_truth).sum()}, "
          f"labelled the arm {(under & trunk_truth & arm_label).sum()}")
    pairs, counts = np.unique(np.stack([truth[wrong], labels[wrong]], 1), axis=0, return_counts=True)
    top = np.argsort(-counts)[:6]
    print("    largest confusions: " + ", ".join(f"{names[pairs[i, 0]]} labelled {names[pairs[i, 1]]} {counts[i]}"
                                              for i in top))
    if before is None:
        return
    if before["labels"].shape != labels.shape or not np.array_equal(before["vertices"], m["vertices"]):
        print("    --against: a different solid (the vertices moved), not compared")
        return
    changed = before["labels"] != labels
    was_wrong = before["labels"] != truth
    print(f"    relabelled {changed.sum()} (hidden {(changed & hidden).sum()}): wrong -> right "
          f"{(changed & was_wrong & ~wrong).sum()}, right -> wrong {(changed & ~was_wrong & wrong).sum()}, "
          f"wrong -> wrong {(changed & was_wrong & wrong).sum()}")
    pairs, counts = np.unique(np.stack([before["labels"][changed], labels[changed]], 1), axis=0, return_counts=True)
    top = np.argsort(-counts)[:6]
    print("    relabelled from -> to: " + ", ".join(f"{names[pairs[i, 0]]} -> {names[pairs[i, 1]]} {counts[i]}"
                                                 for i in top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", default="person_101,person_102,person_103")
    parser.add_argument("--save", help="write every person's labels, vertices and truth to this .npz")
    parser.add_argument("--against", help="a file --save wrote: count the vertices relabelled since")
    parser.add_argument("--set", nargs="*", default=[], help="NAME=VALUE: a constant of engine.geometry.watertight")
    args = parser.parse_args()
    from engine.geometry import watertight

    for item in args.set:
        name, value = item.split("=")
        setattr(watertight, name, type(getattr(watertight, name))(float(value)))
        print(f"watertight.{name} = {getattr(watertight, name)}")
    if not SAMPLES.is_dir():
        sys.exit(f"{SAMPLES} missing")
    previous = dict(np.load(args.against)) if args.against else {}
    saved = {}
    for name in args.people.split(","):
        m = measure(name)
        before = None
        if f"{name}/labels" in previous:
            before = {k: previous[f"{name}/{k}"] for k in ("labels", "vertices")}
        report(name, m, before)
        saved.update({f"{name}/{k}": v for k, v in m.items()})
    if args.save:
        np.savez_compressed(args.save, **saved)


if __name__ == "__main__":
    main()
