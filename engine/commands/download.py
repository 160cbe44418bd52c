"""`sapiens-engine download --size 0.4b [--tasks ...]`: fetch released checkpoints from the hub."""

from __future__ import annotations

HELP = "fetch released checkpoints from the Hugging Face hub"


def add_arguments(parser) -> None:
    parser.add_argument("--size", default="0.4b", help="model size: 0.4b, 0.8b, 1b or 5b (default 0.4b)")
    parser.add_argument("--tasks", default="pose,seg,normal,pointmap",
                        help="comma list of tasks (default: every published one); 'pretrain' for the backbone")
    parser.add_argument("--checkpoints", default=None, metavar="DIR",
                        help="where to put them (default: $SAPIENS_CHECKPOINTS)")
    parser.add_argument("--revision", default="main", help="hub revision (branch, tag or commit)")


def run(args) -> int:
    from engine.checkpoints import checkpoints_root, download_checkpoint
    from engine.commands.predict import ProgressBar

    root = checkpoints_root(args.checkpoints)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for task in tasks:
        bar = ProgressBar()
        try:
            path = download_checkpoint(task, args.size, root, revision=args.revision, progress=bar)
        finally:
            bar.close()
        print(path)
    return 0
