"""Render time and peak memory of the synthetic-people generator.

    .venv/bin/python bench/bench_synthetic.py
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.synthetic import degrade, make_motion, make_person, make_sequence, write_sample  # noqa: E402


def main() -> None:
    make_person(0, width=64, height=64)  # warm-up: imports, open3d
    for w, h in ((384, 512), (768, 1024), (1536, 2048)):
        times = []
        for seed in range(3):
            t0 = time.perf_counter()
            person = make_person(seed, pose="apose", width=w, height=h)
            times.append(time.perf_counter() - t0)
        print(f"make_person {w} x {h}: best {min(times):.2f} s, {int(person.mask.sum())} person pixels, "
              f"{len(person.mesh.faces)} triangles")
    t0 = time.perf_counter()
    person = make_person(3, pose="bent", outfit="shorts", width=768, height=1024)
    print(f"make_person 768 x 1024 outfit=shorts: {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    degrade(person, seed=1)
    print(f"degrade 768 x 1024: {time.perf_counter() - t0:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = write_sample(person, Path(tmp) / "person")
        size = sum(p.stat().st_size for p in out.iterdir())
        print(f"write_sample 768 x 1024: {time.perf_counter() - t0:.2f} s, {size / 1e6:.1f} MB")
    t0 = time.perf_counter()
    make_motion(300, "kick")
    print(f"make_motion 300 frames (no rendering): {(time.perf_counter() - t0) * 1000:.0f} ms")
    t0 = time.perf_counter()
    frames = make_sequence(30, "wave", width=256, height=384)
    print(f"make_sequence 30 frames 256 x 384: {(time.perf_counter() - t0) / len(frames) * 1000:.0f} ms per frame")
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
