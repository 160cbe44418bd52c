"""Predict benchmark: CPU seconds per photo per task, peak memory, time outside the forward passes.

Runs the real pipeline (engine.predict.predict_photos) on synthetic photos, once with the tiny test
models and once with a generated 0.1b-size model set, each in its own process so peak memory
(ru_maxrss) belongs to that configuration alone. The 0.1b set is the sapiens2_0.1b backbone
(768 dims, 12 layers, 12 heads) with the released 0.4b-style heads built for 768 input channels
and random weights: the released checkpoints have no 0.1b task models, so this measures the
smallest real backbone with real-size heads. Each model set runs on every backend asked for
(--backend torch,onnxruntime); ONNX exports are made before the clock starts (reported, not
counted), as a second run would find them. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_predict.py [--models tiny,0.1b] [--backend torch,onnxruntime]
                                            [--photos 3] [--size 1536x1152]
                                            [--writes threaded,serial --reps 2]   # the writer thread's overlap
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TASKS = ("seg", "pose", "normal", "pointmap", "albedo")


def write_models(kind: str, root: Path) -> None:
    """Checkpoints in the released layout; the 0.1b set goes in the 0.4b slot (the engine reads
    the architecture from the file; only the file name says 0.4b)."""
    from engine.models.loading import save_checkpoint
    from engine.models.sapiens2 import build_model
    from engine.models.testing import randomize_, write_tiny_checkpoint

    for task in TASKS:
        path = root / task / f"sapiens2_0.4b_{task}.safetensors"
        if kind == "tiny":
            write_tiny_checkpoint(path, task)
        else:
            save_checkpoint(randomize_(build_model("sapiens2_0.1b", task)), path)


def make_photos(n: int, size_hw: tuple[int, int], folder: Path) -> list[Path]:
    import numpy as np
    from PIL import Image

    h, w = size_hw
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)
        rgb[h // 6: h - h // 8, w // 3: 2 * w // 3] = rng.integers(60, 200, 3)
        path = folder / f"photo{i}.jpg"
        Image.fromarray(rgb).save(path, quality=92)
        paths.append(path)
    return paths


def export_onnx(root: Path) -> float:
    """Export every checkpoint once (what the first onnxruntime run does); seconds taken. In a
    child process, so the exporter's peak memory is not counted as the run's."""
    code = ("import sys, pathlib; sys.path.insert(0, sys.argv[1]); from engine.runtime.factory import ensure_onnx; "
            "[ensure_onnx(p, 'fp32') for p in sorted(pathlib.Path(sys.argv[2]).rglob('*.safetensors'))]")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(REPO), str(root)], check=True, capture_output=True)
    return time.perf_counter() - t0


def serial_writes() -> None:
    """The Predictor's map-back and writes made in the main thread, after each batch's passes (no
    overlap): the baseline the writer thread is measured against (--writes serial)."""
    from concurrent.futures import Future

    import engine.predict.predictor as predictor
    from engine.predict.writing import BundleWriter

    class SerialWriter(BundleWriter):
        def submit(self, works, job) -> None:
            batch = []
            for work in works:
                done = Future()
                try:
                    done.set_result(job(work))
                except Exception as exc:   # reported per photo by collect(), as the thread's are
                    done.set_exception(exc)
                batch.append((work, done))
            self._batches.append(batch)

    predictor.BundleWriter = SerialWriter


def run_one(kind: str, backend: str, n_photos: int, size_hw, threads: int | None, writes: str = "threaded") -> dict:
    import torch

    from engine.bundle import read_bundle
    from engine.predict import predict_photos

    if threads:
        torch.set_num_threads(threads)
    if writes == "serial":
        serial_writes()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_models(kind, tmp / "ckpt")
        setup = time.perf_counter() - t0
        photos = make_photos(n_photos, size_hw, tmp)
        from engine.checkpoints import sha256_file

        t0 = time.perf_counter()
        for path in sorted((tmp / "ckpt").rglob("*.safetensors")):
            sha256_file(path)   # once per checkpoint (cached beside it), not per photo
        hashing = time.perf_counter() - t0
        export = export_onnx(tmp / "ckpt") if backend == "onnxruntime" else 0.0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        dirs = predict_photos(photos, tmp / "out", checkpoints=tmp / "ckpt", device="cpu", dtype="fp32",
                              batch_size=2, backend=backend)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        timings = [read_bundle(d).meta["provenance"]["timings_s"] for d in dirs]
    per_photo = {k: sum(t.get(k, 0.0) for t in timings) / len(timings) for k in timings[0]}
    forward = {t: per_photo.get(f"forward_{t}", 0.0) for t in TASKS}
    recorded = sum(per_photo.values())
    loading = sum(per_photo.get(f"load_{t}", 0.0) for t in TASKS)
    # the map-back of dense outputs and the writes run in a writer thread beside the next
    # batch's forwards: their seconds are work done, not all of it wall time; the wall time
    # outside the passes is what the photo costs beyond its forwards and the model loading
    outside = {
        "decode": per_photo.get("decode", 0.0),
        "resize_in (prep)": sum(per_photo.get(f"prep_{t}", 0.0) for t in TASKS),
        "map_back (post)": sum(per_photo.get(f"post_{t}", 0.0) for t in TASKS),
        "write": per_photo.get("write", 0.0),
    }
    outside_wall = wall / len(dirs) - sum(forward.values()) - loading
    del recorded
    per_photo_load = loading
    return {"models": kind, "backend": backend, "writes": writes, "export_s": export, "photos": len(dirs), "photo_hw": list(size_hw), "setup_s": setup,
            "hash_s": hashing, "model_load_s_per_photo": per_photo_load,
            "wall_s_per_photo": wall / len(dirs), "cpu_s_per_photo": cpu / len(dirs),
            "forward_s_per_photo": forward, "outside_s_per_photo": outside, "outside_wall_s_per_photo": outside_wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "torch_threads": torch.get_num_threads()}


def report(r: dict) -> None:
    print(f"\n== {r['models']} models, {r['backend']} backend, {r.get('writes', 'threaded')} writes: {r['photos']} photo(s) "
          f"of {r['photo_hw'][1]} x {r['photo_hw'][0]}, {r['torch_threads']} torch threads ==")
    print(f"  wall per photo {r['wall_s_per_photo']:.2f} s, CPU per photo {r['cpu_s_per_photo']:.2f} s "
          f"(model setup {r['setup_s']:.1f} s, not counted)")
    for task, s in r["forward_s_per_photo"].items():
        print(f"  forward {task:<9} {s:7.2f} s/photo" + ("  (x2: flip test)" if task == "pose" else ""))
    print(f"  model loading     {r['model_load_s_per_photo']:7.2f} s/photo (once per run; "
          f"hashing the checkpoints once: {r['hash_s']:.1f} s, not counted)")
    if r["backend"] == "onnxruntime":
        print(f"  ONNX export       {r['export_s']:7.1f} s for all tasks, once (first use), not counted")
    print(f"  outside forward   {r['outside_wall_s_per_photo']:7.2f} s/photo of wall time; work done there: " +
          ", ".join(f"{k} {v:.2f}" for k, v in r["outside_s_per_photo"].items()) +
          " (map-back and writes overlap the next batch's forwards)")
    print(f"  peak RSS          {r['peak_rss_mb']:7.0f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,0.1b")
    ap.add_argument("--backend", default="torch,onnxruntime", help="comma list of torch, onnxruntime")
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--photos-0.1b", dest="photos_big", type=int, default=1)
    ap.add_argument("--size", default="1536x1152", help="photo W x H... given as HxW")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--writes", default="threaded",
                    help="comma list of threaded (the writer thread, as predict runs) and serial (map-back and "
                         "writes after each batch's passes): both measure the overlap; the order alternates per rep")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size_hw = tuple(int(v) for v in args.size.split("x"))
    if args.one:
        n = args.photos if args.one == "tiny" else args.photos_big
        print(json.dumps(run_one(args.one, args.backend, n, size_hw, args.threads, args.writes)))
        return 0
    results = []
    writes_modes = args.writes.split(",")
    runs = [(kind, backend, writes_modes[(rep + i) % len(writes_modes)])
            for kind in args.models.split(",") for backend in args.backend.split(",")
            for rep in range(args.reps) for i in range(len(writes_modes))]
    for kind, backend, writes in runs:
        cmd = [sys.executable, __file__, "--one", kind, "--backend", backend, "--photos", str(args.photos),
               "--photos-0.1b", str(args.photos_big), "--size", args.size, "--writes", writes]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        report(results[-1])
    summary(results)
    return 0


def summary(results: list[dict]) -> None:
    """One table: forward seconds per photo per task, and the whole photo, for each run."""
    print("\n== forward s/photo per task (CPU), and wall / CPU s per photo ==")
    print(f"  {'models':<6} {'backend':<12} {'writes':<9}" + "".join(f"{t:>9}" for t in TASKS)
          + f"{'wall':>9}{'cpu':>9}{'outside':>9}")
    for r in results:
        print(f"  {r['models']:<6} {r['backend']:<12} {r.get('writes', 'threaded'):<9}"
              + "".join(f"{r['forward_s_per_photo'][t]:9.3f}" for t in TASKS)
              + f"{r['wall_s_per_photo']:9.3f}{r['cpu_s_per_photo']:9.3f}{r['outside_wall_s_per_photo']:9.3f}")
    print(f"  load average (1 min) now {os.getloadavg()[0]:.1f} (2 cores shared with other work)")


if __name__ == "__main__":
    sys.exit(main())
