"""Export through Blender's own exporters: the imported avatar and its action go out as FBX (and
USD, glb, .blend) with the Unreal, Unity and Maya presets, and an FBX comes back through Blender's
FBX importer with the same bones, weights and bone positions (within 1 mm), posed the same."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_support import rigify_avatar  # noqa: E402,F401  (a fixture)
from sapiens_blender.blender.export_avatar import avatar_objects, export_avatar  # noqa: E402
from sapiens_blender.blender.import_avatar import import_avatar  # noqa: E402
from sapiens_blender.export_presets import PRESETS, ExportRequestError  # noqa: E402
from test_blender_io import write_test_avatar  # noqa: E402

pytestmark = pytest.mark.blender


def _fresh_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _import_fbx(path):
    _fresh_scene()
    # anim_offset: the importer shifts animation by one frame unless told not to
    assert bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0) == {"FINISHED"}
    armature = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    mesh = next(o for o in bpy.data.objects if o.type == "MESH")
    return armature, mesh


def _bone_heads(armature, names) -> np.ndarray:
    """World positions of the bones' heads as posed now (rest pose when not animated)."""
    bpy.context.view_layer.update()
    world = np.array(armature.matrix_world)
    heads = np.array([np.array(armature.pose.bones[n].head) for n in names], np.float64)
    return heads @ world[:3, :3].T + world[:3, 3]


def _weights(mesh, names) -> np.ndarray:
    """V x B weights of the named groups (a test-side loop: Blender has no bulk reader for them)."""
    column = {mesh.vertex_groups[n].index: j for j, n in enumerate(names) if n in mesh.vertex_groups}
    out = np.zeros((len(mesh.data.vertices), len(names)))
    for v in mesh.data.vertices:
        for g in v.groups:
            if g.group in column:
                out[v.index, column[g.group]] = g.weight
    return out


def _world_vertices(mesh) -> np.ndarray:
    co = np.empty(3 * len(mesh.data.vertices), np.float32)
    mesh.data.vertices.foreach_get("co", co)
    world = np.array(mesh.matrix_world)
    return co.reshape(-1, 3).astype(np.float64) @ world[:3, :3].T + world[:3, 3]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_fbx_round_trip_keeps_bones_weights_and_positions(preset, rigify_avatar, tmp_path):
    _fresh_scene()
    result = import_avatar(rigify_avatar, name="person")
    armature, mesh = result.armature_object, result.mesh_object
    deform_only = PRESETS[preset]["fbx"]["use_armature_deform_only"]
    # deform-only exports keep the deforming bones and their parents
    names = sorted(b.name for b in armature.data.bones
                   if not deform_only or b.use_deform or any(c.use_deform for c in b.children_recursive))
    heads, weights = _bone_heads(armature, names), _weights(mesh, names)
    vertices = _world_vertices(mesh)

    path = export_avatar(avatar_objects(mesh), tmp_path / f"person_{preset}.fbx", preset)
    assert path.is_file() and not list(tmp_path.glob(".*tmp*"))

    armature2, mesh2 = _import_fbx(path)
    assert sorted(b.name for b in armature2.data.bones) == names
    np.testing.assert_allclose(_bone_heads(armature2, names), heads, atol=1e-3)
    np.testing.assert_allclose(_world_vertices(mesh2), vertices, atol=1e-3)
    np.testing.assert_allclose(_weights(mesh2, names), weights, atol=1e-4)


def test_fbx_round_trip_keeps_the_action(tmp_path):
    _fresh_scene()
    result = import_avatar(write_test_avatar(tmp_path / "avatar"), name="waver")
    armature, action = result.armature_object, result.action
    names = sorted(b.name for b in armature.data.bones)
    start, end = (int(f) for f in action.frame_range)
    frames = sorted({start, (start + end) // 2, end})
    posed = []
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        posed.append(_bone_heads(armature, names))
    assert np.ptp(np.array(posed), axis=0).max() > 0.01, "the action moves a bone"

    path = export_avatar(avatar_objects(armature), tmp_path / "waver.fbx", "maya")
    armature2, _ = _import_fbx(path)
    assert armature2.animation_data is not None and armature2.animation_data.action is not None
    for frame, expected in zip(frames, posed):
        bpy.context.scene.frame_set(frame)
        np.testing.assert_allclose(_bone_heads(armature2, names), expected, atol=1e-3, err_msg=f"frame {frame}")


@pytest.mark.parametrize("suffix", [".usdc", ".glb", ".blend"])
def test_other_formats_are_written_whole(suffix, tmp_path):
    _fresh_scene()
    result = import_avatar(write_test_avatar(tmp_path / "avatar"), name="p")
    path = export_avatar(avatar_objects(result.mesh_object), tmp_path / "out" / f"p{suffix}", "unity")
    assert path.stat().st_size > 1000 and not list(path.parent.glob(".*tmp*"))
    if suffix == ".usdc":
        from pxr import Usd, UsdGeom, UsdSkel

        stage = Usd.Stage.Open(str(path))
        assert UsdGeom.GetStageUpAxis(stage) == "Y" and UsdGeom.GetStageMetersPerUnit(stage) == 1.0
        assert any(prim.IsA(UsdSkel.Skeleton) for prim in stage.Traverse())


def test_bad_export_requests_say_what_is_wrong(tmp_path):
    _fresh_scene()
    result = import_avatar(write_test_avatar(tmp_path / "avatar"), name="p")
    with pytest.raises(ExportRequestError, match="p.obj: export to"):
        export_avatar(avatar_objects(result.mesh_object), tmp_path / "p.obj")
    with pytest.raises(ExportRequestError, match="unknown export preset 'godot'"):
        export_avatar(avatar_objects(result.mesh_object), tmp_path / "p.fbx", "godot")
    assert not list(tmp_path.glob("p.*"))


def test_export_operator_writes_the_active_avatar(tmp_path):
    import addon_utils

    from blender_support import REPO_ROOT  # noqa: F401  (the add-on is importable from this checkout)

    _fresh_scene()
    addon_utils.enable("sapiens_blender", default_set=True, handle_error=None)
    try:
        result = import_avatar(write_test_avatar(tmp_path / "avatar"), name="p")
        bpy.context.view_layer.objects.active = result.mesh_object
        assert bpy.ops.sapiens.export_avatar(filepath=str(tmp_path / "p.fbx"), preset="unreal") == {"FINISHED"}
        assert (tmp_path / "p.fbx").stat().st_size > 1000
        with pytest.raises(RuntimeError, match="p.obj: export to"):
            bpy.ops.sapiens.export_avatar(filepath=str(tmp_path / "p.obj"))
        bpy.context.view_layer.objects.active = None
        assert not bpy.ops.sapiens.export_avatar.poll()
    finally:
        addon_utils.disable("sapiens_blender", default_set=True, handle_error=None)
