"""Avatar build: seconds and peak memory of the whole build, and of the texture baking alone.

Usage: .venv/bin/python bench/bench_avatar.py [--source shared|generated] [--samples ../shared/samples]
                                             [--texture-size 2048] [--cases CASE ...] [--reps N] [--profile DIR]

Input: a 1024 x 768 bundle with ~300k person pixels, made as bench/bench_surface.py makes its
own (a shared synthetic person ray-cast from a closer camera, exact maps then degraded), plus
the person's albedo and photo carried along the same rays; with --source generated, the
project's own generator's person (bench_surface.generated_person, ~300k person pixels) with its
rendered photo and albedo, and its hand and face crops (engine.synthetic.crops.render_crops, as
bench/bench_detail.py makes them: the crop's pointmap at a wrong guessed scale and shift that the
build must undo, degraded as a network's crop output: 3 mm noise, 1.5 px blur). Cases (each in
its own process, so its peak resident memory, ru_maxrss, is its own):
  mesh              detail none (no refinement)
  refined           detail normals
  watertight        detail normals, watertight, the crops off
  watertight+crops  as watertight with the detail crops on (the hands solved
                    again from their crops, partly in the geometry worker process); only with
                    --source generated (the shared people have no crops); default with it
  watertight+crops+rig  the same, rigged (rigify): the default avatar since the rig became the
                    CLI's, panel's and jobs' default; only with --source generated
  watertight+crops/serial  the same, the hands solved all in the build's process (what the
                    worker saves); not a default case
Each prints wall seconds per stage (avatar.json's timings), CPU seconds (the build's process and the
geometry worker's), peak memory, the
texture-baking seconds separately, and with crops the seconds the build waited for the worker's
hands after its own solid (near 0: the worker keeps up; more: the worker is on the path), and how many
hands the worker also drew onto the body (when it had solved them before the body was ready: then the
build cuts the body's boxes meanwhile). Figures are printed; nothing is asserted. --profile DIR: each
build also profiled (cProfile, the build's process only, its times inflated by the profiler),
statistics in DIR/CASE-REP.prof and its 12 costliest functions by own time printed.
The build is timed as a running engine does it: open3d (the closed solid's Poisson, 0.8-0.9 s
to import) is imported once per engine process, by the first closed build, so the child
imports it before the clock starts and prints that import's seconds apart ("open3d import").
A one-shot CLI run pays it on top of the figure printed. Likewise the hand-solve worker process
(engine.geometry.solve_worker) that a running engine keeps warm: the child starts it before the
clock and prints its start-up apart. The load average is printed with the figures (the machine
may be shared); --reps N runs every case N times, interleaved.
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
    "watertight": dict(detail="normals", watertight=True, detail_crops=False),
    "watertight+crops": dict(detail="normals", watertight=True, detail_crops=True),
    # the default avatar (CLI, panel, `avatar` job): closed, the crops on, rigged (issue 13)
    "watertight+crops+rig": dict(detail="normals", watertight=True, detail_crops=True, rig="rigify"),
    # the same with the hands solved all in the build's process (no geometry worker)
    "watertight+crops/serial": dict(detail="normals", watertight=True, detail_crops=True),
}
NEEDS_CROPS = ("watertight+crops", "watertight+crops+rig", "watertight+crops/serial")


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
    """The generated ~300k-pixel person, degraded as the surface bench does, with its hand and
    face crops (bench_detail's guessed scale and shift, degraded), as a bundle directory."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from bench_detail import GUESS_SCALE, GUESS_SHIFT, degraded_crops
    from bench_surface import generated_person, make_generated_bundle

    from engine.bundle import write_bundle
    from engine.synthetic import to_bundle
    from engine.synthetic.crops import render_crops

    person = generated_person()
    make_generated_bundle(out_dir / "maps.npz", person)
    maps = np.load(out_dir / "maps.npz")
    bundle = to_bundle(person, name="bench")
    bundle.pointmap, bundle.normal = maps["pointmap"], maps["normal"]
    bundle.crops = degraded_crops(render_crops(person, scale=GUESS_SCALE, shift=GUESS_SHIFT), seed=5)
    return write_bundle(bundle, out_dir / "bundle")


def run_case(case: str, bundle: str, texture_size: int, profile: str | None = None) -> dict:
    """Runs in a child process: one build, its timings and peak memory; with `profile`, the
    build process's cProfile statistics written to that file (the worker's are not in them)."""
    import resource
    import time

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    from engine.avatar.build import build_avatar
    from engine.formats import writers_for

    writers_for(None, "avatar")  # the default writers' modules (pygltflib) imported, as a running engine has them
    # open3d (the closed solid's Poisson) is imported once per engine process, by its first
    # closed build; a running engine has it: imported here before the clock, its time printed apart
    import_seconds = time.perf_counter()
    import open3d  # noqa: F401

    import engine.geometry.watertight  # noqa: F401

    import_seconds = time.perf_counter() - import_seconds
    worker_seconds = None
    if case.endswith("/serial"):
        from engine.geometry import solve_worker

        solve_worker.shared = lambda start=True: None  # no worker: the build solves the hands itself
    elif CASES[case].get("detail_crops"):
        # the hands' solve process a running engine keeps warm (started by its first closed build
        # with crops): started and ready before the clock, its start-up printed apart
        from engine.geometry import solve_worker

        worker_seconds = solve_worker.shared().wait_ready()
    waits = _time_hand_waits()
    with tempfile.TemporaryDirectory() as tmp:
        from bench_detail import worker_cpu_seconds

        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
        wall, cpu, worker_cpu = time.perf_counter(), time.process_time(), worker_cpu_seconds()
        if profiler is not None:
            profiler.enable()
        out = build_avatar(bundle, Path(tmp) / "avatar", texture_size=texture_size, **CASES[case])
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        wall, cpu, worker_cpu = time.perf_counter() - wall, time.process_time() - cpu, worker_cpu_seconds() - worker_cpu
        manifest = json.loads((out / "avatar.json").read_text())
    return {
        "case": case,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu + worker_cpu, 2),
        "worker_cpu_seconds": round(worker_cpu, 2),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "stages": manifest["timings_s"],
        "vertices": manifest["mesh"]["vertices"],
        "faces": manifest["mesh"]["faces"],
        "texture": manifest["textures"]["size"],
        "open3d_import_seconds": round(import_seconds, 2),
        "worker_start_seconds": None if worker_seconds is None else round(worker_seconds, 2),
        "load": " ".join(f"{x:.2f}" for x in __import__("os").getloadavg()),
        "hands": _hands_summary(manifest),
        "hand_wait_seconds": round(sum(waits), 2) if waits else None,
        "hands_blended_in_worker": sum(blended) if blended else None,
    }


