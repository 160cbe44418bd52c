"""The CPU fast modes against the reference-equivalent fp32 path, in one interleaved run.

    .venv/bin/python bench/bench_cpu.py [--size 0.4b] [--tasks pose,seg,normal,pointmap]
        [--modes fp32,bf16,int8] [--reps 1] [--ckpt-dir DIR] [--json out.json] [--timeline]
    .venv/bin/python bench/bench_cpu.py --predict --modes auto [--size 0.4b] [--ckpt-dir DIR]

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
agreement); with --timeline, each child's resident memory (anonymous and file-backed) at the start,
peak and end of every model load and forward pass. --predict runs `sapiens-engine predict` itself
on one photo instead (--modes auto: the default mode) and prints its peak memory and a timeline
by its progress lines. Random weights give flat heatmaps and weak class margins: these agreement figures are
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
import threading
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


def status_gb(pid: int | str = "self") -> dict:
    """A process's resident memory now, from /proc/PID/status: total, anonymous (private
    allocations) and file-backed (pages of memory-mapped files, such as a checkpoint's), in GB;
    empty where there is no /proc (or the process has ended)."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "hwm"}
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in fields:
                    out[fields[key]] = int(value.split()[0]) / 2**20
    except OSError:
        pass
    return out


class MemoryTimeline:
    """Resident memory sampled every few milliseconds by a thread (torch's kernels release the GIL),
    so each step records its own peak: tracemalloc does not see torch's allocations. VmHWM
    (the process's high-water mark so far) tells which step set the final peak."""

    def __init__(self, every_s: float = 0.01):
        self.every_s, self.steps, self._peak, self._stop = every_s, [], {}, threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self._observe()

    def _observe(self) -> None:
        now = status_gb()
        with self._lock:
            for key in ("rss", "anon", "file"):
                if key in now:
                    self._peak[key] = max(self._peak.get(key, 0.0), now[key])

    def step(self, label: str):
        timeline = self

        class _Step:
            def __enter__(self):
                timeline._observe()
                with timeline._lock:
                    timeline._peak = dict(status_gb())
                self.start = status_gb()
                return self

            def __exit__(self, *exc):
                timeline._observe()
                end = status_gb()
                with timeline._lock:
                    peak = dict(timeline._peak)
                timeline.steps.append({"step": label, "start": self.start, "peak": peak, "end": end})
        return _Step()

    def close(self) -> list[dict]:
        self._stop.set()
        self._thread.join()
        return self.steps


def print_timeline(mode: str, steps: list[dict]) -> None:
    print(f"\n{mode}: resident memory per step, GB (anon = private allocations, file = mapped "
          f"checkpoint pages; peak sampled every 10 ms; hwm = the process's high-water mark after the step)")
    print(f"  {'step':18s} {'start':>6s} {'peak':>6s} {'anon':>6s} {'file':>6s} {'end':>6s} "
          f"{'anon':>6s} {'file':>6s} {'hwm':>6s}")
    for s in steps:
        start, peak, end = s["start"], s["peak"], s["end"]
        print(f"  {s['step']:18s} {start.get('rss', 0):6.2f} {peak.get('rss', 0):6.2f} {peak.get('anon', 0):6.2f} "
              f"{peak.get('file', 0):6.2f} {end.get('rss', 0):6.2f} {end.get('anon', 0):6.2f} "
              f"{end.get('file', 0):6.2f} {end.get('hwm', 0):6.2f}")


def child(args) -> int:
    """One mode, every task, once: seconds per task, peak memory, outputs saved for comparison."""
    from engine.model_cache import ModelCache
    from engine.paths import asset

    paths = {t: Path(p) for t, p in json.loads(args.paths).items()}
    timeline = MemoryTimeline()
    x = torch.load(args.input)
    flip = json.loads(asset("keypoints308.json").read_text())["flip_indices"]
    cache = ModelCache(paths, device="cpu", dtype=args.child, batch_size=1)
    times = {}
    for task in paths:
        t0 = time.perf_counter()
        with timeline.step(f"load {task}"):
            runner = cache.get(task)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        with timeline.step(f"forward {task}"):
            out = runner.pose_flip_test(x, flip) if task == "pose" else runner(x)
        times[task] = {"load": load, "forward": time.perf_counter() - t0}
        if args.save:   # written and let go at once, as predict decodes and lets go of them
            torch.save(out, f"{args.save}.{task}")
        del out
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": args.child, "times": times, "peak_gb": peak_kb / 2**20,
                      "threads": torch.get_num_threads(), "runtime": cache.described,
                      "timeline": timeline.close()}))
    return 0


def predict_photo(folder: Path) -> Path:
    """The bundled sample photo (576 x 768) scaled to 768 x 1024: a person at the models' input size."""
    import numpy as np
    from PIL import Image

    from engine.paths import asset

    photo = folder / "person.png"
    Image.fromarray(np.asarray(Image.open(asset("sample", "image.png")).convert("RGB").resize((768, 1024),
                                                                                            Image.BICUBIC))).save(photo)
    return photo


