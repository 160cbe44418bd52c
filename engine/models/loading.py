"""Load any checkpoint in the released Sapiens2 format, inferring the architecture from its keys.

No config file is needed: the embedding width comes from the patch embedding, the depth from the
block indices, the head count from the q/k-norm width (= head dim), the key-value heads of each
block from its wk rows, the feed-forward width from w3, the 4K tokenizer and its window from the
tokenizer's local position embedding, and every head's channels and kernel sizes from its conv
weights. So fine-tunes and tiny test models load exactly like the released files.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from engine.errors import CheckpointError
from engine.models.safetensors_mmap import load_mmap
from engine.models.sapiens2 import TASKS, BackboneConfig, ModelConfig, build_model

# the 1x1 output conv that names each head
HEAD_OUTPUT = {"pose": "conv_pose", "seg": "conv_seg", "normal": "conv_normal",
               "albedo": "conv_albedo", "pointmap": "conv_pointmap"}
PICKLE_SUFFIXES = {".pth", ".pt", ".bin", ".ckpt"}
# torch warns on every pickle protocol above 2 it meets; the engine refuses such files in words below
warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: safetensors memory-mapped; .pth/.bin via weights_only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix in PICKLE_SUFFIXES:
        return _read_torch_file(path)
    return load_mmap(path)


def _read_torch_file(path: Path) -> dict[str, torch.Tensor]:
    # torch maps only its zip format into memory; the legacy format (torch.save with
    # _use_new_zipfile_serialization=False) is read whole, through the same weights-only unpickler
    try:
        mmap = zipfile.is_zipfile(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(_refusal(path, str(exc))) from None
    except EOFError:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (empty or cut short)") from None
    except (RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
    # training checkpoints wrap the weights
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return obj


def _refusal(path: Path, message: str) -> str:
    """Why the weights-only unpickler stopped, in the engine's words: torch's own message goes on to
    suggest weights_only=False, which would run whatever the file holds."""
    called = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", message)
    if called:
        return (f"{path}: refused: loading it would run code stored in the file (it calls {called.group(1)}), "
                "which is unsafe. Use the released .safetensors checkpoint instead.")
    operand = re.search(r"Unsupported operand \d+", message)
    why = f" ({operand.group(0).lower()})" if operand else ""
    return (f"{path}: not a PyTorch checkpoint of plain tensors: the safe reader cannot follow its pickle{why}. "
            "Use the released .safetensors checkpoint instead.")


# ----------------------------------------------------------------------------------------------
# Architecture inference


def _indices(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _detect_task(sd: dict, path) -> str | None:
    tasks = [t for t, name in HEAD_OUTPUT.items() if f"decode_head.{name}.weight" in sd]
    if len(tasks) > 1:
        raise CheckpointError(f"{path}: has several task heads ({', '.join(tasks)})")
    if tasks:
        return tasks[0]
    if any(k.startswith("decode_head.") for k in sd):
        sample = sorted(k for k in sd if k.startswith("decode_head."))[:3]
        raise CheckpointError(f"{path}: unknown head layout (keys such as {', '.join(sample)})")
    return None


def infer_backbone(sd: dict[str, torch.Tensor], path="checkpoint") -> BackboneConfig:
    """Backbone settings from unprefixed backbone keys."""
    try:
        embed = sd["patch_embed.projection.weight"]
        dims, in_ch, patch = embed.shape[0], embed.shape[1], embed.shape[2]
        layers = _indices(sd, r"blocks\.(\d+)\.")
        if not layers or layers != list(range(len(layers))):
            raise CheckpointError(f"{path}: transformer blocks missing or not numbered 0..N-1")
        head_dim = sd["blocks.0.attn.q_norm.weight"].shape[0] if "blocks.0.attn.q_norm.weight" in sd \
            else None
        if head_dim is None:
            raise CheckpointError(f"{path}: no q/k norm in block 0, so the head count cannot be read")
        num_heads = dims // head_dim
        kv_heads = tuple(sd[f"blocks.{i}.attn.wk.weight"].shape[0] // head_dim for i in layers)
        hidden = sd["blocks.0.ffn.w3.weight"].shape[1]
        storage = sd["storage_tokens"].shape[1] if "storage_tokens" in sd else 0
        tokenizer_layers = _indices(sd, r"tokenizer\.blocks\.(\d+)\.")
        window = 4
        if tokenizer_layers:
            window = math.isqrt(sd["tokenizer.local_pos_embed"].shape[1] - 1)
        periods = sd.get("rope_embed.periods")
    except KeyError as exc:
        raise CheckpointError(f"{path}: unknown layout: expected key {exc.args[0]!r} is missing") from None
    grid = (64, 48)  # released models are trained at 1024 x 768 input (the patch grid the
    # pointmap scale branch is sized for); the 4K tokenizer pools 4x4 windows of a 4x grid.
    scale = window if tokenizer_layers else 1
    return BackboneConfig(
        embed_dims=dims,
        num_layers=len(layers),
        num_heads=num_heads,
        feedforward_channels=hidden,
        num_kv_heads=kv_heads,
        patch_size=patch,
        in_channels=in_ch,
        img_size=(grid[0] * patch * scale, grid[1] * patch * scale),
        n_storage_tokens=storage,
        with_cls_token="cls_token" in sd,
        qkv_bias="blocks.0.attn.wq.bias" in sd,
        qk_norm=True,
        layer_scale="blocks.0.attn.gamma.weight" in sd,
        final_norm="ln1.weight" in sd,
        rope_dtype=str(periods.dtype).replace("torch.", "") if periods is not None else "bfloat16",
        use_tokenizer=bool(tokenizer_layers),
        window_size=window,
        num_tokenizer_layers=len(tokenizer_layers),
        tokenizer_feedforward_channels=(
            sd["tokenizer.blocks.0.ffn.w3.weight"].shape[1] if tokenizer_layers else 0
        ),
    )


def _conv_stack_config(sd: dict, prefix: str) -> tuple[list[int], list[int]]:
    """(out channels, kernel sizes) of a conv -> norm -> act Sequential, from its conv weights."""
    idx = _indices(sd, re.escape(prefix) + r"\.(\d+)\.weight$")
    convs = [sd[f"{prefix}.{i}.weight"] for i in idx if sd[f"{prefix}.{i}.weight"].ndim == 4]
    return [w.shape[0] for w in convs], [w.shape[2] for w in convs]


def infer_head(sd: dict[str, torch.Tensor], task: str, backbone: BackboneConfig) -> dict:
    """Head settings from unprefixed decode_head keys."""
    out = sd[f"{HEAD_OUTPUT[task]}.weight"]
    head: dict = {"in_channels": backbone.embed_dims}
    conv_out, conv_k = _conv_stack_config(sd, "conv_layers")
    head["conv_out_channels"], head["conv_kernel_sizes"] = conv_out, conv_k
    if task in ("pose", "seg"):
        deconvs = [sd[f"deconv_layers.{i}.weight"] for i in _indices(sd, r"deconv_layers\.(\d+)\.weight$")]
        head["deconv_out_channels"] = [w.shape[1] for w in deconvs]
        head["deconv_kernel_sizes"] = [w.shape[2] for w in deconvs]
        head["out_channels" if task == "pose" else "num_classes"] = out.shape[0]
    else:
        ups = _indices(sd, r"upsample_blocks\.(\d+)\.0\.weight$")
        head["upsample_channels"] = [sd[f"upsample_blocks.{i}.0.weight"].shape[0] // 4 for i in ups]
    if task == "pointmap":
        scale_out, scale_k = _conv_stack_config(sd, "scale_conv_layers")
        linear = [sd[f"scale_final_layer.{i}.weight"] for i in _indices(sd, r"scale_final_layer\.(\d+)\.weight$")]
        head["scale_conv_out_channels"], head["scale_conv_kernel_sizes"] = scale_out, scale_k
        head["scale_final_layer"] = [linear[0].shape[1]] + [w.shape[0] for w in linear] if linear else []
    return head


def _split(sd: dict, prefix: str) -> dict:
    n = len(prefix)
    return {k[n:]: v for k, v in sd.items() if k.startswith(prefix)}


def inspect_state_dict(sd: dict[str, torch.Tensor], path="checkpoint") -> ModelConfig:
    """The ModelConfig a state dict was saved from (task files: backbone./decode_head. keys)."""
    if not sd:
        raise CheckpointError(f"{path}: holds no tensors")
    prefixed = any(k.startswith("backbone.") for k in sd)
    if prefixed:
        task = _detect_task(sd, path)
        backbone_sd = _split(sd, "backbone.")
    else:
        task, backbone_sd = None, sd
    if "patch_embed.projection.weight" not in backbone_sd:
        sample = ", ".join(sorted(sd)[:3])
        raise CheckpointError(
            f"{path}: unknown layout: not a Sapiens2 checkpoint (no patch embedding; keys such as {sample})"
        )
    backbone = infer_backbone(backbone_sd, path)
    head = {}
    if task is not None:
        head_sd = _split(sd, "decode_head.")
        try:
            head = infer_head(head_sd, task, backbone)
        except (KeyError, IndexError) as exc:
            raise CheckpointError(f"{path}: unknown {task} head layout ({exc})") from None
        if task == "pointmap" and head["scale_final_layer"]:
            # the scale MLP's input width fixes the token grid, hence the training input size
            backbone = _with_grid_from_scale(backbone, head)
    return ModelConfig(backbone=backbone, task=task, head=head)


def _with_grid_from_scale(backbone: BackboneConfig, head: dict) -> BackboneConfig:
    from dataclasses import replace

    from engine.models.sapiens2 import scale_flat_features

    wanted = head["scale_final_layer"][0]
    p = backbone.patch_size * (backbone.window_size if backbone.use_tokenizer else 1)
    # 4:3 grids from the released 64 x 48 down, then any grid up to that size
    candidates = [(4 * k, 3 * k) for k in range(16, 0, -1)]
    candidates += [(h, w) for h in range(64, 0, -1) for w in range(64, 0, -1)]
    for h, w in candidates:
        if scale_flat_features(head, (h, w)) == wanted:
            return replace(backbone, img_size=(h * p, w * p))
    raise CheckpointError(f"pointmap scale layer width {wanted} matches no input size")


def inspect_checkpoint(path: str | os.PathLike) -> ModelConfig:
    """Read only what is needed to tell a checkpoint's architecture and task."""
    return inspect_state_dict(read_state_dict(path), path)


