"""Sapiens2: the backbone and its five task heads, top to bottom.

Module and parameter names match the released checkpoints' keys exactly
(`backbone.blocks.3.attn.wq.weight`, `decode_head.conv_pose.bias`, ...), so a released
`.safetensors` file loads with a plain `load_state_dict(strict=True)`.

Architecture (facts from ../shared/reference/inference_recipe.md and checkpoint_layouts.json):
  image -> 16x16 patch embedding -> [4K only: windowed "tokenizer" that pools each 4x4 window of
  patch tokens into one token] -> prepend 1 class token + 8 storage tokens -> N pre-norm blocks
  (RMSNorm -> attention with q/k RMSNorm, 2-D RoPE on patch tokens, grouped-query attention in the
  middle blocks, LayerScale -> residual; RMSNorm -> SwiGLU -> residual) -> final RMSNorm ->
  patch tokens as a B x C x h x w feature map -> task head.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TASKS = ("pose", "seg", "normal", "pointmap", "albedo")

# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class BackboneConfig:
    embed_dims: int
    num_layers: int
    num_heads: int
    feedforward_channels: int
    # key-value heads per block; a block with as many kv heads as heads is plain multi-head.
    num_kv_heads: tuple[int, ...] = ()
    patch_size: int = 16
    in_channels: int = 3
    img_size: tuple[int, int] = (1024, 768)  # H x W the model was trained at
    n_storage_tokens: int = 8
    with_cls_token: bool = True
    qkv_bias: bool = True
    qk_norm: bool = True
    layer_scale: bool = True  # LayerScale on the attention branch (the FFN branch has none)
    final_norm: bool = True
    rope_base: float = 100.0
    rope_dtype: str = "bfloat16"  # the reference computes RoPE in bf16 by default
    # 4K variant: windowed tokenizer after the patch embedding
    use_tokenizer: bool = False
    window_size: int = 4
    num_tokenizer_layers: int = 0
    tokenizer_feedforward_channels: int = 0

    def __post_init__(self):
        if self.embed_dims % self.num_heads:
            raise ValueError(f"embed_dims {self.embed_dims} is not divisible by {self.num_heads} heads")
        if not self.num_kv_heads:
            object.__setattr__(self, "num_kv_heads", default_kv_heads(self.num_layers, self.num_heads))
        if len(self.num_kv_heads) != self.num_layers:
            raise ValueError("num_kv_heads must give one entry per layer")
        if self.use_tokenizer and not self.tokenizer_feedforward_channels:
            object.__setattr__(self, "tokenizer_feedforward_channels", 4 * self.embed_dims)

    @property
    def head_dim(self) -> int:
        return self.embed_dims // self.num_heads

    @property
    def patch_grid(self) -> tuple[int, int]:
        """Token grid (h, w) the blocks see at the training input size."""
        h, w = self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size
        if self.use_tokenizer:
            h, w = h // self.window_size, w // self.window_size
        return h, w


def default_kv_heads(num_layers: int, num_heads: int) -> tuple[int, ...]:
    """Full attention in the first 8 and last 8 blocks, half the kv heads in between."""
    return tuple(
        num_heads if (i < 8 or i >= num_layers - 8) else num_heads // 2 for i in range(num_layers)
    )


@dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig
    task: str | None = None  # None: a bare pretrain backbone
    head: dict = field(default_factory=dict)  # head hyper-parameters, as in the released configs

    def to_dict(self) -> dict:
        return {"backbone": asdict(self.backbone), "task": self.task, "head": dict(self.head)}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        b = dict(d["backbone"])
        for key in ("num_kv_heads", "img_size"):
            b[key] = tuple(b[key])
        return cls(backbone=BackboneConfig(**b), task=d.get("task"), head=dict(d.get("head") or {}))


# Released sizes: dims / layers / heads; feed-forward is 4 x dims; tokenizer depth for 4K.
ARCHS = {
    "sapiens2_0.1b": dict(embed_dims=768, num_layers=12, num_heads=12, num_tokenizer_layers=2),
    "sapiens2_0.4b": dict(embed_dims=1024, num_layers=24, num_heads=16, num_tokenizer_layers=2),
    "sapiens2_0.8b": dict(embed_dims=1280, num_layers=32, num_heads=16, num_tokenizer_layers=3),
    "sapiens2_1b": dict(embed_dims=1536, num_layers=40, num_heads=24, num_tokenizer_layers=4),
    "sapiens2_5b": dict(embed_dims=2432, num_layers=56, num_heads=32, num_tokenizer_layers=6),
}
ARCH_ALIASES = {"sapiens2_1b_4k": "sapiens2_1b"}

# Released head settings (checkpoint_layouts.json). Sizes without a released head (0.1b) use the
# 0.4b settings with their own input width.
_DENSE_SMALL = dict(upsample_channels=[768, 512, 256, 128], conv_out_channels=[64, 32, 16],
                    conv_kernel_sizes=[3, 3, 3])
_DENSE_5B = dict(upsample_channels=[1536, 768, 512, 256], conv_out_channels=[128, 64, 32],
                 conv_kernel_sizes=[3, 3, 3])
_POINTMAP_SCALE = dict(scale_conv_out_channels=[1536, 512, 128], scale_conv_kernel_sizes=[1, 1, 1],
                       scale_final_layer=[6144, 512, 128, 1])
_POSE = dict(out_channels=308, deconv_out_channels=[1024, 768], deconv_kernel_sizes=[4, 4],
             conv_out_channels=[512, 512, 256], conv_kernel_sizes=[1, 1, 1])
_SEG = dict(num_classes=29, deconv_out_channels=[512, 256, 128, 64], deconv_kernel_sizes=[4, 4, 4, 4],
            conv_out_channels=[64, 64], conv_kernel_sizes=[1, 1])
HEAD_DEFAULTS = {
    "pose": _POSE,
    "seg": _SEG,
    "normal": _DENSE_SMALL,
    "albedo": _DENSE_SMALL,
    "pointmap": dict(upsample_channels=[1536, 768, 512, 256], conv_out_channels=[64, 32, 16],
                     conv_kernel_sizes=[3, 3, 3], **_POINTMAP_SCALE),
}
HEAD_OVERRIDES = {
    ("sapiens2_1b", "pose"): dict(_POSE, deconv_out_channels=[1536, 1024], conv_out_channels=[768, 512, 256]),
    ("sapiens2_5b", "normal"): _DENSE_5B,
    ("sapiens2_5b", "albedo"): dict(_DENSE_5B, conv_out_channels=[64, 32, 16]),
    ("sapiens2_5b", "pointmap"): dict(_DENSE_5B, upsample_channels=[1536, 768, 768, 768], **_POINTMAP_SCALE),
}


def arch_config(arch: str, task: str | None = None) -> ModelConfig:
    """The released configuration for `arch` ("sapiens2_0.4b", ..., "sapiens2_1b_4k") and task."""
    name = arch.lower()
    base = ARCH_ALIASES.get(name, name)
    if base not in ARCHS:
        known = ", ".join([*ARCHS, *ARCH_ALIASES])
        raise ValueError(f"unknown architecture {arch!r}; known: {known}")
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)} or None")
    a = ARCHS[base]
    is_4k = name.endswith("_4k")
    backbone = BackboneConfig(
        embed_dims=a["embed_dims"],
        num_layers=a["num_layers"],
        num_heads=a["num_heads"],
        feedforward_channels=4 * a["embed_dims"],
        img_size=(4096, 3072) if is_4k else (1024, 768),
        use_tokenizer=is_4k,
        num_tokenizer_layers=a["num_tokenizer_layers"] if is_4k else 0,
    )
    head = {}
    if task is not None:
        head = dict(HEAD_OVERRIDES.get((base, task), HEAD_DEFAULTS[task]))
        head = {k: list(v) if isinstance(v, list) else v for k, v in head.items()}
        head["in_channels"] = backbone.embed_dims
        if task == "pointmap":
            head["scale_final_layer"][0] = scale_flat_features(head, backbone.patch_grid)
    return ModelConfig(backbone=backbone, task=task, head=head)


def build_model(arch: str | ModelConfig | dict, task: str | None = None, device="cpu",
                dtype: torch.dtype | None = None) -> nn.Module:
    """Build a Sapiens2 model by released name or from a config (weights not initialised).

    With a task: a `Sapiens2` (backbone + decode_head), keys as in the released task files. Without:
    the bare `Sapiens2Backbone`, keys as in the released pretrain files. Both carry `.config`
    (ModelConfig) and `.task`. `device="meta"` builds the module tree without allocating memory,
    so a 5B model can be checked anywhere.
    """
    if isinstance(arch, str):
        config = arch_config(arch, task)
    elif isinstance(arch, dict):
        config = ModelConfig.from_dict(arch)
    else:
        config = arch
    with torch.device(device):
        model = Sapiens2(config) if config.task else Sapiens2Backbone(config.backbone)
    model.config, model.task = config, config.task
    if dtype is not None:
        model.to(dtype)
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Backbone pieces


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, embed_dims: int, patch_size: int):
        super().__init__()
        self.projection = nn.Conv2d(in_channels, embed_dims, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), hw


class RopePositionEmbedding(nn.Module):
    """2-D rotary embedding: sin/cos tables for an h x w token grid.

    Each axis' coordinates are the token centres normalised separately to [-1, 1]; each of the
    head_dim / 4 periods rotates one pair of channels per axis. The reference computes all of it in
    bfloat16 (periods stored in bf16), which changes results at the 1e-3 level, so we do the same.
    """

    def __init__(self, head_dim: int, base: float, dtype: torch.dtype):
        super().__init__()
        self.compute_dtype = dtype
        exponents = 2 * torch.arange(head_dim // 4, dtype=dtype) / (head_dim // 2)
        self.register_buffer("periods", base**exponents, persistent=True)

    def forward(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        # periods may have been cast with the module (e.g. .half()); its values are bf16-exact.
        dd = dict(device=self.periods.device, dtype=self.compute_dtype)
        periods = self.periods.to(self.compute_dtype)
        ys = torch.arange(0.5, h, **dd) / h
        xs = torch.arange(0.5, w, **dd) / w
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0  # [hw, 2] in [-1, 1]
        angles = 2 * math.pi * coords[:, :, None] / periods[None, None, :]  # [hw, 2, D/4]
        angles = angles.flatten(1, 2).tile(2)  # [hw, D]
        return torch.sin(angles), torch.cos(angles)


def apply_rope(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """Rotate the patch tokens of x (B, heads, N, D) in the tables' dtype.

    The whole of x goes to that dtype first, as in the reference: the leading prefix tokens (class
    and storage) are not rotated, but they come back rounded to bf16 like the patch tokens.
    """
    prefix = x.shape[-2] - sin.shape[-2]
    rounded = x.to(sin.dtype)
    head, patches = rounded[..., :prefix, :], rounded[..., prefix:, :]
    half1, half2 = patches.chunk(2, dim=-1)
    rotated = patches * cos + torch.cat([-half2, half1], dim=-1) * sin
    return torch.cat([head, rotated], dim=-2).to(x.dtype)


class LayerScale(nn.Module):
    def __init__(self, dims: int, init: float = 1e-4):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dims,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight


class GroupedQueryAttention(nn.Module):
    def __init__(self, dims: int, num_heads: int, num_kv_heads: int, qkv_bias: bool, qk_norm: bool,
                 layer_scale: bool):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = dims // num_heads
        self.wq = nn.Linear(dims, dims, bias=qkv_bias)
        self.wk = nn.Linear(dims, num_kv_heads * self.head_dim, bias=qkv_bias)
        self.wv = nn.Linear(dims, num_kv_heads * self.head_dim, bias=qkv_bias)
        if qk_norm:
            self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6)
            self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6)
        else:
            self.q_norm = self.k_norm = None
        self.proj = nn.Linear(dims, dims)
        self.gamma = LayerScale(dims) if layer_scale else nn.Identity()
        # Exporters swap these (engine/runtime/onnx_export.py): a RoPE that emulates bf16 in fp32
        # for runtimes without bf16 arithmetic, and explicit k/v repeats instead of SDPA's
        # grouped-query flag.
        self.rotate = apply_rope
        self.native_gqa = True
        # None: the fused SDPA below (the reference's numbers). The CPU bf16 mode sets its own
        # kernel, attend(q, k, v) -> (B, heads, N, head_dim) with k/v in their kv heads
        # (engine/runtime/cpu_attention.py).
        self.attend = None

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        B, N, C = x.shape
        q = self.wq(x).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, N, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, N, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            sin, cos = rope
            q, k = self.rotate(q, sin, cos), self.rotate(k, sin, cos)
        if self.attend is not None:
            out = self.attend(q, k, v)
            return self.gamma(self.proj(out.transpose(1, 2).reshape(B, N, C)))
        grouped = self.num_kv_heads != self.num_heads
        if grouped and (q.dtype == torch.float32 or not self.native_gqa):
            # fp32 SDPA kernels take no grouped heads; repeating k/v is faster than the fallback.
            k = k.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
            v = v.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
            grouped = False
        out = F.scaled_dot_product_attention(q, k, v, enable_gqa=grouped) if grouped else \
            F.scaled_dot_product_attention(q, k, v)
        return self.gamma(self.proj(out.transpose(1, 2).reshape(B, N, C)))


class SwiGLUFFN(nn.Module):
    def __init__(self, dims: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dims, 2 * hidden)
        self.w3 = nn.Linear(hidden, dims)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class TransformerBlock(nn.Module):
    def __init__(self, dims: int, num_heads: int, num_kv_heads: int, hidden: int, *, qkv_bias=True,
                 qk_norm=True, layer_scale=True):
        super().__init__()
        self.ln1 = nn.RMSNorm(dims, eps=1e-6)
        self.attn = GroupedQueryAttention(dims, num_heads, num_kv_heads, qkv_bias, qk_norm, layer_scale)
        self.ln2 = nn.RMSNorm(dims, eps=1e-6)
        self.ffn = SwiGLUFFN(dims, hidden)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = x + self.attn(self.ln1(x), rope)
        return x + self.ffn(self.ln2(x))


class Tokenizer(nn.Module):
    """4K variant: attention inside non-overlapping ws x ws windows of patch tokens.

    A shared learned class token is prepended to every window, a learned local position embedding
    added, and each window is replaced by its class token after the blocks: the token grid shrinks
    by ws per side, so a 4096 x 3072 image costs the main blocks what 1024 x 768 does.
    """

    WINDOWS_PER_CHUNK = 1024  # bounds activation memory at 4K

    def __init__(self, dims: int, window_size: int, num_heads: int, num_layers: int, hidden: int):
        super().__init__()
        self.window_size = window_size
        self.local_pos_embed = nn.Parameter(torch.zeros(1, 1 + window_size**2, dims))
        self.w_cls = nn.Parameter(torch.zeros(1, 1, dims))
        self.blocks = nn.ModuleList(
            TransformerBlock(dims, num_heads, num_heads, hidden, qk_norm=False, layer_scale=False)
            for _ in range(num_layers)
        )

    def forward(self, x: Tensor, hw: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
        B, _, C = x.shape
        ws = self.window_size
        h, w = hw
        if h % ws or w % ws:
            raise ValueError(f"token grid {h}x{w} is not divisible by the tokenizer window {ws}")
        gh, gw = h // ws, w // ws
        windows = x.view(B, gh, ws, gw, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)
        pooled = []
        for chunk in windows.split(self.WINDOWS_PER_CHUNK):
            t = torch.cat([self.w_cls.expand(chunk.shape[0], -1, -1), chunk], dim=1) + self.local_pos_embed
            for block in self.blocks:
                t = block(t)
            pooled.append(t[:, 0])
        return torch.cat(pooled).view(B, gh * gw, C), (gh, gw)


class Sapiens2Backbone(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        dims = cfg.embed_dims
        self.patch_embed = PatchEmbed(cfg.in_channels, dims, cfg.patch_size)
        self.rope_embed = RopePositionEmbedding(cfg.head_dim, cfg.rope_base, getattr(torch, cfg.rope_dtype))
        self.tokenizer = (
            Tokenizer(dims, cfg.window_size, cfg.num_heads, cfg.num_tokenizer_layers,
                      cfg.tokenizer_feedforward_channels)
            if cfg.use_tokenizer else None
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims)) if cfg.with_cls_token else None
        self.storage_tokens = (
            nn.Parameter(torch.zeros(1, cfg.n_storage_tokens, dims)) if cfg.n_storage_tokens else None
        )
        self.num_prefix_tokens = int(cfg.with_cls_token) + cfg.n_storage_tokens
        self.blocks = nn.ModuleList(
            TransformerBlock(dims, cfg.num_heads, kv, cfg.feedforward_channels, qkv_bias=cfg.qkv_bias,
                             qk_norm=cfg.qk_norm, layer_scale=cfg.layer_scale)
            for kv in cfg.num_kv_heads
        )
        self.ln1 = nn.RMSNorm(dims, eps=1e-6) if cfg.final_norm else None

    def forward(self, x: Tensor) -> Tensor:
        """B x 3 x H x W normalised image -> B x C x h x w feature map of the patch tokens."""
        B = x.shape[0]
        x, hw = self.patch_embed(x)
        if self.tokenizer is not None:
            x, hw = self.tokenizer(x, hw)
        prefix = [t.expand(B, -1, -1) for t in (self.cls_token, self.storage_tokens) if t is not None]
        x = torch.cat([*prefix, x], dim=1)
        rope = self.rope_embed(*hw)
        for block in self.blocks:
            x = block(x, rope)
        if self.ln1 is not None:
            x = self.ln1(x)
        patches = x[:, self.num_prefix_tokens:]
        return patches.transpose(1, 2).reshape(B, -1, *hw)


# ----------------------------------------------------------------------------------------------
# Heads. Every hidden layer is conv -> InstanceNorm (no affine) -> SiLU, so index 3*i of each
# Sequential is the i-th conv, as in the checkpoint keys.


class ChannelNorm2d(nn.Module):
    """Normalise each pixel's channel vector (B x C x H x W): the albedo head's norm layer.

    Its checkpoint keys are `<index>.norm.weight` with no bias.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = CHANNEL_NORM(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def CHANNEL_NORM(channels):
    return nn.RMSNorm(channels, eps=1e-6)


def _conv_norm_act(conv: nn.Module, channels: int, *, shuffle: bool = False,
                   norm: type[nn.Module] = nn.InstanceNorm2d) -> list[nn.Module]:
    layers = [conv]
    if shuffle:
        layers.append(nn.PixelShuffle(2))
    return layers + [norm(channels), nn.SiLU()]


def _conv_stack(in_ch: int, out_channels, kernel_sizes, stride: int = 1,
                norm: type[nn.Module] = nn.InstanceNorm2d) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for out_ch, k in zip(out_channels or [], kernel_sizes or []):
        conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=(k - 1) // 2)
        layers += _conv_norm_act(conv, out_ch, norm=norm)
        in_ch = out_ch
    return nn.Sequential(*layers), in_ch


def _deconv_padding(kernel: int) -> tuple[int, int]:
    # stride-2 transposed convs that exactly double the size
    paddings = {4: (1, 0), 3: (1, 1), 2: (0, 0)}
    if kernel not in paddings:
        raise ValueError(f"unsupported deconvolution kernel size {kernel} (4, 3 or 2)")
    return paddings[kernel]


class DeconvHead(nn.Module):
    """Pose heatmaps and segmentation logits: stride-2 transposed convs, then 1x1 convs."""

    def __init__(self, in_channels: int, out_channels: int, out_name: str, deconv_out_channels,
                 deconv_kernel_sizes, conv_out_channels=None, conv_kernel_sizes=None):
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for out_ch, k in zip(deconv_out_channels, deconv_kernel_sizes):
            pad, out_pad = _deconv_padding(k)
            deconv = nn.ConvTranspose2d(ch, out_ch, k, stride=2, padding=pad, output_padding=out_pad,
                                        bias=False)
            layers += _conv_norm_act(deconv, out_ch)
            ch = out_ch
        self.deconv_layers = nn.Sequential(*layers)
        self.conv_layers, ch = _conv_stack(ch, conv_out_channels, conv_kernel_sizes)
        self.out_name = out_name
        setattr(self, out_name, nn.Conv2d(ch, out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, self.out_name)(self.conv_layers(self.deconv_layers(x)))


class PoseHeatmapHead(DeconvHead):
    def __init__(self, in_channels: int, out_channels: int = 308, **kw):
        super().__init__(in_channels, out_channels, "conv_pose", **kw)


class SegHead(DeconvHead):
    def __init__(self, in_channels: int, num_classes: int = 29, **kw):
        super().__init__(in_channels, num_classes, "conv_seg", **kw)


class DenseHead(nn.Module):
    """Per-pixel regression (normals, albedo, pointmap): 3x3 conv, then 2x pixel-shuffle upsampling
    blocks back to the input resolution, then 3x3 convs and a 1x1 output conv."""

    norm: type[nn.Module] = nn.InstanceNorm2d

    def __init__(self, in_channels: int, out_channels: int, out_name: str, upsample_channels,
                 conv_out_channels=None, conv_kernel_sizes=None):
        super().__init__()
        norm = self.norm
        self.input_conv = nn.Sequential(
            *_conv_norm_act(nn.Conv2d(in_channels, in_channels, 3, padding=1), in_channels, norm=norm)
        )
        blocks = []
        ch = in_channels
        for out_ch in upsample_channels:
            conv = nn.Conv2d(ch, 4 * out_ch, 3, padding=1)
            blocks.append(nn.Sequential(*_conv_norm_act(conv, out_ch, shuffle=True, norm=norm)))
            ch = out_ch
        self.upsample_blocks = nn.Sequential(*blocks)
        self.conv_layers, ch = _conv_stack(ch, conv_out_channels, conv_kernel_sizes, norm=norm)
        self.out_name = out_name
        setattr(self, out_name, nn.Conv2d(ch, out_channels, 1))

    def dense(self, x: Tensor) -> Tensor:
        x = self.conv_layers(self.upsample_blocks(self.input_conv(x)))
        return getattr(self, self.out_name)(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(x)


class NormalHead(DenseHead):
    def __init__(self, in_channels: int, **kw):
        super().__init__(in_channels, 3, "conv_normal", **kw)


class AlbedoHead(DenseHead):
    norm = ChannelNorm2d

    def __init__(self, in_channels: int, **kw):
        super().__init__(in_channels, 3, "conv_albedo", **kw)


class PointmapHead(DenseHead):
    """Camera-space points per pixel plus one global scale: metric points = points / scale.

    The scale branch downsamples the feature map with three stride-2 convs and flattens it into a
    linear layer, which fixes the input size the model accepts (1024 x 768 for released files).
    """

    def __init__(self, in_channels: int, scale_conv_out_channels, scale_conv_kernel_sizes,
                 scale_final_layer, **kw):
        super().__init__(in_channels, 3, "conv_pointmap", **kw)
        self.scale_conv_layers, _ = _conv_stack(in_channels, scale_conv_out_channels,
                                                scale_conv_kernel_sizes, stride=2)
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (n_in, n_out) in enumerate(zip(scale_final_layer[:-1], scale_final_layer[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(scale_final_layer) - 2:
                layers.append(nn.SiLU())
        self.scale_final_layer = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.dense(x), self.scale_final_layer(self.scale_conv_layers(x))


HEADS = {"pose": PoseHeatmapHead, "seg": SegHead, "normal": NormalHead, "albedo": AlbedoHead,
         "pointmap": PointmapHead}


def scale_flat_features(head: dict, patch_grid: tuple[int, int]) -> int:
    """Input width of the pointmap scale MLP: channels x the grid after the stride-2 convs."""
    h, w = patch_grid
    for _ in head["scale_conv_out_channels"]:
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    return head["scale_conv_out_channels"][-1] * h * w


# ----------------------------------------------------------------------------------------------
# The whole model


class Sapiens2(nn.Module):
    """Backbone plus one task head; forward returns the head's raw output.

    pose: B x 308 x H/4 x W/4 heatmaps; seg: B x 29 x H x W logits; normal/albedo: B x 3 x H x W;
    pointmap: (B x 3 x H x W points, B x 1 scale). (The bare backbone returns the B x C x H/16 x
    W/16 feature map.)
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.task = config.task
        self.backbone = Sapiens2Backbone(config.backbone)
        self.decode_head = HEADS[config.task](**config.head)

    def forward(self, x: Tensor):
        return self.decode_head(self.backbone(x))
