"""`sapiens-engine models`: which checkpoints are installed and which are missing."""

from __future__ import annotations

import json

HELP = "list installed and missing checkpoints"


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoints", default=None, metavar="DIR",
                        help="checkpoint directory (default: $SAPIENS_CHECKPOINTS)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from engine.checkpoints import checkpoints_root, download_command, list_checkpoints
    from engine.errors import EngineError

    root = checkpoints_root(args.checkpoints)
    if root.exists() and not root.is_dir():
        raise EngineError(f"--checkpoints {root}: is a file, not a folder of checkpoints")
    rows = list_checkpoints(root)
    if args.json:
        print(json.dumps({"root": str(root), "checkpoints": [r.as_dict() for r in rows]}, indent=1))
        return 0
    print(f"checkpoints in {root}" + ("" if root.is_dir() else " (no such folder yet: download makes it)"))
    for r in rows:
        if r.installed:
            state = f"installed  {r.bytes / 1e9:6.2f} GB"
        elif r.present:
            state = f"unusable   {r.path}: {r.problem}"
        elif r.task == "albedo":
            state = "missing    (not published yet)"
        else:
            state = f"missing    {download_command(r.task, r.size)}"
        print(f"  {r.size:>5} {r.task:<9} {state}")
    return 0
