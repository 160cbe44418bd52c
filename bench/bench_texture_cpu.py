"""CPU seconds of the texture stage (make_appearance, the crops' texture and normal fusion) and
of the texture files' encoding (write_textures), this tree against an older revision, on the
same inputs.

Usage: .venv/bin/python bench/bench_texture_cpu.py [--old REV | --old-dir DIR] [--pairs N] [--profile]

The inputs are those of a real build: bench_avatar's generated bundle (~300k person pixels, hand
and face crops) is built once as the default closed build with crops, and the arguments of
plan_uvs' vertex_tangents, make_appearance (with the crops' fusion) and write_textures are kept. Then,
in this one process, the older revision's engine/avatar/{textures,appearance,detail}.py and
engine/formats/textures.py (read with `git show REV:...`, or from DIR, loaded beside this tree's
modules) and this tree's run interleaved (old, new, old, new ...), N pairs, CPU seconds
(time.process_time, all threads of the process) each: the texture stage as build.py runs it
(the photo maps started by make_appearance itself: plan_uvs' early start is not replayed), the
texture files written with a 2-thread writer pool, and vertex_tangents. Every pair's outputs
(the appearance's arrays and statistics, the decoded texture pixels, the EXR's bytes, the
tangents) are compared byte for byte, and a difference stops the bench; the PNG files' sizes
are printed. --profile: one new texture stage and write under cProfile (costliest 25 by own
time). Nothing is asserted beyond the equal outputs.
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from bench_front_cpu import load_files  # noqa: E402  (the same loading of an older revision's files)

OLD_FILES = {"old_tx": "engine/avatar/textures.py", "old_appearance": "engine/avatar/appearance.py",
             "old_detail": "engine/avatar/detail.py", "old_fmt": "engine/formats/textures.py"}


def capture(tmp: Path) -> dict:
    from bench_avatar import make_generated_avatar_bundle

    import engine.avatar.appearance as appearance
    import engine.avatar.build as build
    import engine.avatar.stages as stages
    import engine.avatar.textures as tx

    (tmp / "gen").mkdir()
    bundle = make_generated_avatar_bundle(tmp / "gen")
    kept = {}
    originals = {(appearance, "make_appearance"): appearance.make_appearance, (stages, "write_textures"): stages.write_textures,
                 (tx, "vertex_tangents"): tx.vertex_tangents}

    def keeping(name, function):
        def kept_call(*args, **kwargs):
            kept[name] = (args, {k: v for k, v in kwargs.items() if k not in ("progress", "pool")})
            return function(*args, **kwargs)
        return kept_call

    for (module, name), function in originals.items():
        setattr(module, name, keeping(name, function))
    try:
        build.build_avatar(bundle, tmp / "avatar", detail="normals", watertight=True, detail_crops=True)
    finally:
        for (module, name), function in originals.items():
            setattr(module, name, function)
    # the photo maps are started by make_appearance itself in every run (their futures are spent)
    args, kwargs = kept["make_appearance"]
    kept["make_appearance"] = ((args[0], replace(args[1], photo_maps=None)) + args[2:], kwargs)
    return kept


def load_old(rev: str | None, old_dir: Path | None, tmp: Path) -> dict:
    old = load_files(OLD_FILES, tmp, rev, old_dir)
    old["old_appearance"].tx = old["old_tx"]
    return old


class _OldTextures:
    """engine.avatar.textures is the old one while inside (detail.py imports it in its functions)."""

    def __init__(self, old_tx):
        self.old_tx = old_tx

    def __enter__(self):
        import engine.avatar

        self.saved = sys.modules["engine.avatar.textures"]
        sys.modules["engine.avatar.textures"] = self.old_tx
        engine.avatar.textures = self.old_tx

    def __exit__(self, *exc):
        import engine.avatar

        sys.modules["engine.avatar.textures"] = self.saved
        engine.avatar.textures = self.saved


def _bytes(a):
    return None if a is None else (np.asarray(a).dtype.str, np.asarray(a).shape, np.asarray(a).tobytes())


def _appearance_bytes(a) -> list:
    return [_bytes(a.uv), _bytes(a.tangents), a.layout, _bytes(a.albedo_linear), _bytes(a.albedo_srgb8), _bytes(a.normal_rgb8),
            a.albedo_source, list(a.stats.items())]


def texture_stage(kept, which: str, old: dict):
    """build.py's texture stage: the appearance with the crops' texture and normals fused (an
    older tree whose make_appearance takes no crops: make_appearance, then fuse_crop_texture)."""
    args, kwargs = kept["make_appearance"]
    if which == "old":
        import inspect

        with _OldTextures(old["old_tx"]):
            if "crops" in inspect.signature(old["old_appearance"].make_appearance).parameters:
                return old["old_appearance"].make_appearance(*args, **kwargs)  # fuses the crops itself
            crops = kwargs["crops"]
            kwargs = {k: v for k, v in kwargs.items() if k != "crops"}
            appearance = old["old_appearance"].make_appearance(*args, **kwargs)
            return old["old_detail"].fuse_crop_texture(appearance, crops.detail, crops.mask, framed=crops.framed, K=crops.K)
    import engine.avatar.appearance as appearance

    return appearance.make_appearance(*args, **kwargs)


def write_stage(kept, which: str, old: dict, out_dir: Path):
    """write_textures with a 2-thread pool; the decoded pixels, the EXR's bytes, the PNG sizes."""
    from PIL import Image

    (scene, _, albedo_linear), _ = kept["write_textures"]
    scene = copy.copy(scene)
    scene.textures = [replace(t, encoded=None) for t in scene.textures]
    import engine.formats.textures as fmt

    module = old["old_fmt"] if which == "old" else fmt
    with ThreadPoolExecutor(max_workers=2) as pool:
        files = module.write_textures(scene, out_dir, albedo_linear, pool=pool)
    out, sizes = [files], {}
    for t in scene.textures:
        data = (out_dir / t.path).read_bytes()
        if data != t.encoded:
            sys.exit(f"{which}: {t.path} differs from the texture's encoded bytes")
        sizes[t.name] = len(data)
        out.append(np.asarray(Image.open(io.BytesIO(data))).tobytes())
    out.append((out_dir / "textures/albedo.exr").read_bytes())
    return out, sizes


