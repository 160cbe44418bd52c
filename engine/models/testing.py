"""Tiny Sapiens2 models in the released checkpoint layout, for tests and benchmarks.

They have the real structure (prefix tokens, RoPE, grouped-query blocks, every head) at a width of
64, so the whole pipeline runs at the real 1024 x 768 input in seconds on a CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.models.loading import save_checkpoint
from engine.models.sapiens2 import (
    BackboneConfig, ModelConfig, build_model, scale_flat_features,
)

TINY_HEADS = {
    "pose": dict(out_channels=308, deconv_out_channels=[32, 32], deconv_kernel_sizes=[4, 4],
                 conv_out_channels=[16, 16], conv_kernel_sizes=[1, 1]),
    "seg": dict(num_classes=29, deconv_out_channels=[32, 16, 8, 8], deconv_kernel_sizes=[4, 4, 4, 4],
                conv_out_channels=[8], conv_kernel_sizes=[1]),
    "normal": dict(upsample_channels=[32, 16, 16, 8], conv_out_channels=[8, 8], conv_kernel_sizes=[3, 3]),
    "albedo": dict(upsample_channels=[32, 16, 16, 8], conv_out_channels=[8, 8], conv_kernel_sizes=[3, 3]),
    "pointmap": dict(upsample_channels=[32, 16, 16, 8], conv_out_channels=[8, 8], conv_kernel_sizes=[3, 3],
                     scale_conv_out_channels=[32, 16, 8], scale_conv_kernel_sizes=[1, 1, 1],
                     scale_final_layer=[0, 32, 8, 1]),
}


def tiny_config(task: str | None, img_size=(1024, 768), *, embed_dims=64, num_layers=4, num_heads=4,
                num_kv_heads=(4, 2, 2, 4), use_tokenizer=False) -> ModelConfig:
    """A 64-wide Sapiens2 with grouped-query middle blocks; any task, any input size (multiple of 16)."""
    backbone = BackboneConfig(
        embed_dims=embed_dims, num_layers=num_layers, num_heads=num_heads,
        feedforward_channels=4 * embed_dims, num_kv_heads=tuple(num_kv_heads), img_size=tuple(img_size),
        use_tokenizer=use_tokenizer, num_tokenizer_layers=1 if use_tokenizer else 0,
    )
    head = {}
    if task is not None:
        head = {k: list(v) if isinstance(v, list) else v for k, v in TINY_HEADS[task].items()}
        head["in_channels"] = embed_dims
        if task == "pointmap":
            head["scale_final_layer"][0] = scale_flat_features(head, backbone.patch_grid)
    return ModelConfig(backbone=backbone, task=task, head=head)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights with healthy activations (norm gains near 1, LayerScale well above 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name or name.endswith(("ln1.weight", "ln2.weight")):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("gamma.weight"):
                p.copy_(0.5 + 0.1 * noise)
            elif p.ndim >= 2:
                fan_in = p[0].numel() if not name.startswith("decode_head.deconv") else p.shape[0]
                p.copy_(noise / fan_in**0.5)
            else:
                p.copy_(0.02 * noise)
    return model


def make_tiny_model(task: str | None, img_size=(1024, 768), seed: int = 0, **kw) -> torch.nn.Module:
    model = build_model(tiny_config(task, img_size, **kw))
    return randomize_(model, seed)


def write_tiny_checkpoint(path: str | os.PathLike, task: str | None, img_size=(1024, 768), seed: int = 0,
                          **kw) -> Path:
    """A random tiny model saved exactly as a released checkpoint would be."""
    return save_checkpoint(make_tiny_model(task, img_size, seed, **kw), path)
