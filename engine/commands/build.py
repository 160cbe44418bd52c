"""`sapiens-engine build BUNDLE --out DIR`: a predictions bundle -> an avatar directory (docs/avatar.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.options import add_arguments as add_options
from engine.options import from_args

HELP = "turn a predictions bundle into an avatar (mesh, textures, rig)"


def add_build_options(parser: argparse.ArgumentParser, **kw) -> None:
    """The surface, texture, rig and format options `build` and `demo` share (engine/options.py)."""
    add_options(parser, "build", skip=("bundle_dir", "views", "out_dir"), **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build an avatar directory from a predictions bundle (or the reference demo scripts' "
        "outputs): avatar.glb, mesh.ply, mesh.obj, textures/ and avatar.json. Several bundles of one "
        "person in one pose (front, back, sides) are fused into one closed avatar; the first is the "
        "reference (its camera, its keypoints for the rig)."
    )
    add_options(parser, "build")


class StagePrinter:
    """Prints each stage's progress messages as they come, with the time since the start."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = None

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        if (stage, message) == self.last:
            return
        self.last = (stage, message)
        print(f"  {time.perf_counter() - self.start:6.2f} s  {stage:<9} {message}", file=self.stream, flush=True)


def build_with_options(options: dict, progress) -> Path:
    """Run the build job (engine/jobs/build.py) on the command's options; returns the avatar directory."""
    from engine.jobs import run_job

    return Path(run_job("build", options, progress=progress)["avatar_dir"])


def summarize(out_dir: Path, stream=None) -> None:
    """What was written: stage timings, mesh size, texture source, files."""
    stream = stream or sys.stdout
    manifest = json.loads((out_dir / "avatar.json").read_text())
    timings = manifest["timings_s"]
    print("stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()) + f" (total {sum(timings.values()):.2f} s)", file=stream)
    mesh, textures = manifest["mesh"], manifest["textures"]
    print(f"mesh: {mesh['vertices']} vertices, {mesh['faces']} triangles, {mesh['height']:.3f} m tall, "
          f"material slots {', '.join(manifest['material_slots'])}", file=stream)
    print(f"textures: {textures['size'][0]} x {textures['size'][1]}, base colour from the {textures['albedo_source']}", file=stream)
    print(f"wrote {out_dir}:", file=stream)
    for path in sorted(out_dir.rglob("*")):
        if path.is_file():
            print(f"  {path.relative_to(out_dir)}  ({path.stat().st_size / 1e6:.2f} MB)", file=stream)


def run(args: argparse.Namespace) -> int:
    out_dir = build_with_options(from_args(args, "build"), StagePrinter())
    summarize(out_dir)
    return 0