# ----------------------------------------------------------------------------------------------
# Loading and saving


def _check_keys(model: nn.Module, sd: dict[str, torch.Tensor], path) -> None:
    expected = {k: v for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:4])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:4])})")
    for k in sorted(set(expected) & set(sd)):
        if tuple(expected[k].shape) != tuple(sd[k].shape):
            problems.append(
                f"shape mismatch for {k}: checkpoint has {tuple(sd[k].shape)}, "
                f"the architecture needs {tuple(expected[k].shape)}"
            )
            break
    if problems:
        raise CheckpointError(f"{path}: does not match the Sapiens2 layout: " + "; ".join(problems))


def load_model(path: str | os.PathLike, device="cpu", dtype: torch.dtype | None = torch.float32,
               task: str | None = "any") -> nn.Module:
    """Load a released-format checkpoint into an eval-mode model; the architecture comes from the file.

    task: "any" accepts whatever the file holds; a task name (or None for a bare backbone) makes a
    file for another task an error.
    """
    if task != "any" and task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    sd = read_state_dict(path)
    config = inspect_state_dict(sd, path)
    if task != "any" and config.task != task:
        have = f"a {config.task} checkpoint" if config.task else "a pretrain backbone checkpoint"
        want = f"a {task} model" if task else "a bare backbone"
        raise CheckpointError(f"{path}: is {have}, but {want} was asked for")
    model = build_model(config, device="meta")
    _check_keys(model, sd, path)
    periods_key = "backbone.rope_embed.periods" if config.task else "rope_embed.periods"
    tensors = {}
    for k, v in sd.items():
        if dtype is not None and v.is_floating_point() and k != periods_key:
            v = v.to(dtype)
        tensors[k] = v.to(device)
    model.load_state_dict(tensors, strict=True, assign=True)
    # non-persistent state (none today) would still be on meta: materialise defensively
    for name, buf in model.named_buffers():
        if buf.is_meta:
            raise CheckpointError(f"{path}: buffer {name} was not in the checkpoint")
    model.config, model.task, model.source = config, config.task, str(path)
    return model.eval().requires_grad_(False)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write a model in the released layout (safetensors, fp32 weights, bf16 RoPE periods), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    rope_dtype = getattr(torch, model.config.backbone.rope_dtype)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if k.endswith("rope_embed.periods"):
            v = v.to(rope_dtype)
        elif v.is_floating_point():
            v = v.to(torch.float32)
        state[k] = v.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "pt", **(metadata or {})})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
