"""Imported Rigify rigs in real Blender: Generate works on them, and one click binds the mesh to
the generated rig's deform bones; the folder import operator takes a path from scripts."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_support import addon, evaluated_positions, rigify_avatar  # noqa: E402,F401  (fixtures)
from test_blender_io import write_test_avatar  # noqa: E402

pytestmark = pytest.mark.blender


def test_import_operator_takes_a_file_or_folder_path(addon, tmp_path):
    avatar_dir = write_test_avatar(tmp_path / "person")
    assert bpy.ops.sapiens.import_avatar(filepath=str(avatar_dir / "avatar.json")) == {"FINISHED"}
    assert bpy.ops.sapiens.import_avatar(filepath=str(avatar_dir)) == {"FINISHED"}
    assert bpy.ops.sapiens.import_avatar(directory=str(avatar_dir)) == {"FINISHED"}
    assert {"person", "person.001", "person.002"} <= set(bpy.data.collections.keys())
    with pytest.raises(RuntimeError, match="nowhere: not an avatar directory"):
        bpy.ops.sapiens.import_avatar(filepath=str(tmp_path / "nowhere" / "avatar.json"))


def _label_vertices(obj, avatar_dir, name: str) -> np.ndarray:
    labels = {entry["name"]: entry["id"] for entry in json.loads((avatar_dir / "avatar.json").read_text())["labels"]}
    values = np.empty(len(obj.data.vertices), np.int32)
    obj.data.attributes["sapiens_label"].data.foreach_get("value", values)
    return np.flatnonzero(values == labels[name])


def test_imported_rig_generates_with_rigify_and_binds_to_its_deform_bones(addon, rigify_avatar):
    assert bpy.ops.sapiens.import_avatar(directory=str(rigify_avatar)) == {"FINISHED"}
    metarig, mesh = bpy.data.objects["sample_rig"], bpy.data.objects["sample"]
    skeleton = json.loads((rigify_avatar / "skeleton.json").read_text())

    # skeleton.json's Rigify data is on the armature
    collections = metarig.data.collections
    for spec in skeleton["rigify_collections"]:
        assert collections[spec["name"]].rigify_ui_row == spec["ui_row"]
        assert collections[spec["name"]].rigify_color_set_id == spec["color_set_id"]
    assert metarig.pose.bones["upper_arm.L"].rigify_type == "limbs.arm"
    assert metarig.pose.bones["thigh.L"].rigify_parameters.extra_ik_toe is True
    assert metarig.pose.bones["face"].rigify_parameters.make_deform is False
    assert len(metarig.data.rigify_colors) >= 6

    rest = evaluated_positions(mesh)
    bpy.context.view_layer.objects.active = metarig
    assert bpy.ops.pose.rigify_generate() == {"FINISHED"}
    rig = metarig.data.rigify_target_rig
    assert rig is not None and "DEF-upper_arm.L" in rig.data.bones

    bpy.context.view_layer.objects.active = mesh
    assert bpy.ops.sapiens.bind_generated_rig() == {"FINISHED"}
    assert mesh.modifiers["Armature"].object == rig and mesh.parent == rig
    deform = {b.name for b in rig.data.bones if b.use_deform}
    skin_bones = {b["name"] for b in skeleton["bones"] if b["deform"]}
    groups = {g.name for g in mesh.vertex_groups}
    assert not groups & skin_bones, "no weight is left on the metarig's bones"
    assert {"DEF-spine", "DEF-upper_arm.L", "DEF-upper_arm.L.001", "DEF-thigh.R", "DEF-hand.L"} <= groups & deform
    # a limb's weight is shared by its segments along the bone, each vertex's weights summing to 1
    index = {g.index: g.name for g in mesh.vertex_groups if g.name in deform}
    totals, upper_arm = np.zeros(len(mesh.data.vertices)), np.zeros((len(mesh.data.vertices), 2))
    for v in mesh.data.vertices:
        for g in v.groups:
            if g.group in index:
                totals[v.index] += g.weight
                if index[g.group] in ("DEF-upper_arm.L", "DEF-upper_arm.L.001"):
                    upper_arm[v.index, index[g.group].endswith(".001")] = g.weight
    weighted = totals > 0
    assert weighted.mean() > 0.99 and np.allclose(totals[weighted], 1.0, atol=2e-3)
    assert (upper_arm[:, 0] > 0.5).sum() > 20 and (upper_arm[:, 1] > 0.5).sum() > 20
    np.testing.assert_allclose(evaluated_positions(mesh), rest, atol=1e-4)  # binding moves nothing

    # the whole rig moved by its root control: every vertex follows through the DEF bones
    root = rig.pose.bones["root"]
    root.location = (0.0, 0.0, 0.5)
    bpy.context.view_layer.update()
    shift = np.array(rig.data.bones["root"].matrix_local)[:3, :3] @ [0.0, 0.0, 0.5]
    np.testing.assert_allclose(evaluated_positions(mesh) - rest, np.broadcast_to(shift, rest.shape), atol=1e-3)
    root.location = (0.0, 0.0, 0.0)

    # the left hand's IK control moved: the left hand follows, the right hand stays
    hand_ik = rig.pose.bones["hand_ik.L"]
    hand_ik.location = (0.0, 0.1, 0.0)
    bpy.context.view_layer.update()
    moved = np.linalg.norm(evaluated_positions(mesh) - rest, axis=1)
    left, right = (_label_vertices(mesh, rigify_avatar, n) for n in ("Left_Hand", "Right_Hand"))
    assert np.median(moved[left]) > 0.05, np.median(moved[left])
    assert moved[right].max() < 1e-3


def test_bind_without_a_generated_rig_says_so(addon, tmp_path):
    from sapiens_blender.blender.rigify_bind import RigifyBindError, bind_to_generated_rig

    bpy.ops.sapiens.import_avatar(directory=str(write_test_avatar(tmp_path / "p")))
    with pytest.raises(RigifyBindError, match="Generate"):
        bind_to_generated_rig(bpy.data.objects["p_rig"])


def test_a_script_import_enables_rigify_and_applies_its_data(rigify_avatar):
    """The importer alone (scripts, the batch) leaves a rig ready for Generate: Rigify's
    properties exist only while Rigify is enabled, so the import enables it."""
    import addon_utils

    from sapiens_blender.blender.import_avatar import import_avatar

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.disable("rigify", default_set=True)
    result = import_avatar(rigify_avatar, name="scripted")
    metarig = result.armature_object
    assert metarig.data.collections["Torso"].rigify_ui_row == 3
    assert metarig.pose.bones["upper_arm.L"].rigify_type == "limbs.arm"
    bpy.context.view_layer.objects.active = metarig
    assert bpy.ops.pose.rigify_generate() == {"FINISHED"}
    assert metarig.data.rigify_target_rig is not None


def test_bind_without_the_avatar_folder_renames_the_groups(addon, rigify_avatar):
    """The engine's skin is read again from the avatar folder the mesh came from; without it
    (moved, deleted) each bone's group goes whole to the bone's first deform segment."""
    from sapiens_blender.blender.rigify_bind import SOURCE_PROPERTY, bind_to_generated_rig

    assert bpy.ops.sapiens.import_avatar(directory=str(rigify_avatar)) == {"FINISHED"}
    metarig, mesh = bpy.data.objects["sample_rig"], bpy.data.objects["sample"]
    assert mesh[SOURCE_PROPERTY] == str(rigify_avatar)
    del mesh[SOURCE_PROPERTY]
    bpy.context.view_layer.objects.active = metarig
    assert bpy.ops.pose.rigify_generate() == {"FINISHED"}
    rig, meshes = bind_to_generated_rig(metarig)
    groups = {g.name for g in mesh.vertex_groups}
    assert meshes == [mesh] and {"DEF-upper_arm.L", "DEF-spine", "DEF-hand.R"} <= groups
    assert "DEF-upper_arm.L.001" not in groups and "upper_arm.L" not in groups
