"""One 0.4b backbone block on the CPU: attention and the whole block, fp32 against the bf16 mode's pieces.

    .venv/bin/python bench/bench_cpu_block.py [--tokens 3081] [--batch 1] [--kv-heads 16] [--reps 5]
        [--rows 256,512] [--threads N]

At the 0.4b shape (1024 dims, 16 heads of 64, 4096-wide SwiGLU; 3081 tokens = one 1024 x 768
photo's patches plus the 9 prefix tokens; --kv-heads 8 for the grouped-query middle blocks),
random weights (engine.models.testing.randomize_, seed 0), q and k bf16 numbers as after the
reference's bf16 RoPE. Timed, each rep running every variant once in turn (interleaved, so a load
change on a shared machine hits them alike):
- attention: the fused fp32 kernel (scaled_dot_product_attention, the fp32 path's), the same kernel
  in bf16, and engine.runtime.cpu_attention.attention_bf16 (bf16 matrix products, fp32 softmax)
  at each --rows block height;
- the whole block: fp32 (the reference path), the bf16 mode's block before this change (bf16
  linears, fused fp32 attention) and with bf16 attention.
Printed: median ms, the median of the paired ratios to the fp32 variant, the relative L2 error of
each output against fp32 (for a block: of what it adds to its input, the residual stream), the
threads and the load average. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_cpu_linear import interleaved_times  # noqa: E402  (this script's own folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=3081)
    p.add_argument("--batch", type=int, default=1, help="2 = pose with its flip pass")
    p.add_argument("--kv-heads", type=int, default=16)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--rows", default="256,512", help="attention_bf16 block heights to time")
    p.add_argument("--threads", type=int, default=None, help="default: the physical cores")
    p.add_argument("--no-block", action="store_true", help="attention only")
    args = p.parse_args(argv)

    from engine.models.sapiens2 import RopePositionEmbedding, TransformerBlock, apply_rope
    from engine.models.testing import randomize_
    from engine.runtime import cpu_attention, cpu_modes

    torch.set_num_threads(args.threads or cpu_modes.physical_cores())
    dims, heads, head_dim, prefix = 1024, 16, 64, 9
    B, N = args.batch, args.tokens
    g = torch.Generator().manual_seed(0)
    block = randomize_(TransformerBlock(dims, heads, args.kv_heads, 4 * dims), seed=0).eval()
    # a photo-like grid for RoPE: the patch tokens of a 4:3 grid
    w = round(((N - prefix) * 3 / 4) ** 0.5)
    h = (N - prefix) // w
    N = prefix + h * w
    rope = RopePositionEmbedding(head_dim, 100.0, torch.bfloat16)(h, w)
    x = torch.randn(B, N, dims, generator=g)

    # attention inputs as the block makes them (fp32 linears, q/k norm, bf16 RoPE)
    attn = block.attn
    with torch.inference_mode():
        xn = block.ln1(x)
        q = attn.q_norm(attn.wq(xn).view(B, N, heads, head_dim).transpose(1, 2))
        k = attn.k_norm(attn.wk(xn).view(B, N, args.kv_heads, head_dim).transpose(1, 2))
        v = attn.wv(xn).view(B, N, args.kv_heads, head_dim).transpose(1, 2)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    group = heads // args.kv_heads

    def sdpa(dtype):
        def run():
            kk = k.repeat_interleave(group, dim=1) if group > 1 else k
            vv = v.repeat_interleave(group, dim=1) if group > 1 else v
            return F.scaled_dot_product_attention(q.to(dtype), kk.to(dtype), vv.to(dtype))
        return run

    variants = {"attention: fused fp32 (fp32 path)": sdpa(torch.float32),
                "attention: fused bf16": sdpa(torch.bfloat16)}
    for rows in (int(r) for r in args.rows.split(",") if r.strip()):
        variants[f"attention: bf16 products, {rows} rows"] = \
            (lambda rows=rows: cpu_attention.attention_bf16(q, k, v, block_rows=rows))
    references = {"attention": "attention: fused fp32 (fp32 path)"}
    if not args.no_block:
        old = cpu_modes.bf16_linears(copy.deepcopy(block))
        new = cpu_modes.bf16_attention(cpu_modes.bf16_linears(copy.deepcopy(block)))
        variants.update({"block: fp32 (fp32 path)": lambda: block(x, rope),
                         "block: bf16 linears, fused fp32 attention": lambda: old(x, rope),
                         "block: bf16 linears, bf16 attention": lambda: new(x, rope)})
        references["block"] = "block: fp32 (fp32 path)"

    with torch.inference_mode():
        # also the warm-up; a block's error is taken on what it adds to the residual stream
        outputs = {name: fn().float() - (x if name.startswith("block") else 0) for name, fn in variants.items()}
        times, load_before, load_after = interleaved_times(variants, args.reps)

    print(f"0.4b block shape: batch {B}, {N} tokens, {heads} heads of {head_dim}, {args.kv_heads} kv heads; "
          f"{torch.get_num_threads()} threads, torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}), {args.reps} interleaved reps, load (1 min) "
          f"{load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"{'variant':48s} {'ms':>9s} {'/ fp32':>7s} {'rel L2 vs fp32':>15s}")
    for name, ts in times.items():
        ref = references[name.split(":")[0]]
        ratio = statistics.median(a / f for a, f in zip(ts, times[ref]))
        err = float((outputs[name] - outputs[ref]).norm() / outputs[ref].norm())
        print(f"{name:48s} {statistics.median(ts) * 1e3:9.1f} {ratio:7.3f} {err:15.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
