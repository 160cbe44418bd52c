"""`sapiens-engine build BUNDLE --out DIR`: a predictions bundle -> an avatar directory (docs/avatar.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine.commands import positive_int

HELP = "turn a predictions bundle into an avatar (mesh, textures, rig)"


def add_build_options(parser: argparse.ArgumentParser) -> None:
    """The surface and texture options `build` and `demo` share."""
    parser.add_argument("--detail", choices=("none", "normals"), default="normals",
                        help="refine the pointmap's depth with the predicted normals (default) or not")
    parser.add_argument("--resolution", choices=("full", "half", "quarter"), default="full",
                        help="mesh resolution relative to the photo (default full)")
    parser.add_argument("--watertight", action="store_true",
                        help="close the surface into a solid (back side, Poisson) instead of the front only")
    parser.add_argument("--faces", type=positive_int, default=None, metavar="N",
                        help="decimate to about N triangles (UVs kept); default: no decimation")
    parser.add_argument("--texture-size", type=positive_int, default=2048, metavar="N",
                        help="long side of the textures in texels (default 2048)")
    parser.add_argument("--rig", default=None, metavar="NAME",
                        help="add a skeleton and skin weights in this convention (rigify, mixamo, game)")
    parser.add_argument("--rest-pose", default="photo", metavar="POSE",
                        help="with --rig: the rig's rest pose, photo (default) or a canonical one (apose, tpose)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build an avatar directory from a predictions bundle (or the reference demo scripts' "
        "outputs): avatar.glb, mesh.ply, mesh.obj, textures/ and avatar.json."
    )
    parser.add_argument("bundle", type=Path, help="bundle directory (or reference demo output files/folder)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="avatar directory to write")
    add_build_options(parser)


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
    from engine.avatar.build import build_avatar

    return build_avatar(
        bundle,
        args.out,
        detail=args.detail,
        resolution=args.resolution,
        watertight=args.watertight,
        target_faces=args.faces,
        texture_size=args.texture_size,
        rig=args.rig,
        rest_pose=args.rest_pose,
        progress=progress,
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
    out_dir = build_from_args(args.bundle, args, StagePrinter())
    summarize(out_dir)
    return 0
