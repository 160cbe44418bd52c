"""ONNX export of every task model and the ONNX Runtime backend, against PyTorch, on the CPU.

Measured on the tiny parity models (fp32, CPUExecutionProvider): ONNX Runtime matches PyTorch
to about 2e-6 of each output's largest magnitude; we assert 1e-4, the parity fixtures' own
tolerance. The bf16 RoPE of the reference is emulated in the graph (casts around fp32 ops); a
graph without that emulation would miss by about 1e-3.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import engine
from engine.errors import CheckpointError, EngineError
from engine.models.sapiens2 import ModelConfig
from engine.models.testing import make_tiny_model, write_tiny_checkpoint
from engine.runtime import get_runner
from engine.runtime.onnx_backend import OnnxRunner
from engine.runtime.onnx_export import export_model, read_metadata

TASKS = ["pose", "seg", "normal", "pointmap", "albedo"]
RELATIVE_TOLERANCE = 1e-4


def _exporter_available():
    if importlib.util.find_spec("onnxscript") is not None:
        return
    reason = "onnxscript (the torch.onnx dynamo exporter's library) is not installed"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def exported(shared_reference, tmp_path_factory):
    """The five parity models exported once.

    The batch is fixed at the fixture's 2 and only pose goes through onnxscript's optimizer:
    both make exporting an 18-block model several times faster (dynamic batch and the optimizer
    are tested on 2-block models below), which keeps this file within its CI time.
    """
    _exporter_available()
    folder = shared_reference / "parity" / "tiny_1k"
    out = tmp_path_factory.mktemp("onnx")
    files = {}
    for task in TASKS:
        model = engine.load_model(folder / f"{task}.safetensors")
        files[task] = export_model(model, out / f"{task}.onnx", input_hw=(256, 192), dynamic_batch=False,
                                   static_batch=2, optimize=task == "pose", source=f"{task}.safetensors")
    return folder, load_file(folder / "io.safetensors"), files


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _worst_relative(got, want) -> float:
    return max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(_tuple(got), _tuple(want)))


@pytest.mark.parametrize("task", TASKS)
def test_onnxruntime_matches_pytorch_and_the_reference(exported, task):
    folder, io, files = exported
    x = io["input"]
    runner = get_runner(task, files[task], backend="onnxruntime", device="cpu", batch_size=2)
    assert runner.backend == "onnxruntime" and runner.session.get_providers() == ["CPUExecutionProvider"]
    model = engine.load_model(folder / f"{task}.safetensors")
    with torch.no_grad():
        want = model(x)
    got = runner(x)
    assert [tuple(o.shape) for o in _tuple(got)] == [tuple(o.shape) for o in _tuple(want)]
    assert _worst_relative(got, want) < RELATIVE_TOLERANCE
    assert _worst_relative(_tuple(got)[0], io[f"{task}.out"]) < RELATIVE_TOLERANCE
    # a single image runs through the fixed batch of 2 (padded, then dropped)
    one = runner(x[1:2])
    assert _worst_relative(_tuple(one)[0], _tuple(want)[0][1:2]) < RELATIVE_TOLERANCE


def test_metadata_round_trip(exported):
    folder, _, files = exported
    meta = read_metadata(files["pointmap"])
    model = engine.load_model(folder / "pointmap.safetensors")
    assert meta["task"] == "pointmap" and meta["dtype"] == "fp32" and meta["input_hw"] == (256, 192)
    assert ModelConfig.from_dict(meta["config"]) == model.config
    assert engine.build_model(meta["config"], device="meta").config == model.config
    assert meta["engine_version"] == engine.__version__ and meta["source"] == "pointmap.safetensors"
    assert meta["outputs"] == ["points", "scale"]
    runner = OnnxRunner(files["pointmap"], device="cpu")
    assert runner.config == model.config and runner.task == "pointmap"


def test_export_leaves_the_model_as_it_was(tmp_path):
    _exporter_available()
    model = make_tiny_model("pose", img_size=(64, 48), num_layers=2, num_kv_heads=(4, 2))
    x = torch.randn(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
    path = export_model(model, tmp_path / "p.onnx", dynamic_batch=False)
    runner = OnnxRunner(path, device="cpu")
    assert runner.batch_axis_static and runner.batch_size == 1     # static_batch defaults to 1
    with torch.no_grad():
        assert _worst_relative(runner(torch.cat([x, x])), model(torch.cat([x, x]))) < RELATIVE_TOLERANCE
    assert type(model.backbone.rope_embed).__name__ == "RopePositionEmbedding"
    from engine.models.sapiens2 import apply_rope

    assert all(blk.attn.rotate is apply_rope and blk.attn.native_gqa for blk in model.backbone.blocks)
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_dynamic_batch_export_and_the_cli(tmp_path):
    """A small model through `sapiens-engine export-onnx`, run at batch 1 and 3."""
    _exporter_available()
    from engine.cli import main

    checkpoint = write_tiny_checkpoint(tmp_path / "sapiens2_tiny_seg.safetensors", "seg", img_size=(128, 96),
                                       num_layers=2, num_kv_heads=(4, 2))
    assert main(["export-onnx", str(checkpoint), "--out", str(tmp_path / "onnx"), "--input-size", "128x96",
                 "--verify"]) == 0
    path = tmp_path / "onnx" / "sapiens2_tiny_seg.fp32.onnx"
    assert path.is_file() and not list((tmp_path / "onnx").glob(".*"))   # no temp leftovers
    runner = get_runner("seg", checkpoint, backend="onnxruntime", device="cpu", batch_size=3,
                        onnx_dir=tmp_path / "onnx")
    assert runner.path == path and not runner.batch_axis_static
    model = engine.load_model(checkpoint)
    x = torch.randn(3, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
    assert _worst_relative(runner(x), want) < RELATIVE_TOLERANCE
    assert _worst_relative(runner(x[:1]), want[:1]) < RELATIVE_TOLERANCE
    with pytest.raises(CheckpointError, match="holds a seg model, but a pose model"):
        get_runner("pose", path, backend="onnxruntime", device="cpu")


def test_onnx_backend_exports_a_checkpoint_on_first_use(tmp_path):
    _exporter_available()
    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt" / "n.safetensors", "normal", img_size=(64, 48),
                                       num_layers=2, num_kv_heads=(4, 2))
    runner = get_runner("normal", checkpoint, backend="onnxruntime", device="cpu")
    assert runner.path == tmp_path / "ckpt" / "onnx" / "n.fp32.onnx"
    again = get_runner("normal", checkpoint, backend="onnxruntime", device="cpu")
    assert again.path.stat().st_mtime == runner.path.stat().st_mtime      # reused, not re-exported
    with pytest.raises(EngineError, match="fp32 or fp16"):
        get_runner("normal", checkpoint, backend="onnxruntime", device="cpu", dtype="bf16")


def test_fp16_export_runs_close_to_fp32(tmp_path):
    _exporter_available()
    model = make_tiny_model("normal", img_size=(64, 48), num_layers=2, num_kv_heads=(4, 2))
    path = export_model(model, tmp_path / "n16.onnx", dtype="fp16")
    assert read_metadata(path)["dtype"] == "fp16"
    assert next(model.parameters()).dtype == torch.float32          # the caller's model is untouched
    runner = OnnxRunner(path, device="cpu")
    assert runner.input_dtype == np.float16
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x)
    got = runner(x)
    assert got.dtype == torch.float32 and 0 < _worst_relative(got, want) < 0.05


def test_missing_onnx_file_and_unknown_backend(tmp_path):
    with pytest.raises(CheckpointError, match="ONNX model not found"):
        get_runner("pose", tmp_path / "nope.onnx", backend="onnxruntime", device="cpu")
    with pytest.raises(EngineError, match="unknown backend 'tensorrt'"):
        get_runner("pose", tmp_path / "x.safetensors", backend="tensorrt")


def test_export_onnx_refuses_a_backbone_and_a_bad_size(tmp_path, capsys):
    from engine.cli import main

    backbone = write_tiny_checkpoint(tmp_path / "pretrain.safetensors", None, img_size=(64, 48),
                                     num_layers=2, num_kv_heads=(4, 2))
    assert main(["export-onnx", str(backbone), "--out", str(tmp_path / "onnx")]) == 1
    assert "pretrain.safetensors: a pretrain backbone" in capsys.readouterr().err
    assert not (tmp_path / "onnx").exists()
    with pytest.raises(SystemExit):
        main(["export-onnx", str(backbone), "--out", str(tmp_path), "--input-size", "100x75"])
    assert "multiples of 16" in capsys.readouterr().err
