"""Blender import speed and memory for a large rigged avatar (target: 300k vertices in under 2 s).

Writes a synthetic avatar with pygltflib (the tests' writer: a grid body, 2 materials with
textures, labels, 4 skin influences per vertex, a 6-bone rig and a short animation), then
imports it into bpy a few times and prints seconds per phase and the peak resident memory.

    .venv/bin/python bench/bench_import.py [--vertices 300000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import bpy
    import numpy as np

    from sapiens_blender.blender import action, armature, import_avatar as importer, mesh
    from sapiens_blender.io.skin import weight_batches
    from sapiens_blender.io.avatar import read_avatar
    from test_blender_io import write_test_avatar

    cols = 500
    rows = max(2, args.vertices // cols)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        avatar_dir = write_test_avatar(Path(tmp) / "avatar", rows=rows, cols=cols)
        print(f"synthetic avatar: {rows * cols} vertices, written in {time.perf_counter() - t0:.2f} s "
              f"({(avatar_dir / 'avatar.glb').stat().st_size / 1e6:.1f} MB glb)")
        rss_before = peak_rss_mb()
        timings: dict[str, list[float]] = {}

        def timed(name, fn):
            def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    timings.setdefault(name, []).append(time.perf_counter() - t)
            return wrapper

        phases = ((mesh, "build_mesh"), (mesh, "add_label_groups"), (armature, "build_armature"),
                  (armature, "bind_skin"), (action, "build_action"))
        for module, phase in phases:
            setattr(module, phase, timed(phase, getattr(module, phase)))
        read = timed("read files", read_avatar)
        for _ in range(args.repeat):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            t = time.perf_counter()
            avatar = read(avatar_dir)
            result = importer.import_avatar(avatar, name="bench")
            timings.setdefault("TOTAL read + import", []).append(time.perf_counter() - t)
        mesh = result.mesh_object.data
        print(f"imported: {len(mesh.vertices)} vertices, {len(mesh.polygons)} faces, "
              f"{len(result.mesh_object.vertex_groups)} vertex groups, "
              f"{len(result.armature_object.data.bones)} bones, action {result.action.name if result.action else None}")
        n_faces = len(avatar.mesh.faces)
        n_calls = sum(1 for _ in weight_batches(avatar.mesh.joints, avatar.mesh.weights))
        print(f"skin: {len(avatar.mesh.joints)} x 4 influences -> {n_calls} VertexGroup.add calls")
        print(f"{'phase':24s} {'best s':>8s} {'median s':>9s}   ({args.repeat} runs)")
        for name, values in timings.items():
            print(f"{name:24s} {min(values):8.3f} {float(np.median(values)):9.3f}")
        print(f"peak RSS: {peak_rss_mb():.0f} MB (before importing: {rss_before:.0f} MB); faces {n_faces}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
