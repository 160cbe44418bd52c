"""Several photos of one person in the add-on (sapiens_blender/views.py): the panel's Other Views
list reaches the engine's avatar job as views to fuse, its problems are said in words, and a
fused avatar (one island per view) imports like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from blender_support import addon, scene_snapshot  # noqa: E402,F401  (addon: a fixture)

pytestmark = pytest.mark.blender
TASKS = ("pose", "seg", "normal", "pointmap")


def _add_view(path: Path) -> None:
    bpy.ops.sapiens.add_views(directory=str(path.parent), files=[{"name": path.name}])


def test_fuse_without_other_views_is_said_in_words(addon, tmp_path):
    settings = bpy.context.scene.sapiens
    settings.avatar.fuse = True
    before = scene_snapshot()
    with pytest.raises(RuntimeError, match="Fuse as One Person needs the other photos"):
        bpy.ops.sapiens.run()
    _add_view(Path(settings.photo))
    assert len(settings.views) == 1
    with pytest.raises(RuntimeError, match="also listed under Other Views"):
        bpy.ops.sapiens.run()
    bpy.ops.sapiens.remove_view(index=0)
    assert len(settings.views) == 0
    missing = tmp_path / "gone.png"
    settings.views.add().path = str(missing)
    with pytest.raises(RuntimeError, match="view photo was not found"):
        bpy.ops.sapiens.run()
    with pytest.raises(RuntimeError, match="Rebuild takes one photo's predictions"):
        bpy.ops.sapiens.run(rebuild_only=True)
    assert scene_snapshot() == before


def test_build_avatar_sends_the_views_to_the_engine(addon, tmp_path):
    """Tiny random models: both photos are predicted in one avatar job with fuse on (the
    engine's prediction cache holds both bundles); fusing random predictions is refused by
    the engine, in words, and nothing enters the scene."""
    from PIL import Image

    from engine.models.testing import write_tiny_checkpoint

    checkpoints = tmp_path / "checkpoints"
    for task in TASKS:
        size = (1024, 768) if task == "pointmap" else (256, 192)
        write_tiny_checkpoint(checkpoints / task / f"sapiens2_0.4b_{task}.safetensors", task, img_size=size, seed=1)
    addon.checkpoint_dir = str(checkpoints)
    addon.device = "cpu"
    back = tmp_path / "back.png"
    Image.new("RGB", (32, 48), (40, 120, 40)).save(back)
    settings = bpy.context.scene.sapiens
    settings.avatar.fuse = True
    _add_view(back)
    before = scene_snapshot()
    with pytest.raises(RuntimeError) as failed:
        bpy.ops.sapiens.run()
    from sapiens_blender import user_data

    bundles = [json.loads(p.read_text())["photo"] for p in user_data.cache_root().glob("predictions/*/bundle.json")]
    assert sorted(Path(b.get("path") or b.get("name")).name for b in bundles) == ["IMG_7.png", "back.png"]
    assert "IMG_7.png" in str(failed.value) or "back.png" in str(failed.value)  # names the photo, not only the cache
    assert scene_snapshot() == before


def test_a_fused_avatar_imports_with_its_islands(addon, tmp_path):
    from engine.bundle import write_bundle
    from engine.jobs import run_job
    from engine.synthetic import make_person, render, to_bundle

    front = make_person(102, pose="arms_forward", width=192, height=256)
    back = render(front.posed, 192, 256, yaw_deg=180.0)
    a = write_bundle(to_bundle(front, name="front"), tmp_path / "front")
    b = write_bundle(to_bundle(back, name="back"), tmp_path / "back")
    out = Path(run_job("build", {"bundle_dir": str(a), "views": [str(b)], "out_dir": str(tmp_path / "fused"),
                                 "texture_size": 512, "rig": "rigify", "formats": ["glb"]})["avatar_dir"])
    assert bpy.ops.sapiens.import_avatar(directory=str(out)) == {"FINISHED"}
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    assert len(meshes) == 1 and len(armatures) == 1
    mesh = meshes[0].data
    assert len(mesh.uv_layers) == 1 and len(mesh.polygons) == json.loads((out / "avatar.json").read_text())["mesh"]["faces"]
    # the UVs reach all three islands (view 1, view 2, unseen) across the texture's width
    import numpy as np

    uv = np.zeros(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers[0].data.foreach_get("uv", uv)
    u = uv[0::2]
    assert (u < 0.3).any() and ((u > 0.36) & (u < 0.63)).any() and (u > 0.7).any()
    images = {n.image.name for m in mesh.materials for n in m.node_tree.nodes if n.type == "TEX_IMAGE" and n.image}
    assert len(images) >= 2  # albedo and normal map
