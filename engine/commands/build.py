"""`sapiens-engine build BUNDLE --out DIR`: a predictions bundle -> an avatar directory (docs/avatar.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.options import add_arguments as add_options

HELP = "turn a predictions bundle into an avatar (mesh, textures, rig)"


def add_build_options(parser: argparse.ArgumentParser, **kw) -> None:
    """The surface, texture, rig and format options `build` and `demo` share (engine/options.py)."""
    add_options(parser, "build", skip=("bundle_dir", "out_dir"), **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build an avatar directory from a predictions bundle (or the reference demo scripts' "
        "outputs): avatar.glb, mesh.ply, mesh.obj, textures/ and avatar.json."
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


def build_from_args(bundle, args: argparse.Namespace, progress) -> Path:
    import inspect

    from engine.avatar.build import build_avatar
    from engine.errors import EngineError
    from engine.options import BY_NAME

    extra = {}
    if "formats" in inspect.signature(build_avatar).parameters:
        extra["formats"] = args.formats
    elif list(args.formats) != list(BY_NAME["formats"].default):
        raise EngineError(f"--formats {','.join(args.formats)}: this engine writes only glb,obj,ply so far")
    return build_avatar(
        bundle,
        args.out_dir,
        detail=args.detail,
        resolution=args.resolution,
        watertight=args.watertight,
        target_faces=args.max_faces,
        texture_size=args.texture_size,
        rig=args.rig,
        rest_pose=args.rest_pose,
        progress=progress,
        **extra,
    )


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
    out_dir = build_from_args(args.bundle_dir, args, StagePrinter())
    summarize(out_dir)
    return 0
