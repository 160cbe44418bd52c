"""One backbone Linear layer on the CPU in each number format: the per-layer evidence for the CPU modes.

    .venv/bin/python bench/bench_cpu_linear.py [--shape 3081,1024,4096] [--reps 5]

A 0.4b-sized Linear (3081 tokens of a 1024 x 768 photo, 1024 -> 4096, random weights, bias) run as:
fp32 (the reference path), bf16 (the bf16 mode's linears: bf16 in, bf16 weights), int8 dynamic
(torch.ao quantize_dynamic: one activation scale per tensor, fbgemm; the int8 mode), and int8 with
one activation scale per token and one weight scale per output channel through torch._int_mm,
timed whole and in its three pieces (quantize the activations, the int8 matmul, dequantize +
bias), and with --onednn the matmul alone through oneDNN's qlinear with the weight scales fused into
its output (off by default: with signed int8 activations it ran about 10x slower than fp32 here). Each rep runs every variant once in turn (interleaved, so a load change
on a shared machine hits them alike); printed: median milliseconds, the median of the paired
ratios to fp32 and to bf16, the relative L2 error of the output against fp32, the threads and the
load average. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F


def per_token_int8(x: torch.Tensor):
    """Symmetric int8 per row, and the row scales."""
    scale = torch.linalg.vector_norm(x, float("inf"), dim=-1, keepdim=True).clamp_min_(1e-12).div_(127)
    return torch.round(x / scale).to(torch.int8), scale


def interleaved_times(variants: dict, reps: int):
    """Each variant run once per rep, in turn (a load change hits them alike): the seconds per
    variant and rep, and the 1-minute load before and after."""
    times = {name: [] for name in variants}
    load_before = os.getloadavg()
    for _ in range(reps):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times, load_before, os.getloadavg()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="3081,1024,4096", help="tokens,in,out")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--onednn", action="store_true", help="also time oneDNN's qlinear (slow here)")
    args = p.parse_args(argv)
    m, k, n = (int(v) for v in args.shape.split(","))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=g)
    w = torch.randn(n, k, generator=g) / k**0.5
    b = 0.02 * torch.randn(n, generator=g)
    xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
    w_scale = torch.linalg.vector_norm(w, float("inf"), dim=1).clamp_min(1e-12) / 127
    w_int8 = torch.round(w / w_scale[:, None]).to(torch.int8)
    w_int8_t = w_int8.t().contiguous()          # K x N, as _int_mm takes it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic
        dynamic = quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(k, n)), {torch.nn.Linear}, dtype=torch.qint8)
        dynamic[0].set_weight_bias(torch.quantize_per_channel(w, w_scale.double(), torch.zeros(n, dtype=torch.long),
                                                              0, torch.qint8), b)

    q0, s0 = per_token_int8(x)
    acc0 = torch._int_mm(q0, w_int8_t)

    def dequantize(acc, s):
        out = torch.mul(acc, s)        # int32 x fp32 row scales -> fp32, one pass
        return out.mul_(w_scale).add_(b)

    def int8_token():
        q, s = per_token_int8(x)
        return dequantize(torch._int_mm(q, w_int8_t), s)

    variants = {
        "fp32": lambda: F.linear(x, w, b),
        "bf16": lambda: F.linear(xb, wb, bb),
        "int8 dynamic (per tensor)": lambda: dynamic(x),
        "int8 per token, whole": int8_token,
        "  quantize activations": lambda: per_token_int8(x),
        "  _int_mm": lambda: torch._int_mm(q0, w_int8_t),
        "  dequantize + bias": lambda: dequantize(acc0, s0),
    }
    onednn = getattr(torch.ops, "onednn", None)
    if args.onednn and onednn is not None and hasattr(onednn, "qlinear_pointwise"):
        try:
            packed = onednn.qlinear_prepack(w_int8, [m, k])
            zero = torch.zeros(n, dtype=torch.long)

            def qlinear():   # weight scales applied inside oneDNN; the row scales and bias after
                return onednn.qlinear_pointwise(q0, 1.0, 0, packed, w_scale, zero, None, 1.0, 0,
                                                torch.float32, "none", [], "")
            qlinear()
            variants["  oneDNN qlinear (w scales fused)"] = qlinear
        except Exception as exc:   # an op missing or refusing int8 here: reported, not fatal
            print(f"oneDNN qlinear not run: {exc}".splitlines()[0])

    reference = variants["fp32"]()
    errors = {"bf16": variants["bf16"](), "int8 dynamic (per tensor)": variants["int8 dynamic (per tensor)"](),
              "int8 per token, whole": int8_token()}
    for fn in variants.values():
        fn()   # warm-up: oneDNN primitive caches, page faults of the first outputs
    times, load_before, load_after = interleaved_times(variants, args.reps)

    print(f"Linear {m} x {k} -> {n}, {torch.get_num_threads()} threads, torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}), {args.reps} interleaved reps, load (1 min) "
          f"{load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"{'variant':36s} {'ms':>8s} {'/ fp32':>7s} {'/ bf16':>7s} {'rel L2 vs fp32':>15s}")
    for name, ts in times.items():
        r32 = statistics.median(a / f for a, f in zip(ts, times["fp32"]))
        r16 = statistics.median(a / f for a, f in zip(ts, times["bf16"]))
        err = ""
        if name in errors:
            err = f"{float((errors[name].float() - reference).norm() / reference.norm()):.4f}"
        print(f"{name:36s} {statistics.median(ts) * 1e3:8.1f} {r32:7.3f} {r16:7.3f} {err:>15s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
