"""Batch lists (YAML subset parser) and the headless batch entry with a real engine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sapiens_blender.batch_list import BatchListError, parse_simple_yaml, read_batch_list

REPO_ROOT = Path(__file__).resolve().parent.parent

EXAMPLE = textwrap.dedent(
    """
    # rebuild the shoot with lighter meshes
    engine_python: /opt/sapiens/env/bin/python
    output_dir: "blends"   # relative to this file
    defaults:
      detail: none
      resolution: quarter
      texture_size: 512
      rig: true
    items:
      - photo: shoot/IMG_0001.jpg
        blend: out/first.blend
      - photo: 'shoot/IMG 0002.jpg'
        watertight: yes
        target_faces: 50000
      - shoot/IMG_0003.jpg
    """
)


def test_simple_yaml_subset_matches_pyyaml():
    yaml = pytest.importorskip("yaml")
    assert parse_simple_yaml(EXAMPLE) == yaml.safe_load(EXAMPLE)


def test_simple_yaml_errors_name_the_line():
    with pytest.raises(BatchListError, match="line 2"):
        parse_simple_yaml("items:\n  just text\n")
    with pytest.raises(BatchListError, match="tabs"):
        parse_simple_yaml("items:\n\t- a\n")


def test_list_files(tmp_path):
    (tmp_path / "a.json").write_text('[{"photo": "x.jpg"}]')
    assert read_batch_list(tmp_path / "a.json") == {"items": [{"photo": "x.jpg"}]}
    (tmp_path / "b.yaml").write_text("defaults:\n  detail: none\n")
    with pytest.raises(BatchListError, match="b.yaml.*items"):
        read_batch_list(tmp_path / "b.yaml")


def _surface_builder_available() -> bool:
    try:
        from engine.geometry import build_surface  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.blender
@pytest.mark.skipif(not _surface_builder_available(), reason="the engine's surface builder (issue 4) has not landed")
def test_headless_batch_writes_blend_files(tmp_path, shared_samples):
    pytest.importorskip("bpy")
    from sapiens_blender.pipeline import _record_bundle, photo_cache_dir
    from blender_support import bundle_from_shared_sample

    sample = shared_samples / "person_102"
    photo = tmp_path / "shoot" / "person_102.png"
    photo.parent.mkdir()
    photo.write_bytes((sample / "image.png").read_bytes())
    cache = tmp_path / "cache"
    cache_dir = photo_cache_dir(cache, photo)
    _record_bundle(cache_dir, bundle_from_shared_sample(sample, cache_dir / "predictions" / "p"), str(photo))
    (tmp_path / "list.yaml").write_text(textwrap.dedent(
        f"""
        cache_dir: cache
        output_dir: blends
        defaults: {{}}
        items:
          - photo: shoot/person_102.png
            detail: none
            resolution: quarter
            texture_size: 512
            rig: true
          - photo: shoot/missing.png
        """
    ).replace("defaults: {}\n", ""))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), SAPIENS_BLENDER_USER_DIR=str(tmp_path / "user"))
    result = subprocess.run(
        [sys.executable, "-m", "sapiens_blender.batch", str(tmp_path / "list.yaml"), "--engine-source", str(REPO_ROOT)],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out  # one of two photos failed
    assert "ok   person_102.png" in out and "FAIL missing.png" in out and "photo not found" in out, out
    blend = tmp_path / "blends" / "person_102.blend"
    assert blend.exists() and not list(blend.parent.glob(".*tmp*"))
    check = subprocess.run(
        [sys.executable, "-c", "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
         "c = bpy.data.collections['person_102']; print(sorted(o.type for o in c.objects))", str(blend)],
        capture_output=True, text=True, timeout=120,
    )
    assert "['ARMATURE', 'MESH']" in check.stdout, check.stdout + check.stderr
