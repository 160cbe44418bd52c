"""Inference speed: the reference recipe against our runners, same weights, same images, one run.

    .venv/bin/python bench/bench_inference.py [--size tiny|0.1b|0.4b|...] [--tasks pose,seg,normal,pointmap]
        [--batches 1,8] [--images 8] [--device auto] [--dtype auto] [--backend torch|onnxruntime]
        [--compile max-autotune-no-cudagraphs|reduce-overhead] [--json out.json]

Reference: what the published scripts do: load_model in fp32, eager, one image per forward pass,
pose with the flip test as a second pass. Ours: engine.runtime.get_runner (auto: bf16 + fused
attention on a CUDA GPU, fp32 on the CPU) at each batch size, the pose flip pass in the same
batch. Weights are random (a checkpoint written in the released layout per task) so no download
is needed; speed does not depend on the weights' values.

Printed per task and for the whole photo (pose with flip + the other tasks): latency per image
at batch 1, images per second at each batch size, peak memory (GPU allocator peak on CUDA, else
the process's resident set sampled every 5 ms), and achieved TFLOP/s: FLOPs counted with
torch.utils.flop_counter on the meta device, over the time, against the matrix-multiply rate
measured on this device at the benchmark's dtype (bf16 on a GPU). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from engine.models.loading import load_model, save_checkpoint  # noqa: E402
from engine.models.sapiens2 import arch_config, build_model  # noqa: E402
from engine.models.testing import randomize_, tiny_config  # noqa: E402
from engine.runtime import get_runner  # noqa: E402
from engine.runtime.device import DTYPE_NAMES, device_name, resolve_device, resolve_dtype  # noqa: E402

INPUT_HW = (1024, 768)


# --------------------------------------------------------------------------- measuring


class PeakMemory:
    """Peak GPU allocation on CUDA; peak resident set (sampled) on the CPU. Bytes."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int = 1) -> float:
    """Best of `repeats` wall times of fn() (after `warmup` untimed calls), seconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matrix-multiply rate on this device and dtype, FLOP/s."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 20 if device.type == "cuda" else 3
    seconds = timed(lambda: [a @ b for _ in range(reps)], device, 3)
    return 2 * n**3 * reps / seconds


def forward_flops(config) -> int:
    """FLOPs of one forward pass at batch 1, counted on the meta device (no memory, no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(config, device="meta")
    x = torch.empty(1, 3, *INPUT_HW, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


# --------------------------------------------------------------------------- the two recipes


def reference_pass(model, images: torch.Tensor, task: str, device: torch.device, flip_indices):
    """The published scripts: fp32, eager, one image per forward, the pose flip as a second pass."""
    from engine.recipe import flip_test_average

    outs = []
    with torch.no_grad():
        for i in range(images.shape[0]):
            x = images[i:i + 1].to(device)
            out = model(x)
            if task == "pose":
                out = flip_test_average(out, model(x.flip(-1)), flip_indices)
            outs.append(out[0].cpu() if isinstance(out, tuple) else out.cpu())
    return outs


def our_pass(runner, images: torch.Tensor, task: str, flip_indices, keep_on_device: bool = False):
    if task == "pose":
        return runner.pose_flip_test(images, flip_indices, in_one_batch=True, keep_on_device=keep_on_device)
    return runner(images, keep_on_device=keep_on_device)


# --------------------------------------------------------------------------- main


def model_config(size: str, task: str):
    if size == "tiny":
        return tiny_config(task, INPUT_HW)
    return arch_config(f"sapiens2_{size}", task)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default=None, help="tiny, 0.1b, 0.4b, 0.8b, 1b, 5b (default: 0.4b on a GPU, tiny on a CPU)")
    p.add_argument("--tasks", default="pose,seg,normal,pointmap")
    p.add_argument("--batches", default=None, help="batch sizes for ours (default 1,8)")
    p.add_argument("--images", type=int, default=None, help="images per measurement (default: the largest batch)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats, best kept (default 5 on GPU, 2 on CPU)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing (default 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    p.add_argument("--compile", default=None, help="torch.compile mode for ours (torch backend)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--keep-on-device", action="store_true",
                   help="ours takes its inputs on the device and leaves its outputs there, as predict's GPU path does "
                        "(gpu_ops prepares the inputs there and decodes and maps back there); default: CPU tensors "
                        "in and out, as a library caller gets them")
    p.add_argument("--profile", action="store_true",
                   help="after timing, one call of ours at the largest batch under torch.profiler: the kernels by device time")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    size = args.size or ("0.4b" if device.type == "cuda" else "tiny")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    batches = [int(b) for b in (args.batches or "1,8").split(",")]
    n_images = args.images or max(batches)
    repeats = args.repeats or (5 if device.type == "cuda" else 2)
    flip = json.loads((REPO_ROOT / "assets" / "keypoints308.json").read_text())["flip_indices"]
    images = torch.randn(n_images, 3, *INPUT_HW, generator=torch.Generator().manual_seed(0))
    ours_in = images.to(device) if args.keep_on_device else images

    print(f"device: {device_name(device)} ({device}); torch {torch.__version__}; python {platform.python_version()}; "
          f"{os.cpu_count()} cores visible")
    print(f"model size {size}, tasks {','.join(tasks)}, {n_images} images of {INPUT_HW[0]}x{INPUT_HW[1]}, "
          f"ours: {args.backend} {str(dtype).replace('torch.', '')}"
          f"{' compile=' + args.compile if args.compile else ''}, batches {batches}"
          f"{', inputs and outputs on the device' if args.keep_on_device else ''}")
    peak_rate = matmul_rate(device, dtype)
    print(f"measured matrix-multiply rate ({str(dtype).replace('torch.', '')}): {peak_rate / 1e12:.2f} TFLOP/s")

    figures = {"device": device_name(device), "size": size, "dtype": str(dtype), "backend": args.backend,
               "keep_on_device": args.keep_on_device,
               "matmul_tflops": peak_rate / 1e12, "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="bench_inference.") as tmp:
        for task in tasks:
            config = model_config(size, task)
            checkpoint = save_checkpoint(randomize_(build_model(config), seed=0), Path(tmp) / f"{task}.safetensors")
            passes = 2 if task == "pose" else 1
            flops = forward_flops(config) * passes
            row = {"flops_per_image": flops}
            if not args.skip_reference:
                model = load_model(checkpoint, device=device, dtype=torch.float32)
                with PeakMemory(device) as mem:
                    seconds = timed(lambda: reference_pass(model, images, task, device, flip), device, repeats,
                                    args.warmup)
                row["reference"] = {"s_per_image": seconds / n_images, "images_per_s": n_images / seconds,
                                    "peak_bytes": mem.peak, "tflops": flops * n_images / seconds / 1e12}
                del model
            for batch in batches:
                # pose: `batch` photos are 2 x batch crops (with their mirror images) in one pass
                runner = get_runner(task, checkpoint, backend=args.backend, device=str(device),
                                    dtype=DTYPE_NAMES[dtype], batch_size=batch * passes, compile=args.compile,
                                    onnx_dir=Path(tmp) / "onnx")
                with PeakMemory(device) as mem:
                    seconds = timed(lambda: our_pass(runner, ours_in, task, flip, args.keep_on_device), device, repeats,
                                    args.warmup)
                row[f"ours_b{batch}"] = {"s_per_image": seconds / n_images, "images_per_s": n_images / seconds,
                                         "peak_bytes": mem.peak, "tflops": flops * n_images / seconds / 1e12,
                                         "oom_fallbacks": runner.oom_fallbacks}
                if args.profile and batch == max(batches):
                    _profile(lambda: our_pass(runner, ours_in, task, flip, args.keep_on_device), device,
                             f"{task}, batch {batch}")
                runner.release()
                del runner
            figures["tasks"][task] = row
            _print_task(task, row, peak_rate)
    _print_photo(figures, batches, peak_rate, not args.skip_reference)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


def _profile(fn, device: torch.device, what: str) -> None:
    """The kernels of one call by their own device time (CPU time where there is no GPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        _sync(device)
    table = prof.key_averages()
    for key in (("self_device_time_total", "self_cuda_time_total") if device.type == "cuda" else ("self_cpu_time_total",)):
        try:
            print(f"\nprofile of {what}:\n" + table.table(sort_by=key, row_limit=14, max_name_column_width=60))
            return
        except (AttributeError, KeyError, ValueError):
            continue


def _fmt(m: dict, peak_rate: float) -> str:
    return (f"{m['s_per_image'] * 1e3:9.1f} ms/img {m['images_per_s']:8.2f} img/s "
            f"{m['peak_bytes'] / 2**20:8.0f} MiB {m['tflops']:7.3f} TFLOP/s "
            f"({100 * m['tflops'] * 1e12 / peak_rate:4.1f}% of matmul rate)")


def _print_task(task: str, row: dict, peak_rate: float) -> None:
    print(f"\n{task}: {row['flops_per_image'] / 1e12:.3f} TFLOP per image{' (with flip)' if task == 'pose' else ''}")
    for key, m in row.items():
        if isinstance(m, dict):
            print(f"  {key:10s} {_fmt(m, peak_rate)}")


def _print_photo(figures: dict, batches, peak_rate: float, with_reference: bool) -> None:
    rows = figures["tasks"].values()
    flops = sum(r["flops_per_image"] for r in rows)
    print(f"\nwhole photo ({', '.join(figures['tasks'])}; {flops / 1e12:.3f} TFLOP):")
    keys = (["reference"] if with_reference else []) + [f"ours_b{b}" for b in batches]
    base = None
    for key in keys:
        seconds = sum(r[key]["s_per_image"] for r in rows)
        peak = max(r[key]["peak_bytes"] for r in rows)
        base = base or seconds
        print(f"  {key:10s} {seconds * 1e3:9.1f} ms/photo {1 / seconds:8.2f} photos/s {peak / 2**20:8.0f} MiB "
              f"{flops / seconds / 1e12:7.3f} TFLOP/s ({100 * flops / seconds / peak_rate:4.1f}%)"
              f"  x{base / seconds:.2f} vs {keys[0]}")


if __name__ == "__main__":
    sys.exit(main())