def tangents(kept, which: str, old: dict):
    import engine.avatar.textures as tx

    args, kwargs = kept["vertex_tangents"]
    return _bytes((old["old_tx"] if which == "old" else tx).vertex_tangents(*args, **kwargs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="HEAD", help="the revision to compare with (default HEAD)")
    parser.add_argument("--old-dir", type=Path, help="read the older files from this directory instead of git")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    label = str(args.old_dir) if args.old_dir else args.old
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        kept = capture(tmp)
        old = load_old(args.old, args.old_dir, tmp)
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            texture_stage(kept, "new", old)
            write_stage(kept, "new", old, tmp / "profile")
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        runs = {
            "texture stage": lambda which: _appearance_bytes(texture_stage(kept, which, old)),
            "write_textures": lambda which: write_stage(kept, which, old, tmp / f"w-{which}"),
            "vertex_tangents": lambda which: tangents(kept, which, old),
        }
        for what, run in runs.items():
            for which in ("old", "new"):  # warm both
                (tmp / f"w-{which}").mkdir(exist_ok=True)
                run(which)
            seconds = {"old": [], "new": []}
            for _ in range(args.pairs):
                outputs = {}
                for which in ("old", "new"):
                    start = time.process_time()
                    outputs[which] = run(which)
                    seconds[which].append(time.process_time() - start)
                sizes = None
                if what == "write_textures":
                    outputs, sizes = {k: v[0] for k, v in outputs.items()}, {k: v[1] for k, v in outputs.items()}
                if outputs["old"] != outputs["new"]:
                    sys.exit(f"{what}: outputs of {label} and this tree differ")
            print(f"{what}: outputs byte-identical in all {args.pairs} pairs; CPU s {label} / this tree:")
            for which in ("old", "new"):
                print(f"  {which}: " + " ".join(f"{s:.3f}" for s in seconds[which]) + f"  median {np.median(seconds[which]):.3f}")
            saving = np.median(np.subtract(seconds["old"], seconds["new"]))
            print(f"  median saving per pair {saving:.3f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            if sizes:
                print("  PNG bytes old / new: " + ", ".join(f"{k} {sizes['old'][k]} / {sizes['new'][k]} "
                                                         f"({100 * (sizes['new'][k] / sizes['old'][k] - 1):+.1f} %)" for k in sizes["old"]))


if __name__ == "__main__":
    main()
