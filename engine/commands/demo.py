"""`sapiens-engine demo`: build an avatar from the bundled sample, with no model weights needed.

The sample (assets/sample/) is a predictions bundle of a synthetic person, so the demo runs the
whole build (surface, textures, files) and says what it did at each stage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.commands.build import StagePrinter, add_build_options, build_with_options, summarize
from engine.errors import BundleError
from engine.options import from_args

HELP = "build an avatar from the bundled sample (no weights needed)"
DEFAULT_OUT = Path("sapiens_demo_avatar")


def sample_bundle() -> Path:
    from engine.paths import asset

    path = asset("sample")
    if not (path / "bundle.json").is_file():
        raise BundleError(f"{path}: the bundled sample is missing from this installation (no bundle.json)")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build an avatar from the synthetic person bundled with the engine (assets/sample/): no "
        "photo and no model weights are needed. Prints each stage and the files written."
    )
    parser.add_argument("--out", dest="out_dir", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"avatar directory to write (default ./{DEFAULT_OUT})")
    # the product is a rigged avatar: the demo shows all of it unless told otherwise (--rig none)
    add_build_options(parser, defaults={"rig": "rigify"})


def run(args: argparse.Namespace) -> int:
    bundle = sample_bundle()
    meta = json.loads((bundle / "bundle.json").read_text())
    photo = meta.get("photo", {})
    maps = ", ".join(k for k in meta.get("files", {}) if k not in ("image", "albedo_preview"))
    print(f"input: {bundle} (photo {photo.get('width')} x {photo.get('height')}; {maps})")
    print(f"options: detail {args.detail}, resolution {args.resolution}, watertight {args.watertight}, "
          f"faces {args.max_faces or 'all'}, texture {args.texture_size}, rig {args.rig or 'none'}")
    print("stages:", flush=True)
    options = {**from_args(args, "build"), "bundle_dir": str(bundle), "out_dir": str(args.out_dir)}
    out_dir = build_with_options(options, StagePrinter(sys.stdout))
    summarize(out_dir)
    return 0
