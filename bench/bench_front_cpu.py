"""CPU seconds of the closed build's body front (watertight.solid_front), of the crops' maps
(detail.align_crops + detail.fuse_maps), of the solid's snaps onto the front and the face crop
(watertight.snap_to_front, detail.snap_to_crops) and of the body's Poisson mesh's cleanup and repair
(clean_mesh, _repaired and poisson_solid's open-edge count), this tree against an older revision,
on the same inputs.

Usage: .venv/bin/python bench/bench_front_cpu.py [--old REV] [--pairs N]

The inputs are those of a real build: bench_avatar's generated bundle (~300k person pixels, hand
and face crops) is built once as the default closed build with crops, and the arguments the build
passes to those functions are kept. Then, in this one process, the older revision's
engine/geometry/{trust,grid_mesh,normal_integration,watertight,cleanup,surface,detail}.py (read with
`git show REV:...`, loaded beside this tree's modules and swapped in for their functions; a function
the older module lacks is not swapped) and this tree's run interleaved
(old, new, old, new ...), N pairs, CPU seconds (time.process_time) each; every pair's outputs are
compared byte for byte, and a difference stops the bench. Prints per-run CPU seconds, their
medians, the median saving per pair and the load average (the machine may be shared: figures
from paired runs in one process, not wall times). Nothing is asserted beyond the equal outputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
SWAPPED = {"trust": ("trust_pixels", "refill_front", "depth_normals"),
           "grid_mesh": ("valid_pixels", "downsample_maps", "block_mean"),
           "normal_integration": ("refine_depth", "_solve"),
           "watertight": ("solid_front", "snap_to_front", "_face_normals", "_vertex_normals", "_repaired",
                          "_open_edges", "_misoriented_faces", "_pinched_rim_faces"),
           "cleanup": ("clean_mesh", "fill_holes", "nonmanifold_faces", "_edge_face_table"),
           "surface": ("vertex_normals",),
           "detail": ("align_crops", "fuse_maps", "align_crop", "snap_to_crops")}  # block_mean: detail's own before d405334


def capture(tmp: Path) -> dict:
    """The arguments of solid_front, align_crops, fuse_maps, snap_to_front, snap_to_crops and of the
    body's Poisson mesh's clean_mesh (poisson_solid's first) in a default build with crops."""
    from bench_avatar import make_generated_avatar_bundle

    import engine.geometry.detail as detail
    import engine.geometry.watertight as watertight
    from engine.avatar.build import build_avatar

    (tmp / "gen").mkdir()
    bundle = make_generated_avatar_bundle(tmp / "gen")
    kept = {}
    originals = {(watertight, name): getattr(watertight, name) for name in ("solid_front", "snap_to_front", "clean_mesh")}
    originals.update({(detail, name): getattr(detail, name) for name in ("align_crops", "fuse_maps", "snap_to_crops")})

    def keeping(module, name, function):
        def kept_call(*args, **kwargs):
            kept.setdefault(name, (args, {k: v for k, v in kwargs.items() if k != "progress"}))
            return function(*args, **kwargs)
        return kept_call

    for (module, name), function in originals.items():
        setattr(module, name, keeping(module, name, function))
    try:
        build_avatar(bundle, tmp / "avatar", detail="normals", watertight=True, detail_crops=True)
    finally:
        for (module, name), function in originals.items():
            setattr(module, name, function)
    return kept


def load_files(files: dict, tmp: Path, rev: str | None = None, old_dir: Path | None = None) -> dict:
    """{module name: repo-relative path}: each file as an older revision `rev` has it (or as the
    tree under `old_dir` has it), loaded as a module of that name beside this tree's modules.
    bench_frame_cpu and bench_texture_cpu load their older files through this too."""
    modules = {}
    for name, rel in files.items():
        if old_dir is not None:
            text = (old_dir / rel).read_text()
        else:
            text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{rel}"], check=True, capture_output=True,
                                  text=True).stdout
        path = tmp / f"{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        modules[name] = module
    return modules


def load_old(rev: str, tmp: Path) -> dict:
    """The older revision's geometry modules, by short name."""
    loaded = load_files({f"old_{name}": f"engine/geometry/{name}.py" for name in SWAPPED}, tmp, rev)
    return {name: loaded[f"old_{name}"] for name in SWAPPED}


