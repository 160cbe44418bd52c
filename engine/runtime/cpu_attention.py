"""Attention on bf16 dot products for the CPU bf16 mode.

torch's fused CPU attention (scaled_dot_product_attention) runs no faster in bf16 than in fp32 on
a CPU with AVX512-BF16 but no AMX (docs/performance.md), while oneDNN's bf16 matrix products run
2-3x faster than fp32 ones. So the bf16 mode computes attention as plain matrix products, one key
head and one block of query rows at a time so the score block stays in cache:
scores = (q / sqrt(d)) k^T and out = softmax(scores) v, both products in bf16 (fp32 accumulation
inside oneDNN), the softmax computed in fp32 on the bf16 scores (torch's CPU softmax widens bf16
input and rounds its output), the query heads of a grouped-query block sharing their key head.

What rounds where: q and k are already bf16 numbers (RoPE rounds them, as the reference does), so
their products are exact; the scores, the probabilities and v are rounded to bf16, the output too.

Threads: the heads are split over one Python worker per intra-op thread, each running its
products single-threaded (torch releases the GIL inside them). Hundreds of small two-thread
products each wait for both threads at their end; on a shared, busy CPU one of them is often
descheduled, and those waits cost more than the products (measured: bench/bench_cpu_block.py).
"""

from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

# query rows per block: a block's bf16 scores (rows x tokens: 512 x 3081 = 3.2 MB at 1024 x 768,
# one block per worker) stay in the L3 cache; with two workers 512 rows ran 5-17 % faster than 256
# (bench/bench_cpu_block.py --rows 256,512, shared machine); one thread alone ran 128-512 rows
# within about 10 % of each other
BLOCK_ROWS = 512

_pools: dict[int, ThreadPoolExecutor] = {}   # by worker count
_pool_lock = threading.Lock()
# torch's intra-op thread count is process-wide: while any attention runs its workers it is 1, and
# the count from before the first of them is put back when the last one ends (a server may run two
# jobs' models at once; meanwhile their other operations run single-threaded too)
_single_users = 0
_threads_before = 1


def _workers(count: int) -> ThreadPoolExecutor:
    with _pool_lock:
        if count not in _pools:
            _pools[count] = ThreadPoolExecutor(count, thread_name_prefix="sapiens-attention")
        return _pools[count]


@contextlib.contextmanager
def _single_threaded_products():
    global _single_users, _threads_before
    with _pool_lock:
        if _single_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
        _single_users += 1
    try:
        yield
    finally:
        with _pool_lock:
            _single_users -= 1
            if _single_users == 0:
                torch.set_num_threads(_threads_before)


def _intra_op_threads() -> int:
    """torch's intra-op threads as set by the user or the runner (not our temporary 1)."""
    with _pool_lock:
        return _threads_before if _single_users else torch.get_num_threads()


def attention_bf16(q: Tensor, k: Tensor, v: Tensor, block_rows: int = BLOCK_ROWS,
                   threads: int | None = None) -> Tensor:
    """softmax(q k^T / sqrt(d)) v for q (B, H, N, D) and k, v (B, Hkv, N, D), Hkv dividing H, in
    bf16 matrix products; returned in q's dtype, shape (B, H, N, D). `threads`: workers (default
    torch's intra-op thread count)."""
    B, H, N, D = q.shape
    kv_heads = k.shape[1]
    rows = (H // kv_heads) * N
    bf16 = torch.bfloat16
    # the query heads that share a key head, stacked as one tall matrix per (batch, key head)
    queries = (q * (1.0 / math.sqrt(D))).to(bf16).contiguous().view(B * kv_heads, rows, D)
    keys_t = k.to(bf16).reshape(B * kv_heads, N, D).transpose(1, 2).contiguous()   # (BHkv, D, N)
    values = v.to(bf16).reshape(B * kv_heads, N, D)
    out = torch.empty(B * kv_heads, rows, D, dtype=bf16)

    inference = torch.is_inference_mode_enabled()   # thread-local: the workers take the caller's

    def heads(selected) -> None:
        with torch.inference_mode(inference):
            _heads(selected)

    def _heads(selected) -> None:
        for h in selected:
            q_h, k_h, v_h, out_h = queries[h], keys_t[h], values[h], out[h]
            for start in range(0, rows, block_rows):
                scores = torch.mm(q_h[start:start + block_rows], k_h)
                torch.mm(torch.softmax(scores, dim=-1), v_h, out=out_h[start:start + block_rows])

    threads = min(threads or _intra_op_threads(), B * kv_heads)
    if threads <= 1:
        heads(range(B * kv_heads))
    else:
        pool = _workers(threads)
        with _single_threaded_products():
            list(pool.map(heads, [range(i, B * kv_heads, threads) for i in range(threads)]))
    return out.view(B, H, N, D).to(q.dtype)