def _time_hand_waits() -> list:
    """The seconds the build's process waits for the worker's hands (HandSolve._wait on the hands'
    solves, after the body's solid; not the crops' samples): near 0 when the worker keeps up
    with the body's solve, else the worker is the critical path there. Filled as the build runs."""
    import time

    from engine.geometry.detail_solid import HandSolve

    waits = []
    wait = HandSolve._wait

    def timed(self, future, what):
        began = time.perf_counter()
        try:
            return wait(self, future, what)
        finally:
            if "samples" not in what:
                waits.append(time.perf_counter() - began)

    HandSolve._wait = timed
    apply = HandSolve.apply

    def applied(self, *args, **kwargs):
        try:
            return apply(self, *args, **kwargs)
        finally:
            blended.append(getattr(self, "blended_in_worker", 0))

    HandSolve.apply = applied
    return waits


blended = []  # per HandSolve applied: how many hands the worker also drew onto the body (blend_hands)


def _hands_summary(manifest: dict) -> str:
    """What became of the hands, from avatar.json: solved again (Poisson depth) or why not."""
    record = manifest["mesh"].get("surface", {}).get("detail_crops", {}).get("closed_hands")
    if not record:
        return ""
    words = [f"{c['name']} " + (f"solved again (depth {c['poisson_depth']})" if "poisson_depth" in c else c.get("note", "kept"))
             for c in record.get("crops", [])]
    joined = {True: ", joined on the body's part near them", False: ", joined on the whole body"}.get(record.get("near_boolean"), "")
    return ("hands: " + ", ".join(words) + f", {record.get('hands_solved_in_worker', 0)} in the worker process" + joined
            + (f" ({record['note']})" if record.get("note") else "") + "".join(f"; {n}" for n in record.get("notes", [])))


