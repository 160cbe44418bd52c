"""Where the closed build's new hands join the body (detail_solid.cut_hand_boxes + join_hands), on
the inputs of real builds: per hand the step, the folds and the cut faces left showing, and the
join's CPU seconds against an older revision's detail_solid.py.

    .venv/bin/python bench/bench_wrist_join.py [--cases crops,degraded] [--seed 102] [--work DIR]
        [--old REV] [--pairs 5]

The cases are bench/look_avatars.py's (an engine.synthetic person from exact maps with exact hand
crops, and the same person degraded with degraded crops); each is built once (the default closed
build) with join_hands' inputs kept under --work (kept again only when missing). Per hand:
- step: p90 of the distance to the body's surface of the joined mesh's vertices within 1.5 mm of
  the hand's cut box's faces (the blend leaves the hand 0.5 mm proud there by design);
- folds: edges sharper than 90 degrees among the edges within 8 mm of the box's faces and 4 mm of
  the body (the seam band), and how many edges that band holds;
- cut faces: the area of the joined triangles that lie flat in an axis plane within 10 mm of the
  box (the body's cut face or the hand's cap left showing: a ledge round the wrist, a wafer of the
  body's side beside the hand);
- vertices of the joined mesh (what the later stages cost by).
With --old, the same for REV's detail_solid.py (beside this tree's other modules), and the CPU
seconds (time.process_time) of the cut and the join, old and new interleaved in one process,
medians of --pairs.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def kept_inputs(case: str, seed: int, work: Path) -> tuple:
    """join_hands' positional inputs of the case's build (built and kept when missing)."""
    path = work / f"join-{case}-{seed}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    from look_avatars import bundles

    from engine.avatar.build import build_avatar
    from engine.geometry import detail_solid

    (name, dirs), = bundles(case, work / "work", 768, 1024, seed).items()
    join, kept = detail_solid.join_hands, {}

    def spy(vertices, faces, labels, fine, zones, solved, stats, cut=None):
        kept["args"] = (vertices, faces, labels, fine, zones, solved, pickle.loads(pickle.dumps(stats)))
        return join(vertices, faces, labels, fine, zones, solved, stats, cut=cut)

    detail_solid.join_hands = spy
    try:
        build_avatar(dirs[0], work / "avatars" / name)
    finally:
        detail_solid.join_hands = join
    path.write_bytes(pickle.dumps(kept["args"]))
    return kept["args"]


def _zones_for(module, zones: list) -> list:
    """The kept zones as `module` takes them: HandZone objects (fresh, none with its body's cut
    box yet) where it has them, else the tuples detail_solid used before (front_in, back_in,
    replaced, cut, solve box); kept inputs may hold either."""
    plain = [z if isinstance(z, tuple) else (z.front_in, z.back_in, z.replaced, z.cut, z.solve_box) for z in zones]
    return [module.HandZone(*z) for z in plain] if hasattr(module, "HandZone") else plain


def run_join(module, args) -> tuple:
    """The cut and the join by `module` (a detail_solid): (vertices, faces), CPU seconds."""
    vertices, faces, labels, fine, zones, solved, stats = args
    zones = _zones_for(module, zones)
    stats = pickle.loads(pickle.dumps(stats))
    began = time.process_time()
    cut, _ = module.cut_hand_boxes(vertices, faces, zones)
    out_v, out_f, _, _ = module.join_hands(vertices, faces, labels, fine, zones, solved, stats, cut=cut)
    return (np.asarray(out_v, np.float64), np.asarray(out_f, np.int64)), time.process_time() - began


def _scene(v, f):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(v, np.float32)), o3d.core.Tensor(np.asarray(f, np.uint32)))
    return scene


def _edges(v, f):
    """(edge's two vertices E x 2, cosine of the angle between its two faces' normals E)."""
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n /= np.maximum(np.linalg.norm(n, axis=1), 1e-30)[:, None]
    key = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
    face = np.tile(np.arange(len(f)), 3)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, face = key[order], face[order]
    i = np.nonzero((key[1:] == key[:-1]).all(1))[0]
    return key[i], (n[face[i]] * n[face[i + 1]]).sum(1)


def figures(args, joined) -> list[dict]:
    """Per hand joined: step, folds, band edges, cut faces (cm2)."""
    import open3d as o3d

    vertices, faces, _, _, zones, solved, _ = args
    v, f = joined
    body = _scene(vertices, faces)
    to_body = body.compute_distance(o3d.core.Tensor(v.astype(np.float32))).numpy()
    key, cos = _edges(v, f)
    corners = v[f]
    flat = np.zeros(len(f), bool)
    for axis in range(3):
        flat |= np.ptp(corners[:, :, axis], axis=1) < 2e-6
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    rows = []
    for zone, s in zip(zones, solved):
        if "note" in s:
            continue
        lo, hi = (np.asarray(x, np.float64) for x in (zone[3] if isinstance(zone, tuple) else zone.cut))
        from engine.geometry.detail_solid import _box_distance

        at = _box_distance(v, lo, hi)
        near = np.abs(at) < 0.0015
        band = ((np.abs(at) < 0.008) & (to_body < 0.004))[key].all(1)
        cut_faces = flat & (np.abs(_box_distance(corners.mean(1), lo, hi)) < 0.01)
        rows.append({"step_p90_mm": round(float(np.percentile(to_body[near], 90)) * 1e3, 2) if near.any() else None,
                     "folds": int((cos[band] < 0).sum()), "band_edges": int(band.sum()),
                     "cut_faces_cm2": round(float(area[cut_faces].sum()) * 1e4, 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="crops,degraded")
    parser.add_argument("--seed", type=int, default=102)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_wrist_join")
    parser.add_argument("--old", help="a git revision whose detail_solid.py to compare with")
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from engine.geometry import detail_solid

    versions = {"new": detail_solid}
    if args.old:
        from bench_front_cpu import load_files

        tmp = Path(tempfile.mkdtemp(prefix="bench_wrist_join_"))
        versions = {"old": load_files({"old_detail_solid": "engine/geometry/detail_solid.py"}, tmp, args.old)["old_detail_solid"],
                    **versions}
    for case in args.cases.split(","):
        inputs = kept_inputs(case, args.seed, args.work)
        cpu = {name: [] for name in versions}
        joined = {}
        for _ in range(max(1, args.pairs if args.old else 1)):
            for name, module in versions.items():
                joined[name], seconds = run_join(module, inputs)
                cpu[name].append(seconds)
        for name, module in versions.items():
            rows = figures(inputs, joined[name])
            hands = "; ".join(f"hand {k}: step p90 {r['step_p90_mm']} mm, folds {r['folds']}/{r['band_edges']}, "
                              f"cut faces {r['cut_faces_cm2']} cm2" for k, r in enumerate(rows))
            print(f"{case}-{args.seed} {name}: {hands}; {len(joined[name][0])} vertices; cut + join "
                  f"{statistics.median(cpu[name]):.3f} s CPU (median of {len(cpu[name])})", flush=True)
    print(f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
