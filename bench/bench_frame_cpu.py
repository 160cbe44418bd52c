"""CPU seconds of the avatar build's read, frame and uv-plan stages (engine.avatar.stages.read,
.frame, .uv_plan), this tree against an older revision, on the same inputs.

Usage: .venv/bin/python bench/bench_frame_cpu.py [--old REV] [--pairs N] [--stages read,frame,uv_plan] [--profile]

The inputs are those of a real build: bench_avatar's generated bundle (~300k person pixels, hand
and face crops) is built once as the default closed build with crops, and the arguments the build
passes to stages.frame and stages.uv_plan are kept. Then, in this one process, the older
revision's functions listed in SWAPPED (read with `git show REV:...`, loaded beside this tree's
modules and swapped in for them) and this tree's run interleaved (old, new, old, new ...), N pairs,
CPU seconds (time.process_time: every thread of the process, the bundle's reading threads and the
photo maps' resampling in the writer pool included) and wall seconds each; every pair's outputs are
compared byte for byte (every array of the bundle read; every array of the framed mesh; the
layout, texel positions, UVs, tangents and the resampled photo maps of the plan), and a
difference stops the bench. Prints per-run seconds, their medians, the median saving per pair and
the load average (the machine may be shared: figures from paired runs in one process, not wall
times of separate builds). --profile: this tree's stages once under cProfile, 15 costliest
functions by own time. Nothing is asserted beyond the equal outputs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_front_cpu import _bytes, load_files, use  # noqa: E402  (the same loading, swap and byte comparison)

# module -> the functions swapped between the old revision and this tree (None: every function
# the module defines itself)
SWAPPED = {
    "engine.fileio": ("read_exr",),
    "engine.bundle.format": ("read_engine_bundle", "validate_bundle", "_read_png"),
    "engine.bundle.crops": ("read_crops", "validate_crops"),
    "engine.avatar.islands": None,
    "engine.avatar.frame": None,
    "engine.avatar.inputs": ("check_buildable",),
    "engine.avatar.stages": ("read", "frame", "place", "seamless_normals", "uv_plan", "unit_normals"),
    "engine.avatar.appearance": ("plan_uvs",),
}


def capture(tmp: Path) -> dict:
    """The bundle's folder and the arguments of stages.frame and stages.uv_plan in a default build
    with crops."""
    from bench_avatar import make_generated_avatar_bundle

    from engine.avatar import stages
    from engine.avatar.build import build_avatar

    (tmp / "gen").mkdir()
    bundle_dir = make_generated_avatar_bundle(tmp / "gen")
    kept = {"read": ((bundle_dir,), {"detail": "normals", "rig": None})}
    originals = {name: getattr(stages, name) for name in ("frame", "uv_plan")}

    def keeping(name, function):
        def kept_call(*args, **kwargs):
            kept[name] = (args, {k: v for k, v in kwargs.items() if k != "pool"})
            return function(*args, **kwargs)
        return kept_call

    for name, function in originals.items():
        setattr(stages, name, keeping(name, function))
    try:
        build_avatar(bundle_dir, tmp / "avatar", detail="normals", watertight=True, detail_crops=True)
    finally:
        for name, function in originals.items():
            setattr(stages, name, function)
    return kept


def load_old(rev: str, tmp: Path) -> dict:
    """The older revision's modules, by dotted name (loaded as old_...)."""
    loaded = load_files({f"old_{name.replace('.', '_')}": name.replace(".", "/") + ".py" for name in SWAPPED}, tmp, rev)
    return {name: loaded[f"old_{name.replace('.', '_')}"] for name in SWAPPED}


def function_pairs(old: dict) -> list:
    """(old, new) function of every swapped name, taken once, before any swap."""
    pairs = []
    for name, functions in SWAPPED.items():
        new = importlib.import_module(name)
        if functions is None:
            functions = [f for f, v in vars(new).items()
                         if callable(v) and getattr(v, "__module__", None) == name and not isinstance(v, type)]
        pairs += [(getattr(old[name], f), getattr(new, f)) for f in functions if hasattr(old[name], f)]
    return pairs


def read(kept, pool):
    from engine.avatar import stages

    inputs = stages.read(*kept["read"][0], **kept["read"][1])
    b = inputs.bundle
    out = [_bytes(getattr(b, f)) for f in ("image", "mask", "keypoints", "seg", "normal", "pointmap", "albedo", "K",
                                           "seg_probs")]
    out += [(c.name, c.box, c.factor, c.meta) + tuple(_bytes(getattr(c, f)) for f in ("mask", "pointmap", "normal", "albedo", "seg"))
            for c in b.crops]
    return out + [b.meta, _bytes(inputs.K), inputs.K_source, inputs.source]


def frame(kept, pool):
    from engine.avatar import stages

    f = stages.frame(*kept["frame"][0], **kept["frame"][1])
    return [_bytes(getattr(f, k)) for k in ("vertices_camera", "vertices_avatar", "normals_avatar", "faces", "labels",
                                             "face_island", "vertex_island", "camera_to_avatar")] + [f.origin]


def uv_plan(kept, pool):
    from engine.avatar import stages

    plan = stages.uv_plan(*kept["uv_plan"][0], pool=pool, **kept["uv_plan"][1])
    maps = plan.photo_maps
    normal = None if maps.normal is None else _bytes(maps.normal.result())
    colour, source = maps.colour.result()
    return [repr(plan.layout), _bytes(plan.texel_xy), _bytes(plan.uv), _bytes(plan.tangents), normal, _bytes(colour), source]


STAGES = (("read", read), ("frame", frame), ("uv_plan", uv_plan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="d405334", help="the revision to compare with (default: before this bench)")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="also profile this tree's stages once")
    parser.add_argument("--stages", default=",".join(name for name, _ in STAGES), help="the stages to run (default: all)")
    args = parser.parse_args()
    chosen = [(name, run) for name, run in STAGES if name in args.stages.split(",")]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        kept = capture(Path(tmp))
        pairs = function_pairs(load_old(args.old, Path(tmp)))
        if args.profile:
            import cProfile
            import pstats

            for what, run in chosen:
                run(kept, pool)
                profiler = cProfile.Profile()
                profiler.enable()
                run(kept, pool)
                profiler.disable()
                print(f"--- {what}")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        for what, run in chosen:
            for which in ("old", "new"):  # warm both
                use(pairs, which)
                run(kept, pool)
            seconds = {"old": [], "new": []}
            walls = {"old": [], "new": []}
            for _ in range(args.pairs):
                outputs = {}
                for which in ("old", "new"):
                    use(pairs, which)
                    start, wall = time.process_time(), time.perf_counter()
                    outputs[which] = run(kept, pool)
                    seconds[which].append(time.process_time() - start)
                    walls[which].append(time.perf_counter() - wall)
                if outputs["old"] != outputs["new"]:
                    sys.exit(f"{what}: outputs of {args.old} and this tree differ")
            use(pairs, "new")
            print(f"{what}: outputs byte-identical in all {args.pairs} pairs; CPU s (wall s) {args.old} / this tree:")
            for which in ("old", "new"):
                print(f"  {which}: " + " ".join(f"{s:.3f}" for s in seconds[which]) + f"  median {np.median(seconds[which]):.3f}"
                      f" (wall median {np.median(walls[which]):.3f})")
            saving = np.median(np.subtract(seconds["old"], seconds["new"]))
            wall_saving = np.median(np.subtract(walls["old"], walls["new"]))
            print(f"  median saving per pair {saving:.3f} s CPU, {wall_saving:.3f} s wall; load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
