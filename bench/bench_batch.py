"""Batch throughput: the serial loop vs Ray Data with 1 and 2 model workers on the same inputs;
Ray's start-up cost; a simulated cluster (a head and a worker node on this machine, loopback
only) run end to end through the CLI.

    .venv/bin/python bench/bench_batch.py [--items 16] [--cpus 2] [--no-cluster]

Two stages, each on --items inputs: predict (photos; tiny random models from
engine.models.testing, tasks seg, normal, pointmap) and build (copies of the bundled sample,
no rig, 512 texels). Random tiny models give maps no surface can be built from, so the build
stage takes real bundles. Prints items/s per configuration and the ratios to the serial loop, and
the two stages' times added per item (predict + build of the same items).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TASKS = ["seg", "normal", "pointmap"]


def make_inputs(root: Path, items: int) -> tuple[Path, Path]:
    from PIL import Image

    from engine.checkpoints import checkpoint_path
    from engine.models.testing import write_tiny_checkpoint
    from engine.paths import asset

    checkpoints = root / "checkpoints"
    for task in TASKS:
        path = checkpoint_path(checkpoints, task, "0.4b")
        path.parent.mkdir(parents=True, exist_ok=True)
        size = (1024, 768) if task == "pointmap" else (256, 192)   # pointmap: its training size only
        write_tiny_checkpoint(path, task, img_size=size, num_layers=2, num_kv_heads=(4, 4))
    photos = root / "photos"
    photos.mkdir()
    image = Image.open(asset("sample", "image.png")).convert("RGB")
    for i in range(items):   # distinct photos (distinct keys): shifted and mirrored copies
        shifted = Image.new("RGB", image.size)
        shifted.paste(image, (i * 3 - 20, 0))
        (shifted.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else shifted).save(photos / f"p{i:02d}.png")
    bundles = root / "bundles"
    for i in range(items):
        shutil.copytree(asset("sample"), bundles / f"b{i:02d}")
    return checkpoints, photos, bundles


def options(inputs: Path, out: Path, checkpoints: Path, steps: list, **extra) -> dict:
    from engine.options import validate

    return validate("batch", {"inputs": [str(inputs)], "out_dir": str(out), "checkpoints": str(checkpoints),
                              "tasks": TASKS, "texture_size": 512, "steps": steps, **extra})


def timed_run(label: str, opts: dict, serial: bool = False) -> float:
    from engine.jobs.batch import run

    t0 = time.perf_counter()
    result = run(opts, serial=serial)
    seconds = time.perf_counter() - t0
    assert result["counts"]["failed"] == 0, result["failed"]
    rate = result["counts"]["done"] / seconds
    print(f"{label:<28} {seconds:7.1f} s  {rate:.3f} items/s   ({result['summary']})", flush=True)
    return rate


def cluster_run(photos: Path, out: Path, checkpoints: Path) -> None:
    """`ray start --head` + one worker node on 127.0.0.1, then the CLI with --address."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = "6390"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
    start = [[ray_bin, "start", "--head", "--port", port, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
              "--include-dashboard", "false", "--disable-usage-stats"],
             [ray_bin, "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
              "--disable-usage-stats"]]
    try:
        t0 = time.perf_counter()
        for command in start:
            subprocess.run(command, check=True, capture_output=True, env=env, timeout=180)
        print(f"cluster: head + worker node started in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "engine", "batch", str(photos), "--out", str(out),
                               "--checkpoints", str(checkpoints), "--tasks", ",".join(TASKS), "--steps", "predict",
                               "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, env=env,
                              timeout=3600, cwd=REPO)
        print(f"cluster run: exit {proc.returncode} in {time.perf_counter() - t0:.1f} s: {proc.stdout.strip()}")
        if proc.returncode:
            print(proc.stderr[-2000:])
        nodes = {json.loads(line)["status"] for line in (out / "batch_report.jsonl").read_text().splitlines()}
        print(f"cluster report statuses: {sorted(nodes)}")
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--no-cluster", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        checkpoints, photos, bundles = make_inputs(root, args.items)
        print(f"{args.items} photos (predict: tiny models, {', '.join(TASKS)}) and {args.items} bundles (build), "
              f"local Ray with {args.cpus} CPUs, machine: {os.cpu_count()} CPUs (shared with other work)")
        stages = (("predict", photos), ("build", bundles))
        serial = {step: timed_run(f"serial {step} loop", options(inputs, root / f"serial_{step}", checkpoints, [step]),
                                  serial=True) for step, inputs in stages}
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        print(f"ray start-up (local, {args.cpus} CPUs): {time.perf_counter() - t0:.1f} s")
        rates_by_step = {}
        for step, inputs in stages:
            rates = rates_by_step[step] = {}
            for workers in (1, 2):
                what = "model worker(s)" if step == "predict" else "build(s) at once"   # --workers, build only
                rates[workers] = timed_run(f"ray {step}, {workers} {what}",
                                           options(inputs, root / f"ray_{step}_{workers}", checkpoints, [step],
                                                   workers=workers, cpus=args.cpus))
            timed_run(f"ray {step}, rerun (all skipped)",
                      options(inputs, root / f"ray_{step}_2", checkpoints, [step], workers=2, cpus=args.cpus))
            print(f"{step}: ratio to the serial loop: 1 worker {rates[1] / serial[step]:.2f}x, "
                  f"2 workers {rates[2] / serial[step]:.2f}x")
        ray.shutdown()
        # the same items through both stages: their times add (tiny random models give maps no
        # surface can be built from, so one run cannot do both on the same photos)
        both = lambda p, b: 1.0 / (1.0 / p + 1.0 / b)  # noqa: E731
        serial_both = both(serial["predict"], serial["build"])
        ray_both = {w: both(rates_by_step["predict"][w], rates_by_step["build"][w]) for w in (1, 2)}
        print(f"predict + build (stage times added): serial {serial_both:.3f} items/s, 1 worker {ray_both[1]:.3f} "
              f"({ray_both[1] / serial_both:.2f}x), 2 workers {ray_both[2]:.3f} ({ray_both[2] / serial_both:.2f}x)")
        if not args.no_cluster:
            cluster_run(photos, root / "cluster", checkpoints)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