def function_pairs(old: dict) -> list:
    """(old, new) function of every swapped name, taken once, before any swap (a name the older
    module lacks is not swapped: its functions call their own forms)."""
    import importlib

    pairs = []
    for name, functions in SWAPPED.items():
        new = importlib.import_module(f"engine.geometry.{name}")
        pairs += [(getattr(old[name], f), getattr(new, f)) for f in functions if hasattr(old[name], f)]
    return pairs


def use(pairs: list, which: str) -> None:
    """Every engine module's (and the old modules') reference to a swapped function set to `which`'s."""
    chosen = {id(o if which == "new" else n): (n if which == "new" else o) for o, n in pairs}
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name.startswith("engine") or module_name.startswith("old_")):
            continue
        for attr, value in list(vars(module).items()):
            if callable(value) and id(value) in chosen:
                setattr(module, attr, chosen[id(value)])


def _bytes(a):
    return None if a is None else (np.asarray(a).dtype.str, np.asarray(a).shape, np.asarray(a).tobytes())


def front(kept):
    import engine.geometry.watertight as watertight

    args, kwargs = kept["solid_front"]
    out = watertight.solid_front(*args, **kwargs)
    return [_bytes(getattr(out, f)) for f in ("points", "normals", "valid", "trusted", "seg", "K")] + [out.stats, out.factor]


def crop_maps(kept):
    import engine.geometry.detail as detail

    aligned, notes = detail.align_crops(*kept["align_crops"][0], **kept["align_crops"][1])
    fused = detail.fuse_maps(kept["fuse_maps"][0][0], aligned)
    return ([notes] + [(a.summary(), _bytes(a.points), _bytes(a.shift), a.scale) for a in aligned]
            + [_bytes(getattr(fused, f)) for f in ("pointmap", "normal", "albedo", "seg", "mask")])


def mesh_steps(kept):
    import engine.geometry.detail as detail
    import engine.geometry.watertight as watertight

    out, stats = watertight.snap_to_front(*kept["snap_to_front"][0], **kept["snap_to_front"][1])
    snapped, crop_stats = detail.snap_to_crops(*kept["snap_to_crops"][0], **kept["snap_to_crops"][1])
    return [_bytes(out), stats, _bytes(snapped), crop_stats]


def repair(kept):
    import engine.geometry.cleanup as cleanup
    import engine.geometry.watertight as watertight

    if hasattr(cleanup, "_LAST_CENSUS"):
        cleanup._LAST_CENSUS = None  # counted afresh, as in a build
    cleaned = watertight.clean_mesh(*kept["clean_mesh"][0], **kept["clean_mesh"][1])
    cleaned, repairs = watertight._repaired(cleaned)
    open_edges = watertight._open_edges(cleaned.faces) + int(watertight._misoriented_faces(cleaned.faces).sum())
    return [_bytes(cleaned.vertices), _bytes(cleaned.faces), cleaned.removed, repairs, open_edges]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="88bd8af", help="the revision to compare with (default: before this bench)")
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kept = capture(Path(tmp))
        pairs = function_pairs(load_old(args.old, Path(tmp)))
        for what, run in (("solid_front", front), ("align_crops + fuse_maps", crop_maps),
                          ("snap_to_front + snap_to_crops", mesh_steps),
                          ("the body's Poisson mesh: clean_mesh + _repaired + open edges", repair)):
            for which in ("old", "new"):  # warm both
                use(pairs, which)
                run(kept)
            seconds = {"old": [], "new": []}
            for _ in range(args.pairs):
                outputs = {}
                for which in ("old", "new"):
                    use(pairs, which)
                    start = time.process_time()
                    outputs[which] = run(kept)
                    seconds[which].append(time.process_time() - start)
                if outputs["old"] != outputs["new"]:
                    sys.exit(f"{what}: outputs of {args.old} and this tree differ")
            use(pairs, "new")
            print(f"{what}: outputs byte-identical in all {args.pairs} pairs; CPU s {args.old} / this tree:")
            for which in ("old", "new"):
                print(f"  {which}: " + " ".join(f"{s:.3f}" for s in seconds[which]) + f"  median {np.median(seconds[which]):.3f}")
            saving = np.median(np.subtract(seconds["old"], seconds["new"]))
            print(f"  median saving per pair {saving:.3f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
