"""`sapiens-engine animate FRAMES_DIR --out DIR`: an animated skeleton from a sequence of frames."""

from __future__ import annotations

import argparse

HELP = "turn a sequence of frames into an animated skeleton"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from engine.rig.skeleton import available_conventions
    parser.add_argument("frames", help="directory of frames (images, or predictions bundles), or a video file "
                                       "(.mp4 .mov .avi .mkv .webm .m4v; decoded with imageio-ffmpeg)")
    parser.add_argument("--out", required=True, help="output directory (written atomically)")
    parser.add_argument("--rig", default="rigify", choices=available_conventions(),
                        help="skeleton naming convention (a table in assets/rigs/)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate of the sequence (default: the video's own, else 30)")
    parser.add_argument("--no-smooth", action="store_true", help="keep raw per-frame joints")
    parser.add_argument("--min-cutoff", type=float, default=1.0, help="One Euro filter: cutoff at rest, Hz")
    parser.add_argument("--beta", type=float, default=2.0, help="One Euro filter: cutoff gain per m/s of speed")
    parser.add_argument("--size", default="0.4b", help="model size when frames are images")
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from engine.rig.animate import animate_frames

    def progress(stage: str, fraction: float, message: str) -> None:
        print(f"{stage} {fraction * 100:5.1f}% {message}", flush=True)

    out = animate_frames(args.frames, args.out, convention=args.rig, fps=args.fps, smooth=not args.no_smooth,
                         min_cutoff=args.min_cutoff, beta=args.beta, size=args.size, device=args.device,
                         progress=progress)
    print(f"animation written to {out} (animation.glb, animation.bvh, skeleton.json, frames/*.json)")
    return 0
