"""CPU seconds and output of the closed build's screened Poisson solves under other Open3D
parameters (full_depth, samples_per_node, point_weight), on the inputs of a real build.

Usage: .venv/bin/python bench/bench_poisson_cpu.py [--variants 5 3 ...] [--reps N] [--inputs PKL]

The inputs are those of bench_avatar's generated bundle built as the default closed build with
crops (~300k person pixels, hand and face crops): the body's poisson_solid call (watertight.
closed_surface) and each hand's detail_solid.solve_hand call, kept once (and pickled to --inputs
so the next run skips the build). A variant is `FULL_DEPTH[:samples_per_node[:point_weight]]`
("5" is Open3D's default, 5:1.5:2.0); the first variant is the reference. The variants run
interleaved (ref, a, b, ref, a, b, ...), N rounds, in this one process; per call it prints the
median CPU seconds (time.process_time) of the Poisson call alone and of the whole poisson_solid
(body) or solve_hand (hands: Poisson, cleanup, manifold, cut, simplify), and the output against
the reference: vertex counts, distances both ways between the surfaces (Open3D's RaycastingScene,
from every vertex of one to the other mesh: mean and max, mm), open edges (body), volume. The
machine may be shared: figures from interleaved runs, nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import open3d as o3d  # noqa: E402

_ORIGINAL = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson
CURRENT: dict = {}  # the parameters the wrapped Poisson call uses now
SPENT: list = []  # CPU seconds of each wrapped Poisson call


def _poisson(cloud, **kwargs):
    kwargs.update(CURRENT)
    kwargs["full_depth"] = min(kwargs.get("full_depth", 5), kwargs["depth"])
    start = time.process_time()
    out = _ORIGINAL(cloud, **kwargs)
    SPENT.append(time.process_time() - start)
    return out


o3d.geometry.TriangleMesh.create_from_point_cloud_poisson = staticmethod(_poisson)


def capture(path: Path) -> dict:
    """The body's poisson_solid arguments and the hands' solve_hand arguments in a default build with crops."""
    from bench_avatar import make_generated_avatar_bundle

    import engine.geometry.detail_solid as detail_solid
    import engine.geometry.watertight as watertight
    from engine.avatar.build import build_avatar
    from engine.geometry import solve_worker

    kept = {"body": None, "hands": []}
    poisson_solid, solve_hand = watertight.poisson_solid, detail_solid.solve_hand

    def keep_body(points, normals, labels=None, **kwargs):
        if kept["body"] is None:
            kept["body"] = (points, normals, labels, kwargs)
        return poisson_solid(points, normals, labels, **kwargs)

    def keep_hand(*args):
        kept["hands"].append(args)
        return solve_hand(*args)

    watertight.poisson_solid, detail_solid.solve_hand = keep_body, keep_hand
    shared = solve_worker.shared
    solve_worker.shared = lambda start=True: None  # the hands solved in this process
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "gen").mkdir()
            bundle = make_generated_avatar_bundle(Path(tmp) / "gen")
            build_avatar(bundle, Path(tmp) / "avatar", detail="normals", watertight=True, detail_crops=True)
    finally:
        watertight.poisson_solid, detail_solid.solve_hand, solve_worker.shared = poisson_solid, solve_hand, shared
    with open(path, "wb") as f:
        pickle.dump(kept, f)
    return kept


def parse_variant(text: str) -> dict:
    parts = text.split(":")
    out = {"full_depth": int(parts[0])}
    if len(parts) > 1:
        out["samples_per_node"] = float(parts[1])
    if len(parts) > 2:
        out["point_weight"] = float(parts[2])
    return out


def distances(va, fa, vb, fb):
    """Unsigned distances from every vertex of mesh a to mesh b and back (m)."""
    def to(v, other_v, other_f):
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(np.asarray(other_v, np.float32)), o3d.core.Tensor(np.asarray(other_f, np.uint32)))
        return scene.compute_distance(o3d.core.Tensor(np.asarray(v, np.float32))).numpy()
    return to(va, vb, fb), to(vb, va, fa)


def volume(v, f):
    v = np.asarray(v, np.float64)
    f = np.asarray(f, np.int64)
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["5", "4", "3"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--inputs", type=Path, default=Path(tempfile.gettempdir()) / "bench_poisson_inputs.pkl")
    parser.add_argument("--recapture", action="store_true")
    parser.add_argument("--calls", nargs="+", help="only these calls (body, hand0, hand1, ...)")
    args = parser.parse_args()

    from engine.geometry.detail_solid import solve_hand
    from engine.geometry.watertight import poisson_solid

    if args.inputs.exists() and not args.recapture:
        with open(args.inputs, "rb") as f:
            kept = pickle.load(f)
    else:
        kept = capture(args.inputs)
    variants = [parse_variant(v) for v in args.variants]
    calls = [("body", kept["body"])] + [(f"hand{i}", hand) for i, hand in enumerate(kept["hands"])]
    if args.calls:
        calls = [(name, call) for name, call in calls if name in args.calls]
    print(f"{len(calls)} calls: " + ", ".join(f"{name} {len(call[0])} samples" for name, call in calls), flush=True)

    for name, call in calls:
        poisson_cpu = {i: [] for i in range(len(variants))}
        total_cpu = {i: [] for i in range(len(variants))}
        outputs = {}
        for rep in range(args.reps):
            for i, variant in enumerate(variants):
                CURRENT.clear()
                CURRENT.update(variant)
                SPENT.clear()
                start = time.process_time()
                if name == "body":
                    points, normals, labels, kwargs = call
                    v, f, _, stats = poisson_solid(points, normals, labels, **kwargs)
                    out = (v, f, stats["open_edges"], stats["poisson_depth"])
                else:
                    result = solve_hand(*call)
                    if "note" in result:
                        out = (None, None, result["note"], None)
                    else:
                        out = (result["vertices"], result["faces"], 0, result["stats"]["poisson_depth"])
                total_cpu[i].append(time.process_time() - start)
                poisson_cpu[i].append(sum(SPENT))
                if i not in outputs:
                    outputs[i] = out
                elif not (np.array_equal(outputs[i][0], out[0]) and np.array_equal(outputs[i][1], out[1])):
                    print(f"  {name} {args.variants[i]}: output differs between reps", flush=True)
        ref = outputs[0]
        for i in range(len(variants)):
            v, f, open_edges, depth = outputs[i]
            line = (f"{name} {args.variants[i]:>10}: poisson {np.median(poisson_cpu[i]):.3f} s "
                    f"({len(poisson_cpu[i])} runs, {min(poisson_cpu[i]):.3f}-{max(poisson_cpu[i]):.3f}), "
                    f"{'poisson_solid' if name == 'body' else 'solve_hand'} {np.median(total_cpu[i]):.3f} s; ")
            if v is None:
                line += f"NOT CLOSED ({open_edges})"
            else:
                line += f"depth {depth}, {len(v)} vertices, open {open_edges}, volume {1e3 * volume(v, f):.4f} L"
                if i and ref[0] is not None:
                    a, b = distances(v, f, ref[0], ref[1])
                    line += (f"; to ref mean {1e3 * a.mean():.4f} max {1e3 * a.max():.3f} mm, "
                             f"from ref mean {1e3 * b.mean():.4f} max {1e3 * b.max():.3f} mm")
            print(line, flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
