"""Foundation figures: model forward time and peak memory, checkpoint load time.

    .venv/bin/python bench/bench_models.py [--repeats 3] [--threads N]

Each case runs in its own subprocess so its peak resident memory (ru_maxrss) is its own.
Cases: sapiens2_0.1b backbone at 1024 x 768 (fp32, CPU, batch 1); the tiny parity models
(pose and pointmap, 256 x 192, batch 2) when ../shared/reference is present; loading a generated
0.1b checkpoint with memory mapping (time to a usable model, and to first forward).
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


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    """Resident memory now (mapped checkpoint pages count only once they are touched)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _time_forward(model, x, repeats: int) -> list[float]:
    import torch

    times = []
    with torch.inference_mode():
        model(x)  # warm-up (allocator, kernels)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return times


def case_forward_0p1b(repeats: int) -> dict:
    import torch

    from engine.models.sapiens2 import build_model
    from engine.models.testing import randomize_

    model = randomize_(build_model("sapiens2_0.1b", None))
    x = torch.randn(1, 3, 1024, 768)
    times = _time_forward(model, x, repeats)
    return {"case": "sapiens2_0.1b backbone forward, 1x3x1024x768 fp32",
            "seconds_min": min(times), "seconds_median": sorted(times)[len(times) // 2],
            "peak_rss_mb": _peak_rss_mb()}


def case_forward_tiny(repeats: int, task: str) -> dict:
    import torch
    from safetensors.torch import load_file

    import engine

    parity = REPO.parent / "shared" / "reference" / "parity" / "tiny_1k"
    if not parity.exists():
        return {"case": f"tiny parity {task}", "skipped": f"{parity} missing"}
    model = engine.load_model(parity / f"{task}.safetensors")
    x = load_file(parity / "io.safetensors")["input"]
    times = _time_forward(model, x, repeats)
    return {"case": f"tiny parity {task} forward, 2x3x256x192 fp32",
            "seconds_min": min(times), "seconds_median": sorted(times)[len(times) // 2],
            "peak_rss_mb": _peak_rss_mb()}


def case_load_0p1b(path: str) -> dict:
    import torch

    import engine

    rss_before = _current_rss_mb()
    t0 = time.perf_counter()
    model = engine.load_model(path)
    t_load = time.perf_counter() - t0
    rss_added_by_load = _current_rss_mb() - rss_before
    with torch.inference_mode():
        t1 = time.perf_counter()
        model(torch.zeros(1, 3, 1024, 768))
        t_first = time.perf_counter() - t1
    return {"case": "load generated sapiens2_0.1b pose checkpoint (safetensors, memory-mapped)",
            "file_mb": os.path.getsize(path) / 2**20, "seconds_load": t_load,
            "rss_mb_added_by_load": rss_added_by_load, "seconds_first_forward": t_first,
            "peak_rss_mb": _peak_rss_mb()}


def _run_case(args: list[str], threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, __file__, "--case", *args], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        name, *rest = args.case
        if name == "forward_0p1b":
            result = case_forward_0p1b(args.repeats)
        elif name == "forward_tiny":
            result = case_forward_tiny(args.repeats, rest[0])
        else:
            result = case_load_0p1b(rest[0])
        print(json.dumps(result))
        return

    import torch

    from engine.models.loading import save_checkpoint
    from engine.models.sapiens2 import build_model
    from engine.models.testing import randomize_

    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"threads {args.threads or torch.get_num_threads()}")
    results = [
        _run_case(["forward_0p1b"], args.threads),
        _run_case(["forward_tiny", "pose"], args.threads),
        _run_case(["forward_tiny", "pointmap"], args.threads),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sapiens2_0.1b_pose.safetensors"
        save_checkpoint(randomize_(build_model("sapiens2_0.1b", "pose")), path)
        results.append(_run_case(["load", str(path)], args.threads))
    for r in results:
        print(json.dumps(r))
    print()
    for r in results:
        figures = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in r.items() if k != "case")
        print(f"{r['case']}: {figures}")


if __name__ == "__main__":
    main()
