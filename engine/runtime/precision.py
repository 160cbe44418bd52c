"""How far a lower-precision run is from fp32, in the units users care about.

Used by the bf16 agreement test (tiny models) and bench/bench_precision.py (real-size models):
- pose: keypoint distance in model-input pixels after UDP + DARK decoding (flip test included
  when the caller averages it in), over keypoints whose fp32 score is positive;
- normal: angle in degrees between the unit normals;
- pointmap: |p - p_fp32| / |p_fp32| per pixel of the metric points (points / scale);
- seg: fraction of pixels whose argmax class agrees;
- albedo: absolute difference after the [0, 1] clamp.
- every task: the relative L2 error of the raw output tensors.
Each returns summary statistics (mean, median, p99, max) as plain floats. With random weights
the heatmaps have no clear peaks, so single keypoints can jump far (the DARK Newton step is
unbounded on flat maps); the median and the share of keypoints within 1 and 4 px say more.
"""

from __future__ import annotations

import numpy as np
import torch


def _summary(values: torch.Tensor) -> dict:
    v = values.detach().float().flatten()
    if v.numel() == 0:
        return {"mean": float("nan"), "median": float("nan"), "p99": float("nan"), "max": float("nan")}
    sample = v[torch.randperm(v.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
    return {"mean": float(v.mean()), "median": float(sample.median()),
            "p99": float(torch.quantile(sample, 0.99)), "max": float(v.max())}


def raw_relative_l2(out, out_ref) -> float:
    outs = out if isinstance(out, tuple) else (out,)
    refs = out_ref if isinstance(out_ref, tuple) else (out_ref,)
    diff = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in zip(outs, refs))
    norm = sum(float(b.float().pow(2).sum()) for b in refs)
    return (diff / max(norm, 1e-30)) ** 0.5


def keypoint_error_px(heatmaps: torch.Tensor, heatmaps_ref: torch.Tensor, input_wh: tuple[int, int]) -> dict:
    from engine.codecs.udp_heatmap import decode_heatmaps

    kp, _ = decode_heatmaps(heatmaps, input_wh)
    kp_ref, scores_ref = decode_heatmaps(heatmaps_ref, input_wh)
    valid = scores_ref > 0
    dist = torch.from_numpy(np.linalg.norm(kp - kp_ref, axis=-1)[valid])
    return {**_summary(dist), "within_1px": float((dist <= 1).float().mean()),
            "within_4px": float((dist <= 4).float().mean())}


def normal_angle_deg(normals: torch.Tensor, normals_ref: torch.Tensor) -> dict:
    """B x 3 x H x W raw normals (renormalized here, as the recipe does)."""
    a = torch.nn.functional.normalize(normals.float(), dim=1, eps=1e-8)
    b = torch.nn.functional.normalize(normals_ref.float(), dim=1, eps=1e-8)
    cos = (a * b).sum(dim=1).clamp(-1, 1)
    return _summary(torch.rad2deg(torch.acos(cos)))


def pointmap_relative_error(points, scale, points_ref, scale_ref) -> dict:
    metric = points.float() / scale.float().reshape(-1, 1, 1, 1)
    metric_ref = points_ref.float() / scale_ref.float().reshape(-1, 1, 1, 1)
    err = torch.linalg.vector_norm(metric - metric_ref, dim=1)
    norm = torch.linalg.vector_norm(metric_ref, dim=1).clamp_min(1e-6)
    return _summary(err / norm)


def seg_agreement(logits: torch.Tensor, logits_ref: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == logits_ref.argmax(dim=1)).float().mean())


def albedo_abs_error(albedo: torch.Tensor, albedo_ref: torch.Tensor) -> dict:
    return _summary((albedo.float().clamp(0, 1) - albedo_ref.float().clamp(0, 1)).abs())


def compare(task: str, out, out_ref, input_hw: tuple[int, int]) -> dict:
    """The task's agreement figures between two raw model outputs."""
    return {"raw_rel_l2": raw_relative_l2(out, out_ref), **_task_figures(task, out, out_ref, input_hw)}


def _task_figures(task: str, out, out_ref, input_hw: tuple[int, int]) -> dict:
    if task == "pose":
        return {"keypoint_px": keypoint_error_px(out, out_ref, (input_hw[1], input_hw[0]))}
    if task == "normal":
        return {"normal_angle_deg": normal_angle_deg(out, out_ref)}
    if task == "pointmap":
        return {"pointmap_rel": pointmap_relative_error(out[0], out[1], out_ref[0], out_ref[1]),
                "scale_rel": float(((out[1].float() - out_ref[1].float()).abs()
                                    / out_ref[1].float().abs().clamp_min(1e-12)).max())}
    if task == "seg":
        return {"seg_agreement": seg_agreement(out, out_ref)}
    if task == "albedo":
        return {"albedo_abs": albedo_abs_error(out, out_ref)}
    raise ValueError(f"unknown task {task!r}")
