"""The CPU fast modes against the reference-equivalent fp32 path, in one interleaved run.

    .venv/bin/python bench/bench_cpu.py [--size 0.4b] [--tasks pose,seg,normal,pointmap]
        [--modes fp32,bf16,int8] [--reps 1] [--ckpt-dir DIR] [--json out.json]

Random-weight checkpoints of the released architecture for --size (engine.models.testing.randomize_,
seed 0; written once into --ckpt-dir, a temporary folder by default) and one photo-like 1024 x 768
input. Each (rep, mode) runs in a fresh child process that loads the task models exactly as
predict does (engine.model_cache.ModelCache: memory-mapped safetensors, then the mode's transform)
and runs every task once on the input, pose with its flip pass in the same batch. Modes are
interleaved (the order rotates each rep), so a load change on a shared machine hits them alike.
Printed: the thread count, os.getloadavg() before and after, per mode and task the seconds, the
median over reps of the paired ratios mode / fp32 (same rep), the child's peak resident memory
(ru_maxrss: models, activations, and the file pages it touched), and each mode's agreement with
fp32 (engine.runtime.precision: keypoint px, normal angle, pointmap relative error, seg
agreement). Random weights give flat heatmaps and weak class margins: these agreement figures are
pessimistic bounds for trained weights. fp32 is the engine's CPU path, which reproduces the
reference implementation's numbers (the parity fixtures). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

INPUT_HW = (1024, 768)
TASKS = ("pose", "seg", "normal", "pointmap")


def smooth_image(seed: int = 0) -> torch.Tensor:
    """A normalized 1 x 3 x H x W input with photo-like spatial correlation (upsampled noise)."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.randn(1, 3, 32, 24, generator=g), size=INPUT_HW, mode="bicubic",
                         align_corners=False)


def make_checkpoints(folder: Path, size: str, tasks) -> dict[str, Path]:
    from engine.models.loading import save_checkpoint
    from engine.models.sapiens2 import build_model
    from engine.models.testing import randomize_

    paths = {}
    for task in tasks:
        path = folder / task / f"sapiens2_{size}_{task}.safetensors"
        if not path.is_file():
            t0 = time.perf_counter()
            save_checkpoint(randomize_(build_model(f"sapiens2_{size}", task), seed=0), path)
            print(f"  wrote {path.name} ({time.perf_counter() - t0:.0f} s)", flush=True)
        paths[task] = path
    return paths


def child(args) -> int:
    """One mode, every task, once: seconds per task, peak memory, outputs saved for comparison."""
    from engine.model_cache import ModelCache
    from engine.paths import asset

    paths = {t: Path(p) for t, p in json.loads(args.paths).items()}
    x = torch.load(args.input)
    flip = json.loads(asset("keypoints308.json").read_text())["flip_indices"]
    cache = ModelCache(paths, device="cpu", dtype=args.child, batch_size=1)
    times, outputs = {}, {}
    for task in paths:
        t0 = time.perf_counter()
        runner = cache.get(task)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = runner.pose_flip_test(x, flip) if task == "pose" else runner(x)
        times[task] = {"load": load, "forward": time.perf_counter() - t0}
        outputs[task] = out
    if args.save:
        torch.save(outputs, args.save)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": args.child, "times": times, "peak_gb": peak_kb / 2**20,
                      "threads": torch.get_num_threads(), "runtime": cache.described}))
    return 0