def _print_profile(path: Path, top: int = 12) -> None:
    """The profiled build's costliest functions by own time (where the build process's CPU went)."""
    import io
    import pstats

    text = io.StringIO()
    pstats.Stats(str(path), stream=text).sort_stats("tottime").print_stats(top)
    rows = [line for line in text.getvalue().splitlines() if line.strip()[:1].isdigit() and "function calls" not in line]
    print(f"{'':<23} profile {path} (ncalls, own s, per call, cumulative s, per call, function):")
    for line in rows[:top]:
        print(f"{'':<25}{line.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples")
    parser.add_argument("--source", choices=("shared", "generated"), default="shared")
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--cases", nargs="*", default=None, choices=list(CASES),
                        help="default: all (watertight+crops only with --source generated)")
    parser.add_argument("--reps", type=int, default=1, help="runs of every case, interleaved")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write each build's cProfile statistics (the build process only; its times inflated by "
                             "the profiler) to DIR/CASE-REP.prof and print its 12 costliest functions by own time")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.bundle, args.texture_size, str(args.profile) if args.profile else None)))
        return

    import os

    cases = args.cases if args.cases is not None else [c for c in CASES if not c.endswith("/serial")
                                                       and (args.source == "generated" or c not in NEEDS_CROPS)]
    if args.source != "generated" and any(c in NEEDS_CROPS for c in cases):
        parser.error(f"{', '.join(c for c in cases if c in NEEDS_CROPS)} needs --source generated (the shared people have no crops)")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = make_bundle(args.samples, Path(tmp)) if args.source == "shared" else make_generated_avatar_bundle(Path(tmp))
        person = int(np.count_nonzero(np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(bundle / "mask.png"))))
        print(f"bundle ({args.source}): 1024 x 768, {person} person pixels, texture {args.texture_size}; machine: {os.cpu_count()} CPU cores; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for rep in range(args.reps):
            for case in cases:
                profile = None
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    profile = args.profile / f"{case.replace('/', '-')}-{rep}.prof"
                child = subprocess.run(
                    [sys.executable, __file__, "--case", case, "--bundle", str(bundle), "--texture-size", str(args.texture_size)]
                    + (["--profile", str(profile)] if profile else []),
                    capture_output=True, text=True, check=True,
                )
                r = json.loads(child.stdout.strip().splitlines()[-1])
                stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
                print(f"{case:<23} {r['seconds']:6.2f} s wall ({r['cpu_seconds']:.2f} s CPU, the worker's {r['worker_cpu_seconds']:.2f}), peak {r['peak_mb']} MB, "
                      f"{r['vertices']} vertices / {r['faces']} faces, texture {r['texture'][0]} x {r['texture'][1]}; "
                      f"load average {r['load']}")
                print(f"{'':<23} stages (s): {stages}; texture baking {r['stages']['textures']:.2f} s; "
                      f"before the clock: open3d import {r['open3d_import_seconds']:.2f} s"
                      + (f", hand-solve worker start {r['worker_start_seconds']:.2f} s" if r.get("worker_start_seconds") is not None else "")
                      + (f"; waited {r['hand_wait_seconds']:.2f} s for the worker's hands" if r.get("hand_wait_seconds") is not None else "")
                      + (f" ({r['hands_blended_in_worker']} blended onto the body there, solved before the body was)"
                         if r.get("hands_blended_in_worker") else "")
                      + (f"; {r['hands']}" if r.get("hands") else ""))
                if profile:
                    _print_profile(profile)


if __name__ == "__main__":
    main()
