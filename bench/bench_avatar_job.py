"""Figures for the avatar job's own cost: cache lookup and checks around the build.

    .venv/bin/python bench/bench_avatar_job.py [--runs 3] [--resolution quarter] [--texture-size 512]

The bundled sample's photo is the input and its predictions bundle is planted in the cache under
the key the job computes (tiny checkpoints stand in for the model files, so no weights are
needed), so a run is: hash the photo, find its predictions, check them, build. The same build
through the build job is the reference; the difference is what the avatar job adds. Also the
photo hashing alone, cold (first time in the process) and warm (remembered by path, size, mtime).
Everything is printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--resolution", default="quarter", choices=("full", "half", "quarter"))
    parser.add_argument("--texture-size", type=int, default=512)
    args = parser.parse_args()

    from engine.jobs import prediction_cache, predictors, run_job
    from engine.models.testing import write_tiny_checkpoint
    from engine.paths import asset

    sample = asset("sample")
    work = Path(tempfile.mkdtemp(prefix="bench-avatar-job-"))
    try:
        checkpoints = work / "checkpoints"
        for task in ("pose", "seg", "normal", "pointmap"):
            write_tiny_checkpoint(checkpoints / task / f"sapiens2_0.4b_{task}.safetensors", task, img_size=(256, 192))
        photo = work / "photo.png"
        shutil.copyfile(sample / "image.png", photo)
        options = {"checkpoints": str(checkpoints), "device": "cpu", "resolution": args.resolution,
                   "texture_size": args.texture_size, "rig": "rigify", "detail": "normals"}
        cache = prediction_cache.PredictionCache(work / "cache")
        with predictors.predictor_for(options) as predictor:
            identity = prediction_cache.model_identity(predictor, options)
        t = time.perf_counter()
        key = prediction_cache.cache_key(photo, identity)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        prediction_cache.cache_key(photo, identity)
        warm = time.perf_counter() - t
        shutil.copytree(sample, cache.root / key)

        avatar_s, build_s = [], []
        for run in range(args.runs):
            t = time.perf_counter()
            result = run_job("avatar", {**options, "photos": [str(photo)], "out_dir": str(work / "avatars"),
                                        "cache_dir": str(cache.root)})
            avatar_s.append(time.perf_counter() - t)
            assert result["avatars"][0]["predictions"] == "cached"
            t = time.perf_counter()
            run_job("build", {**{k: v for k, v in options.items() if k not in ("checkpoints", "device")},
                              "bundle_dir": str(sample), "out_dir": str(work / "built")})
            build_s.append(time.perf_counter() - t)
    finally:
        predictors.clear()
        shutil.rmtree(work, ignore_errors=True)

    size = os.path.getsize(sample / "image.png")
    print(f"avatar job on {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}; "
          f"sample photo {size / 1e3:.0f} kB, {args.resolution} mesh, {args.texture_size} px textures, rigify")
    print(f"photo key: cold {cold * 1e3:.2f} ms, warm {warm * 1e3:.3f} ms")
    print(f"avatar job (cached predictions + build): median {statistics.median(avatar_s):.3f} s "
          f"({', '.join(f'{s:.3f}' for s in avatar_s)})")
    print(f"build job alone:                         median {statistics.median(build_s):.3f} s "
          f"({', '.join(f'{s:.3f}' for s in build_s)})")
    print(f"avatar job overhead: {statistics.median(avatar_s) - statistics.median(build_s):+.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
