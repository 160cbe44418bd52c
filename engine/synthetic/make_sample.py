"""Write one synthetic person as a predictions bundle (the sample the demo builds from).

    python -m engine.synthetic.make_sample assets/sample [--width 576 --height 768 --seed 7]

Also writes the ground truth (gt.json, gt_mesh.ply) into OUT/ground_truth/ unless --no-truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.bundle import write_bundle
from engine.synthetic import make_person, to_bundle, write_ground_truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=576)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pose", default="apose")
    parser.add_argument("--height-m", type=float, default=1.74)
    parser.add_argument("--no-truth", action="store_true")
    args = parser.parse_args(argv)
    person = make_person(args.seed, pose=args.pose, height_m=args.height_m, width=args.width, height=args.height)
    write_bundle(to_bundle(person, name="sample"), args.out)
    if not args.no_truth:
        write_ground_truth(person, args.out / "ground_truth")
    print(f"wrote {args.out}: {args.width} x {args.height}, {int(person.mask.sum())} person pixels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