def run_child(mode: str, paths, input_path: Path, save: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--paths", json.dumps({t: str(p) for t, p in paths.items()}),
           "--input", str(input_path)] + (["--save", str(save)] if save else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="0.4b")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--modes", default="fp32,bf16,int8", help="fp32 first: the others are compared with it")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--ckpt-dir", type=Path, default=None, help="keep the random checkpoints here (reused)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--paths", default=None, help=argparse.SUPPRESS)
    p.add_argument("--input", default=None, help=argparse.SUPPRESS)
    p.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    from engine.runtime import cpu_modes
    from engine.runtime.precision import compare

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if modes[0] != "fp32":
        raise SystemExit("--modes must start with fp32 (the reference-equivalent path)")
    features = cpu_features_line(cpu_modes.cpu_features())
    print(f"CPU: {features}; auto mode here: {cpu_modes.auto_mode()}")
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        tmp = Path(tmp)
        ckpt_dir = args.ckpt_dir or tmp / "ckpt"
        print(f"sapiens2_{args.size}, tasks {', '.join(tasks)} (pose with flip), one {INPUT_HW[0]}x{INPUT_HW[1]} "
              f"input, random weights (seed 0), modes {', '.join(modes)}, {args.reps} rep(s)")
        paths = make_checkpoints(ckpt_dir, args.size, tasks)
        input_path = tmp / "input.pt"
        torch.save(smooth_image(), input_path)
        runs: dict[str, list[dict]] = {m: [] for m in modes}
        loads = [os.getloadavg()]
        for rep in range(args.reps):
            order = modes[rep % len(modes):] + modes[:rep % len(modes)]
            for mode in order:
                save = tmp / f"out_{mode}.pt" if rep == 0 else None
                t0 = time.perf_counter()
                result = run_child(mode, paths, input_path, save)
                loads.append(os.getloadavg())
                total = sum(v["forward"] for v in result["times"].values())
                print(f"  rep {rep} {mode:5s} forward {total:8.1f} s  peak {result['peak_gb']:.2f} GB  "
                      f"threads {result['threads']}  load {loads[-1][0]:.1f}  "
                      f"(wall {time.perf_counter() - t0:.0f} s)", flush=True)
                runs[mode].append(result)
        report = summarize(runs, modes, tasks, loads)
        reference = torch.load(tmp / "out_fp32.pt")
        report["agreement"] = {}
        for mode in modes[1:]:
            outs = torch.load(tmp / f"out_{mode}.pt")
            report["agreement"][mode] = {t: compare(t, outs[t], reference[t], INPUT_HW) for t in tasks}
        print_agreement(report["agreement"])
    report.update(size=args.size, tasks=tasks, modes=modes, reps=args.reps, cpu=features)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def cpu_features_line(f: dict) -> str:
    return (f"torch capability {f['capability']}, bf16 dot products {'yes' if f['bf16_dot'] else 'no'}, "
            f"int8 dot products {'yes' if f['int8_dot'] else 'no'}, AMX {'yes' if f['amx'] else 'no'}, "
            f"{f['physical_cores']} physical core(s)")


def summarize(runs, modes, tasks, loads) -> dict:
    print(f"\nthreads {runs['fp32'][0]['threads']}; load average (1 min) from {loads[0][0]:.1f} to "
          f"{loads[-1][0]:.1f}, max {max(l[0] for l in loads):.1f} (2 cores shared with other work)")
    print(f"{'mode':6s} {'task':9s} {'forward s':>10s} {'ratio/fp32':>11s}")
    report = {"loadavg": loads, "modes": {}}
    for mode in modes:
        per_task = {}
        for task in tasks + ["total"]:
            def secs(run, task=task):
                t = run["times"]
                return sum(v["forward"] for v in t.values()) if task == "total" else t[task]["forward"]
            seconds = [secs(r) for r in runs[mode]]
            ratios = [secs(r) / secs(f) for r, f in zip(runs[mode], runs["fp32"])]
            per_task[task] = {"seconds": seconds, "median_ratio": statistics.median(ratios)}
            print(f"{mode:6s} {task:9s} {statistics.median(seconds):10.1f} {statistics.median(ratios):11.3f}")
        peak = max(r["peak_gb"] for r in runs[mode])
        print(f"{mode:6s} peak memory {peak:.2f} GB (ru_maxrss of the four-task process)")
        report["modes"][mode] = {"tasks": per_task, "peak_gb": peak}
    return report


def print_agreement(agreement: dict) -> None:
    for mode, tasks in agreement.items():
        print(f"\n{mode} vs fp32 (random weights: pessimistic):")
        for task, figures in tasks.items():
            parts = []
            for key, value in figures.items():
                if isinstance(value, dict):
                    inner = ", ".join(f"{k} {v:.4g}" for k, v in value.items())
                    parts.append(f"{key} [{inner}]")
                else:
                    parts.append(f"{key} {value:.4g}")
            print(f"  {task}: " + "; ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
