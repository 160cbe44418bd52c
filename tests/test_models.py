"""The engine's Sapiens2 models are exactly the released architecture.

Layouts come from ../shared/reference/checkpoint_layouts.json (every released file); parity
fixtures were produced by running the public reference implementation.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import engine
from engine.errors import CheckpointError
from engine.models.loading import inspect_state_dict, save_checkpoint
from engine.models.testing import make_tiny_model, tiny_config, write_tiny_checkpoint

TASKS = ["pose", "seg", "normal", "pointmap", "albedo"]


def _layouts(shared_reference):
    return json.loads((shared_reference / "checkpoint_layouts.json").read_text())


def _name_to_arch_task(name: str) -> tuple[str, str | None]:
    arch, task = name.rsplit("_", 1)
    return arch, None if task == "pretrain" else task


def _layout_of(model: torch.nn.Module) -> dict:
    return {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()}


def test_every_released_layout_is_built_exactly_on_meta(shared_reference):
    layouts = _layouts(shared_reference)
    assert len(layouts) == 26
    for name, entry in layouts.items():
        arch, task = _name_to_arch_task(name)
        model = engine.build_model(arch, task, device="meta")
        got, want = _layout_of(model), entry["state_dict"]
        missing, extra = set(want) - set(got), set(got) - set(want)
        assert not missing and not extra, f"{name}: missing {sorted(missing)[:3]} extra {sorted(extra)[:3]}"
        wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        assert not wrong, f"{name}: {list(wrong.items())[:3]}"
        assert all(p.is_meta for p in model.parameters())


def test_architecture_is_inferred_from_every_released_layout(shared_reference):
    """The loader reads each released file's settings from its keys alone (shapes on meta)."""
    for name, entry in _layouts(shared_reference).items():
        arch, task = _name_to_arch_task(name)
        sd = {k: torch.empty(shape, dtype=getattr(torch, dt), device="meta")
              for k, (shape, dt) in entry["state_dict"].items()}
        config = inspect_state_dict(sd, name)
        assert config.task == task
        assert config.backbone.use_tokenizer == name.startswith("sapiens2_1b_4k")
        if task:
            for key, value in entry["decode_head"].items():
                if key not in ("type",):
                    assert config.head[key] == value, f"{name}: head {key}"
        assert _layout_of(engine.build_model(config, device="meta")) == entry["state_dict"], name
        assert config.backbone.img_size == tuple(entry["backbone"]["img_size"]), name


def test_5b_builds_on_meta_without_memory():
    model = engine.build_model("sapiens2_5b", "pointmap", device="meta")
    n = sum(p.numel() for p in model.parameters())
    assert 4.5e9 < n < 6e9
    assert model.config.backbone.head_dim == 76


def test_unknown_architecture_and_task_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        engine.build_model("sapiens2_3b", "pose", device="meta")
    with pytest.raises(ValueError, match="unknown task"):
        engine.build_model("sapiens2_0.4b", "depth", device="meta")


