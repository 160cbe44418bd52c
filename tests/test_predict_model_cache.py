"""Model cache: lazy runners, LRU eviction (and release) under a memory budget, memory-mapped weights."""

from __future__ import annotations

import pytest

from engine.errors import CheckpointError
from engine.model_cache import ModelCache, model_bytes, parse_memory


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    from engine.models.testing import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("ckpt")
    return {t: write_tiny_checkpoint(root / t / f"sapiens2_0.4b_{t}.safetensors", t, img_size=(256, 192))
            for t in ("seg", "normal", "albedo")}


def test_lazy_lru_under_budget(paths):
    free = ModelCache(paths)
    assert free.loaded() == [] and free.loads == 0
    one = model_bytes(free.get("normal").model)
    assert free.get("normal") is free.get("normal") and free.loads == 1
    budget = int(one * 2.5)  # room for two models of this size
    cache = ModelCache(paths, max_memory=budget)
    cache.get("normal")
    seg = cache.get("seg")
    cache.get("normal")            # normal is now the most recently used
    cache.get("albedo")            # over budget: seg goes, not normal
    assert cache.loaded() == ["normal", "albedo"] and cache.evictions == 1
    assert seg.model is None       # the evicted runner was released, not just forgotten
    assert cache.get("normal").model is not None
    assert cache.used_bytes <= budget
    tight = ModelCache(paths, max_memory=1)
    tight.get("seg")
    assert tight.loaded() == ["seg"]  # the model asked for always stays
    with pytest.raises(CheckpointError, match="pose"):
        cache.get("pose")


def test_weights_are_memory_mapped(paths):
    from pathlib import Path

    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux) to see the mapping")
    runner = ModelCache(paths).get("seg")
    assert runner.backend == "torch"
    model = runner.model
    pointer = model.backbone.patch_embed.projection.weight.data_ptr()
    regions = []
    for line in maps.read_text().splitlines():
        if line.endswith(str(paths["seg"])):
            start, end = (int(v, 16) for v in line.split()[0].split("-"))
            regions.append((start, end))
    # the weight lives inside the file's mapping: loading did not copy it
    assert any(start <= pointer < end for start, end in regions)


def test_clear_releases_every_runner(paths):
    cache = ModelCache(paths)
    runners = [cache.get(t) for t in ("seg", "normal")]
    assert cache.described["seg"]["backend"] == "torch" and cache.described["seg"]["dtype"] == "float32"
    cache.clear()
    assert cache.loaded() == [] and all(r.model is None for r in runners)


def test_parse_memory():
    assert parse_memory("6G") == 6 << 30
    assert parse_memory("512M") == 512 << 20
    assert parse_memory("2.5GB") == int(2.5 * (1 << 30))
    assert parse_memory("1000") == 1000 and parse_memory(None) is None
    with pytest.raises(ValueError, match="--max-memory"):
        parse_memory("lots")


def _mapped_rss_kb(path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            first = line.split(" ", 1)[0]
            if "-" in first and all(c in "0123456789abcdef-" for c in first):
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def test_a_freed_tensor_gives_its_file_pages_back(tmp_path):
    """A fast CPU mode converts layer by layer: each fp32 original's file pages must leave the
    resident set when it is freed, not when the whole file is (the 0.4b four-task peak was the
    fourth model's whole file resident beside the three converted ones)."""
    import os

    import torch
    from safetensors.torch import save_file

    from engine.models.safetensors_mmap import load_mmap

    if not os.path.exists("/proc/self/smaps"):
        pytest.skip("needs /proc/self/smaps (Linux) to see resident pages")
    g = torch.Generator().manual_seed(0)
    # odd sizes: neighbours share a page at every boundary
    saved = {f"w{i}": torch.randn(1000 + i, 1023, generator=g) for i in range(8)}
    path = tmp_path / "weights.safetensors"
    save_file(saved, str(path))
    tensors = load_mmap(path)
    assert _mapped_rss_kb(path) < 100          # mapped, nothing read yet
    assert all(torch.equal(tensors[k], v) for k, v in saved.items())
    whole = _mapped_rss_kb(path)
    assert whole > 0.95 * sum(v.numel() * 4 for v in saved.values()) / 1024
    converted = {k: tensors.pop(k).to(torch.bfloat16) for k in ("w0", "w2", "w4", "w6")}
    left = _mapped_rss_kb(path)
    freed = sum(saved[k].numel() * 4 for k in converted) / 1024
    assert left < whole - 0.95 * freed         # the converted ones' pages went, but for shared boundary pages
    # the survivors (each sharing boundary pages with a freed neighbour) still read their values
    assert all(torch.equal(tensors[k], saved[k]) for k in tensors)
    assert all(torch.equal(converted[k], saved[k].to(torch.bfloat16)) for k in converted)


def test_a_fast_mode_load_holds_only_the_unconverted_part_of_the_file(tmp_path, monkeypatch):
    """The real load path (ModelCache -> load_model -> cpu_modes.prepare): by the time the bf16
    mode has converted its layers, the file pages resident are about those of the tensors still
    mapped, not of the whole file it read (the 0.4b four-task peak was that whole file)."""
    import os

    from engine.models.testing import write_tiny_checkpoint
    from engine.runtime import cpu_modes

    if not os.path.exists("/proc/self/smaps"):
        pytest.skip("needs /proc/self/smaps (Linux) to see resident pages")
    # 256 wide: layers of 0.25-1 MB, so the pages a layer shares with its neighbours, or that the
    # kernel maps around a neighbour's page faults (64 kB windows), are a small part of it
    path = write_tiny_checkpoint(tmp_path / "normal" / "wide.safetensors", "normal", img_size=(256, 192),
                                 embed_dims=256, num_heads=4)
    seen = {}
    real = cpu_modes.own_memory

    def measuring(model):
        mapped = [t for t in list(model.parameters()) + list(model.buffers())
                  if not t.untyped_storage().resizable()]
        seen["mapped_kb"] = sum(t.numel() * t.element_size() for t in mapped) / 1024
        seen["resident_kb"] = _mapped_rss_kb(path)
        return real(model)

    monkeypatch.setattr(cpu_modes, "own_memory", measuring)
    runner = ModelCache({"normal": path}, dtype="bf16").get("normal")
    assert runner.cpu_mode == "bf16"
    file_kb = path.stat().st_size / 1024
    converted_kb = file_kb - seen["mapped_kb"]
    assert converted_kb > 0.5 * file_kb            # most of the model was converted: its pages were read
    assert seen["resident_kb"] < seen["mapped_kb"] + 0.15 * converted_kb   # and let go (before: all)
    assert _mapped_rss_kb(path) == 0               # after the load nothing of the file stays resident
