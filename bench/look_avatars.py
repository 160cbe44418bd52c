"""Build the avatars an artist should look at, then render their contact sheets (bench/render_avatar.py).

    .venv/bin/python bench/look_avatars.py --out DIR [--cases demo,shared,crops,degraded,fused]
        [--size 768x1024] [--seed 102] [--render-args "--size 320 --samples 8"]

Cases, each built with the default options of a Build Avatar (closed, detail normals, full
resolution; texture 2048; rigged, so an arm lying against the trunk is parted from it:
engine.avatar.parting; `--rig none` builds them unrigged, as this bench did until the seventeenth
session):
    demo       the bundled sample (assets/sample, what `sapiens-engine demo` builds)
    shared     ../shared/samples/person_101..103 from their exact maps (as tests/blender_support.py)
    crops      an engine.synthetic person (seed --seed) from exact maps with exact hand and face crops
    degraded   the same person with the issue's degradation (1 cm smooth depth error, noise, blur,
               3 deg normals, 2 px flying rim) and degraded hand and face crops
               (bench_closed.person_crops), i.e. the default avatar with crops from imperfect maps
    fused      the same person photographed from the front and from behind, exact maps, fused
               (engine.avatar.fused); and "fused_degraded", both views degraded
Avatars go to DIR/avatars/NAME, the renders to DIR/renders/NAME (sheet.png each), built again only
when missing. The renders run in their own process (bpy), which imports each avatar through the
add-on's importer. Prints the seconds per build and the load average (a shared machine), and per
avatar its slits and creases (bench/bench_slits.py: cracks a clay render shows dark; a rigged
avatar's parted arms' cut walls, 0.1 mm apart on purpose, are counted apart).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SHARED_SAMPLES = REPO.parent / "shared" / "samples"


def shared_bundle(sample: Path, out: Path) -> Path:
    """A predictions bundle of a shared synthetic person's exact maps."""
    from PIL import Image

    from engine.bundle import Bundle, write_bundle

    maps = np.load(sample / "gt_maps.npz")
    keypoints = np.array(json.loads((sample / "keypoints.json").read_text())["keypoints"], np.float32)
    bundle = Bundle(image=np.array(Image.open(sample / "image.png").convert("RGB")), mask=maps["mask"],
                    keypoints=keypoints, seg=maps["seg"], normal=maps["normal"], pointmap=maps["pointmap"],
                    albedo=maps["albedo"], K=maps["K"].astype(np.float64))
    return write_bundle(bundle, out)


def bundles(case: str, work: Path, width: int, height: int, seed: int) -> dict[str, list[Path]]:
    """{avatar name: its bundle directories} for one case."""
    from engine.bundle import write_bundle
    from engine.paths import asset

    if case == "demo":
        return {"demo": [asset("sample")]}
    if case == "shared":
        if not SHARED_SAMPLES.is_dir():
            print(f"shared: {SHARED_SAMPLES} missing, skipped")
            return {}
        return {s.name: [shared_bundle(s, work / "bundles" / s.name)] for s in sorted(SHARED_SAMPLES.glob("person_*"))}
    from bench_closed import person_crops

    from engine.synthetic import degrade, make_person, render, to_bundle

    poses = ["bent", "arms_forward", None, "step", None, "apose"]
    person = make_person(seed, pose=poses[(seed - 101) % len(poses)], width=width, height=height)
    if case == "crops":
        bundle = to_bundle(person, name=f"crops-{seed}")
        bundle.crops = person_crops(person, "exact", seed)
        return {f"crops-{seed}": [write_bundle(bundle, work / "bundles" / f"crops-{seed}")]}
    if case == "degraded":
        bundle = to_bundle(degrade(person, seed=seed, flying_rim_px=2.0, centred=True), name=f"degraded-{seed}")
        bundle.crops = person_crops(person, "degraded", seed)
        return {f"degraded-{seed}": [write_bundle(bundle, work / "bundles" / f"degraded-{seed}")]}
    if case == "fused":
        back = render(person.posed, width, height, yaw_deg=180.0)
        out = {}
        for name, (f, b) in {
            f"fused-{seed}": (person, back),
            f"fused_degraded-{seed}": (degrade(person, seed=seed, flying_rim_px=2.0, centred=True),
                                       degrade(back, seed=seed + 1000, flying_rim_px=2.0, centred=True)),
        }.items():
            out[name] = [write_bundle(to_bundle(f, name="front"), work / "bundles" / name / "front"),
                         write_bundle(to_bundle(b, name="back"), work / "bundles" / name / "back")]
        return out
    raise SystemExit(f"unknown case {case!r}: demo, shared, crops, degraded or fused")


def default_rig() -> str | None:
    """The build job's rig when none is asked for (engine/options.py declares it)."""
    from engine.options import options_for

    return next(o for o in options_for("build") if o.name == "rig").default_for("build")


def build(bundle_dirs: list[Path], out: Path, rig: str | None = None) -> float:
    """Build one avatar (several bundle folders: fused) and return the seconds it took; rig: the
    convention, None for none (the callers that measured unrigged avatars keep that default)."""
    from engine.avatar.build import build_avatar
    from engine.avatar.fused import build_fused_avatar

    start = time.perf_counter()
    if len(bundle_dirs) == 1:
        build_avatar(bundle_dirs[0], out, rig=rig)
    else:
        build_fused_avatar(bundle_dirs, out, rig=rig)
    return time.perf_counter() - start


def main() -> None:
    from bench_slits import measure as measure_slits

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cases", default="demo,shared,crops,degraded,fused")
    parser.add_argument("--size", default="768x1024", help="synthetic photo size, WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=102, help="engine.synthetic person of the degraded and fused cases")
    parser.add_argument("--rig", default=None, help="the rig's convention, or none (default: the build job's, rigify)")
    parser.add_argument("--render-args", default="", help="passed on to bench/render_avatar.py")
    parser.add_argument("--no-render", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    rig = default_rig() if args.rig is None else (None if args.rig == "none" else args.rig)
    avatars = []
    for case in args.cases.split(","):
        for name, dirs in bundles(case, args.out / "work", width, height, args.seed).items():
            out = args.out / "avatars" / name
            if not (out / "avatar.json").exists():
                seconds = build(dirs, out, rig)
                print(f"{name}: built {out} in {seconds:.1f} s, load {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
                      flush=True)
            slits = measure_slits(out)  # the surface facing itself across a crack (bench_slits.py)
            print(f"{name}: slit faces {slits['slit_faces']} ({slits['slit_cm2']:.2f} cm2; the parted arms' cut walls "
                  f"apart, {slits['cut_wall_cm2']:.2f} cm2), creases {slits['creases']}", flush=True)
            avatars.append(out)
    if args.no_render or not avatars:
        return
    command = [sys.executable, str(REPO / "bench" / "render_avatar.py"), *map(str, avatars),
               "--out", str(args.out / "renders"), *shlex.split(args.render_args)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if "sheet.png" in line or ": view " in line]
    print("\n".join(lines) or done.stdout[-2000:])
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])


if __name__ == "__main__":
    main()
