"""`sapiens-engine retarget MOTION_DIR --target CHARACTER --out DIR`: an animation onto any character."""

from __future__ import annotations

import argparse

from engine.options import add_arguments as add_options
from engine.options import from_args

HELP = "put an animation onto any character (GLB/glTF/VRM or skeleton.json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, "retarget")


def run(args: argparse.Namespace) -> int:
    from engine.jobs import run_job

    result = run_job("retarget", from_args(args, "retarget"))
    mapped = len(result["bone_map"])
    print(f"retargeted {result['frames']} frames onto {mapped} bones ({result['convention']} names, "
          f"root motion x{result['scale']:.3f}) -> {result['output']} ({', '.join(result['files'])})")
    for note in result["notes"]:
        print(f"note: {note}")
    return 0