@pytest.mark.parametrize("task", TASKS)
def test_tiny_1k_parity(shared_reference, task):
    parity = shared_reference / "parity" / "tiny_1k"
    io = load_file(parity / "io.safetensors")
    config = json.loads((parity / "config.json").read_text())
    model = engine.load_model(parity / f"{task}.safetensors")
    assert model.task == task
    # inferred, not configured: the settings match the fixture's config.json
    arch = config["arch"]
    assert model.config.backbone.embed_dims == arch["embed_dims"]
    assert model.config.backbone.num_layers == arch["num_layers"]
    assert model.config.backbone.num_heads == arch["num_heads"]
    assert model.config.backbone.feedforward_channels == arch["feedforward_channels"]
    assert model.config.backbone.num_kv_heads[8:10] == (2, 2)  # grouped-query middle blocks
    for key, value in config["heads"][task].items():
        assert model.config.head[key] == value
    with torch.no_grad():
        out = model(io["input"])
    if task == "pointmap":
        out, scale = out
        ref_scale = io["pointmap.scale"]
        assert (scale - ref_scale).abs().max() <= 1e-4 * ref_scale.abs().max()
    ref = io[f"{task}.out"]
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_tiny_4k_backbone_parity(shared_reference):
    parity = shared_reference / "parity" / "tiny_4k_backbone"
    io = load_file(parity / "io.safetensors")
    model = engine.load_model(parity / "backbone.safetensors")
    assert model.task is None
    assert model.config.backbone.use_tokenizer and model.config.backbone.window_size == 4
    with torch.no_grad():
        out = model(io["input"])
    ref = io["backbone.out"]
    assert out.shape == ref.shape == (2, 64, 4, 3)
    # 2.9e-7 relative on this machine (other CPUs and thread counts order sums differently); with the
    # class and storage tokens left in fp32 through the bf16 RoPE, as before, it was 5.9e-6
    assert (out - ref).abs().max() <= 2e-6 * ref.abs().max()


def test_pose_decode_parity(shared_reference):
    parity = shared_reference / "parity" / "pose_decode"
    meta = json.loads((parity / "decode.json").read_text())
    d = load_file(parity / "decode.safetensors")
    keypoints, scores = engine.decode_heatmaps(d["heatmaps"], tuple(meta["input_size_wh"]),
                                               blur_kernel_size=meta["blur_kernel_size"])
    assert keypoints.shape == (2, 308, 2) and scores.shape == (2, 308)
    assert np.abs(keypoints - d["keypoints"].numpy()).max() < 1e-3
    assert np.array_equal(scores, d["scores"].numpy())
    # numpy in, single image in
    k1, s1 = engine.decode_heatmaps(d["heatmaps"][0].numpy(), tuple(meta["input_size_wh"]))
    assert np.allclose(k1, keypoints[0]) and np.array_equal(s1, scores[0])


@pytest.mark.parametrize("task", [*TASKS, None])
def test_engine_checkpoint_round_trips(tmp_path, task):
    model = make_tiny_model(task, img_size=(256, 192), seed=3)
    path = save_checkpoint(model, tmp_path / f"{task}.safetensors")
    loaded = engine.load_model(path)
    # the training input size is only recorded in the file for pointmaps (scale MLP width)
    if task == "pointmap":
        assert loaded.config == model.config
    else:
        assert loaded.config.head == model.config.head
        assert dataclasses.replace(loaded.config.backbone, img_size=(256, 192)) == model.config.backbone
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(x), loaded(x)
    # The loaded weights are memory-mapped (other alignment, other kernel paths on some CPUs: on
    # AMD EPYC the pointmap scale differed in its last bit), so equal to float rounding only.
    for u, v in zip(*(o if isinstance(o, tuple) else (o,) for o in (a, b))):
        assert u.shape == v.shape
        assert (u - v).abs().max() <= 1e-5 * u.abs().max()
    raw = load_file(path)
    assert raw[("backbone." if task else "") + "rope_embed.periods"].dtype == torch.bfloat16


def test_rope_rounds_the_whole_q_and_k_to_bf16_as_the_reference():
    """Prefix tokens (class + 8 storage) are not rotated but come back rounded to bf16; the ONNX
    export's fp32 emulation of the bf16 rotation gives the same bits."""
    from engine.models.sapiens2 import RopePositionEmbedding, apply_rope
    from engine.runtime.onnx_export import rotate_emulated

    g = torch.Generator().manual_seed(1)
    sin, cos = RopePositionEmbedding(16, 100.0, torch.bfloat16)(4, 3)
    x = torch.randn(2, 4, 9 + 12, 16, generator=g)
    out = apply_rope(x, sin, cos)
    assert out.dtype == torch.float32
    assert torch.equal(out[..., :9, :], x[..., :9, :].bfloat16().float())
    assert not torch.equal(out[..., :9, :], x[..., :9, :])          # the rounding happened
    patches = x[..., 9:, :].bfloat16()
    half1, half2 = patches.chunk(2, dim=-1)
    want = (patches * cos + torch.cat([-half2, half1], dim=-1) * sin).float()
    assert torch.equal(out[..., 9:, :], want)
    assert torch.equal(rotate_emulated(x, sin.float(), cos.float(), torch.bfloat16), out)