def run_predict(mode: str, ckpt_dir: Path, size: str, tasks, photo: Path, out: Path) -> dict:
    """`sapiens-engine predict` itself on one photo (seg, the pose crop, the dense map-back, the
    bundle writer: everything a user's run does), its resident memory sampled from outside every
    20 ms and labelled with the progress lines it prints; peak = the process's ru_maxrss."""
    cmd = [sys.executable, "-m", "engine", "predict", str(photo), "--out", str(out), "--tasks", ",".join(tasks),
           "--size", size, "--checkpoints", str(ckpt_dir)] + ([] if mode == "auto" else ["--dtype", mode])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[tuple[float, dict]] = []

    def sample() -> None:
        while proc.poll() is None:
            now = status_gb(proc.pid)
            if now:
                samples.append((time.perf_counter() - t0, now))
            time.sleep(0.02)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = [(time.perf_counter() - t0, line.rstrip()) for line in proc.stdout]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"predict ({mode}) failed:\n" + "\n".join(l for _, l in lines[-30:]))
    steps, start = [], 0.0
    for at, line in lines:   # the peak between one predict progress line and the next
        if not line.strip().startswith("predict"):
            continue
        inside = [s for t, s in samples if start <= t <= at]
        if inside and "%" in line:
            top = max(inside, key=lambda s: s.get("rss", 0))
            steps.append({"until": line.split("%", 1)[1].strip(), "peak": top})
        start = at
    return {"mode": mode, "peak_gb": usage.ru_maxrss / 2**20, "wall_s": time.perf_counter() - t0, "steps": steps}


def print_predict(result: dict) -> None:
    print(f"\npredict ({result['mode']}): peak {result['peak_gb']:.2f} GB (ru_maxrss), wall {result['wall_s']:.0f} s; "
          f"resident memory (GB) at its peak before each progress line, sampled every 20 ms:")
    print(f"  {'rss':>6s} {'anon':>6s} {'file':>6s}  until")
    for step in result["steps"]:
        peak = step["peak"]
        print(f"  {peak.get('rss', 0):6.2f} {peak.get('anon', 0):6.2f} {peak.get('file', 0):6.2f}  {step['until']}")


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
    p.add_argument("--modes", default="fp32,bf16,int8",
                   help="fp32 first: the others are compared with it (without fp32: no ratios)")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--ckpt-dir", type=Path, default=None, help="keep the random checkpoints here (reused)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--timeline", action="store_true",
                   help="print each child's resident memory per load and forward step")
    p.add_argument("--predict", action="store_true",
                   help="instead: `sapiens-engine predict` on one 768 x 1024 photo per mode (auto = the default), "
                        "its peak memory and a timeline by progress line")
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
    if args.predict:
        return predict_main(args, tasks, modes)
    if "fp32" in modes and modes[0] != "fp32":
        raise SystemExit("--modes must start with fp32 (the reference-equivalent path), or leave it out "
                         "(seconds and memory only, no ratios or agreement)")
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
                if args.timeline:
                    print_timeline(mode, result["timeline"])
        report = summarize(runs, modes, tasks, loads)
        report["agreement"] = {}
        compared = modes[1:] if modes[0] == "fp32" else []
        reference = {t: torch.load(tmp / f"out_fp32.pt.{t}") for t in tasks} if compared else None
        for mode in compared:
            outs = {t: torch.load(tmp / f"out_{mode}.pt.{t}") for t in tasks}
            report["agreement"][mode] = {t: compare(t, outs[t], reference[t], INPUT_HW) for t in tasks}
        print_agreement(report["agreement"])
    report.update(size=args.size, tasks=tasks, modes=modes, reps=args.reps, cpu=features)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def predict_main(args, tasks, modes) -> int:
    """--predict: the real job, one photo, per mode; checkpoints as for the model runs."""
    print(f"sapiens2_{args.size}, `sapiens-engine predict` on one 768 x 1024 photo, tasks {', '.join(tasks)}, "
          f"modes {', '.join(modes)}, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        tmp = Path(tmp)
        ckpt_dir = args.ckpt_dir or tmp / "ckpt"
        make_checkpoints(ckpt_dir, args.size, tasks)
        photo = predict_photo(tmp)
        results = []
        for rep in range(args.reps):
            for mode in modes:
                results.append(run_predict(mode, ckpt_dir, args.size, tasks, photo, tmp / f"out_{mode}_{rep}"))
                print_predict(results[-1])
                print(f"  load (1 min) {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def cpu_features_line(f: dict) -> str:
    return (f"torch capability {f['capability']}, bf16 dot products {'yes' if f['bf16_dot'] else 'no'}, "
            f"int8 dot products {'yes' if f['int8_dot'] else 'no'}, AMX {'yes' if f['amx'] else 'no'}, "
            f"{f['physical_cores']} physical core(s)")


def summarize(runs, modes, tasks, loads) -> dict:
    print(f"\nthreads {runs[modes[0]][0]['threads']}; load average (1 min) from {loads[0][0]:.1f} to "
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
            ratios = [secs(r) / secs(f) for r, f in zip(runs[mode], runs["fp32"])] if "fp32" in runs else []
            ratio = statistics.median(ratios) if ratios else None
            per_task[task] = {"seconds": seconds, "median_ratio": ratio}
            shown = f"{ratio:11.3f}" if ratio is not None else f"{'-':>11s}"
            print(f"{mode:6s} {task:9s} {statistics.median(seconds):10.1f} {shown}")
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
