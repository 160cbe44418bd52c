"""Avatar build: seconds and peak memory of the whole build, and of the texture baking alone.

Usage: .venv/bin/python bench/bench_avatar.py [--source shared|generated] [--samples ../shared/samples]
                                             [--texture-size 2048]

Input: a 1024 x 768 bundle with ~300k person pixels, made as bench/bench_surface.py makes its
own (a shared synthetic person ray-cast from a closer camera, exact maps then degraded), plus
the person's albedo and photo carried along the same rays; with --source generated, the
project's own generator's person (bench_surface.generated_person, ~300k person pixels) with its
rendered photo and albedo. Cases (each in its own process, so
its peak resident memory, ru_maxrss, is its own):
  mesh        detail none (no refinement)
  refined     detail normals
  watertight  detail normals, watertight
Each prints wall seconds per stage (avatar.json's timings), CPU seconds, peak memory, and the
texture-baking seconds separately. Figures are printed; nothing is asserted.
The build is timed as a running engine does it: open3d (the closed solid's Poisson, 0.8-0.9 s
to import) is imported once per engine process, by the first closed build, so the child
imports it before the clock starts and prints that import's seconds apart ("open3d import").
A one-shot CLI run pays it on top of the figure printed. The load average is printed with the
figures (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CASES = {
    "mesh": dict(detail="none", watertight=False),
    "refined": dict(detail="normals", watertight=False),
    "watertight": dict(detail="normals", watertight=True),
}


def make_bundle(samples: Path, out_dir: Path, name: str = "person_101") -> Path:
    """The surface bench's 300k-pixel bundle, with albedo and photo, written as a bundle directory."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_surface import H, W, make_bundle as make_surface_maps
    from PIL import Image

    from engine.bundle import Bundle, write_bundle
    from engine.geometry.normal_integration import pixel_rays

    maps_path = out_dir / "maps.npz"
    make_surface_maps(samples, maps_path, name)
    maps = np.load(maps_path)
    with np.load(samples / name / "gt_maps.npz") as data:
        K0, albedo0 = data["K"], np.clip(np.nan_to_num(data["albedo"]), 0, 1)
    photo0 = np.asarray(Image.open(samples / name / "image.png").convert("RGB"))
    # the same rays meet the original image where K0 sends them (same camera centre)
    rays = pixel_rays(maps["K"], (H, W))
    x0 = np.clip((K0[0, 0] * rays[..., 0] + K0[0, 2]).astype(int), 0, photo0.shape[1] - 1)
    y0 = np.clip((K0[1, 1] * rays[..., 1] + K0[1, 2]).astype(int), 0, photo0.shape[0] - 1)
    mask = maps["mask"] & (maps["seg"] > 0)
    bundle = Bundle(
        image=photo0[y0, x0],
        mask=mask,
        keypoints=None,
        seg=np.where(mask, maps["seg"], 0).astype(np.uint8),
        normal=np.where(mask[..., None], maps["normal"], np.nan).astype(np.float32),
        pointmap=np.where(mask[..., None], maps["pointmap"], np.nan).astype(np.float32),
        albedo=albedo0[y0, x0].astype(np.float32),
        K=maps["K"].astype(np.float64),
        meta={"provenance": {"source": f"bench_avatar from shared {name}"}},
    )
    return write_bundle(bundle, out_dir / "bundle")


def make_generated_avatar_bundle(out_dir: Path) -> Path:
    """The generated ~300k-pixel person, degraded as the surface bench does, as a bundle directory."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_surface import generated_person, make_generated_bundle

    from engine.bundle import write_bundle
    from engine.synthetic import to_bundle

    person = generated_person()
    make_generated_bundle(out_dir / "maps.npz", person)
    maps = np.load(out_dir / "maps.npz")
    bundle = to_bundle(person, name="bench")
    bundle.pointmap, bundle.normal = maps["pointmap"], maps["normal"]
    return write_bundle(bundle, out_dir / "bundle")


def run_case(case: str, bundle: str, texture_size: int) -> dict:
    """Runs in a child process: one build, its timings and peak memory."""
    import resource
    import time

    sys.path.insert(0, str(REPO))
    from engine.avatar.build import build_avatar
    from engine.formats import writers_for

    writers_for(None, "avatar")  # the default writers' modules (pygltflib) imported, as a running engine has them
    # open3d (the closed solid's Poisson) is imported once per engine process, by its first
    # closed build; a running engine has it: imported here before the clock, its time printed apart
    import_seconds = time.perf_counter()
    import open3d  # noqa: F401

    import engine.geometry.watertight  # noqa: F401

    import_seconds = time.perf_counter() - import_seconds
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        out = build_avatar(bundle, Path(tmp) / "avatar", texture_size=texture_size, **CASES[case])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        manifest = json.loads((out / "avatar.json").read_text())
    return {
        "case": case,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "stages": manifest["timings_s"],
        "vertices": manifest["mesh"]["vertices"],
        "faces": manifest["mesh"]["faces"],
        "texture": manifest["textures"]["size"],
        "open3d_import_seconds": round(import_seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples")
    parser.add_argument("--source", choices=("shared", "generated"), default="shared")
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.bundle, args.texture_size)))
        return

    import os

    with tempfile.TemporaryDirectory() as tmp:
        bundle = make_bundle(args.samples, Path(tmp)) if args.source == "shared" else make_generated_avatar_bundle(Path(tmp))
        person = int(np.count_nonzero(np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(bundle / "mask.png"))))
        print(f"bundle ({args.source}): 1024 x 768, {person} person pixels, texture {args.texture_size}; machine: {os.cpu_count()} CPU cores; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for case in args.cases:
            child = subprocess.run(
                [sys.executable, __file__, "--case", case, "--bundle", str(bundle), "--texture-size", str(args.texture_size)],
                capture_output=True, text=True, check=True,
            )
            r = json.loads(child.stdout.strip().splitlines()[-1])
            stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
            print(f"{case:<11} {r['seconds']:6.2f} s wall ({r['cpu_seconds']:.2f} s CPU), peak {r['peak_mb']} MB, "
                  f"{r['vertices']} vertices / {r['faces']} faces, texture {r['texture'][0]} x {r['texture'][1]}")
            print(f"{'':<11} stages (s): {stages}; texture baking {r['stages']['textures']:.2f} s; "
                  f"open3d import before the clock {r['open3d_import_seconds']:.2f} s")


if __name__ == "__main__":
    main()
