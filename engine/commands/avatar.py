"""`sapiens-engine avatar PHOTO... --out DIR`: photos -> avatars (predict + build, predictions cached)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.commands.build import StagePrinter, summarize
from engine.options import add_arguments as add_options
from engine.options import from_args

HELP = "photos to avatars: predict (cached) and build in one job"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Make an avatar from each photo: run the Sapiens2 models (their predictions are cached by "
        "photo content, model files and options, so a second run with other build options only "
        "rebuilds), then build OUT/NAME/ (avatar.glb, mesh files, textures/, avatar.json). The "
        "models load once for all the photos."
    )
    add_options(parser, "avatar")


def run(args: argparse.Namespace) -> int:
    from engine.jobs import run_job

    result = run_job("avatar", from_args(args, "avatar"), progress=StagePrinter())
    for row in result["avatars"]:
        print(f"{row['photo']}: predictions {row['predictions']}", file=sys.stderr)
        for note in row.get("notes") or []:
            print(f"sapiens-engine avatar: {row['photo']}: {note}", file=sys.stderr)
        summarize(Path(row["avatar_dir"]), stream=sys.stderr)
        print(row["avatar_dir"])
    for row in result["failed"]:
        print(f"sapiens-engine avatar: {row['message']} (skipped)", file=sys.stderr)
    print(f"models loaded: {result['model_loads']}", file=sys.stderr)
    return 1 if result["failed"] else 0