def test_load_model_casts_dtype_but_keeps_rope_periods(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "n.safetensors", "normal", img_size=(64, 48))
    model = engine.load_model(path, dtype=torch.bfloat16)
    assert model.backbone.blocks[0].attn.wq.weight.dtype == torch.bfloat16
    assert model.backbone.rope_embed.periods.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 48, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


# ---- bad checkpoints: each gives a clear error naming the file and the problem -----------------


@pytest.fixture
def good_pose(tmp_path):
    return write_tiny_checkpoint(tmp_path / "pose.safetensors", "pose", img_size=(64, 48))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        engine.load_model(tmp_path / "nope.safetensors")


def test_truncated_file(good_pose, tmp_path):
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(good_pose.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=r"truncated.*truncated\.safetensors|truncated\.safetensors.*truncated"):
        engine.load_model(bad)


def test_not_safetensors(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_text("<html>404 not found</html>" * 10)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        engine.load_model(bad)


def test_unknown_layout(tmp_path):
    bad = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.bias": torch.zeros(10)}, bad)
    with pytest.raises(CheckpointError, match=r"unknown layout.*conv1\.weight"):
        engine.load_model(bad)


def test_missing_and_unexpected_keys(good_pose, tmp_path):
    sd = load_file(good_pose)
    del sd["backbone.blocks.1.attn.k_norm.weight"]
    sd["backbone.blocks.1.attn.extra.weight"] = torch.zeros(3)
    bad = tmp_path / "edited.safetensors"
    save_file(sd, bad)
    with pytest.raises(CheckpointError) as err:
        engine.load_model(bad)
    msg = str(err.value)
    assert "edited.safetensors" in msg and "1 missing keys" in msg and "blocks.1.attn.k_norm.weight" in msg
    assert "1 unexpected keys" in msg and "blocks.1.attn.extra.weight" in msg


def test_shape_mismatch_names_key_and_shapes(good_pose, tmp_path):
    sd = load_file(good_pose)
    sd["backbone.blocks.2.ffn.w3.bias"] = torch.zeros(65)
    bad = tmp_path / "shapes.safetensors"
    save_file(sd, bad)
    with pytest.raises(CheckpointError, match=r"backbone\.blocks\.2\.ffn\.w3\.bias.*\(65,\).*\(64,\)"):
        engine.load_model(bad)


def test_wrong_task(good_pose):
    with pytest.raises(CheckpointError, match="is a pose checkpoint, but a seg model was asked for"):
        engine.load_model(good_pose, task="seg")
    assert engine.load_model(good_pose, task="pose").task == "pose"


def test_pickle_checkpoints_load_only_plain_weights(good_pose, tmp_path):
    sd = load_file(good_pose)
    plain = tmp_path / "plain.pth"
    torch.save({"state_dict": sd}, plain)
    assert engine.load_model(plain).task == "pose"

    class Payload:  # anything that needs code to unpickle is refused
        def __reduce__(self):
            return (print, ("this would run",))

    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": sd, "extra": Payload()}, evil)
    with pytest.raises(CheckpointError, match="evil.pth: refused") as err:
        engine.load_model(evil)
    message = str(err.value)
    assert "(it calls print)" in message
    # never the advice to turn the safety off (torch's own message gives it)
    assert "weights_only" not in message and "can still be loaded" not in message


def test_tiny_config_inference_matches_tiny_config():
    cfg = tiny_config("pointmap", img_size=(1024, 768))
    model = engine.build_model(cfg, device="meta")
    assert inspect_state_dict(model.state_dict()) == cfg
