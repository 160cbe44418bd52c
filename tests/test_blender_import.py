"""Importing avatars into real Blender (the bpy module): data, axes, skin, animation, clean failure."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from sapiens_blender.blender.import_avatar import import_avatar  # noqa: E402
from sapiens_blender.io.avatar import AvatarError, read_avatar  # noqa: E402
from test_blender_io import LABELS, TEST_BONES, grid_body, skin_weights, write_test_avatar  # noqa: E402

pytestmark = pytest.mark.blender


@pytest.fixture
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def scene_snapshot() -> dict:
    return {
        kind: sorted(d.name for d in getattr(bpy.data, kind))
        for kind in ("objects", "meshes", "armatures", "materials", "images", "actions", "collections")
    }


def mesh_positions(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_import_builds_everything_in_one_collection(tmp_path, empty_scene):
    avatar_dir = write_test_avatar(tmp_path / "avatar")
    result = import_avatar(avatar_dir, name="IMG_0042")
    coll = result.collection
    assert coll.name == "IMG_0042" and coll.name in empty_scene.collection.children
    assert {o.name for o in coll.objects} == {result.mesh_object.name, result.armature_object.name}

    obj = result.mesh_object
    positions, faces, uvs, _normals = grid_body(12, 16)
    # Y-up avatar -> Z-up Blender: (x, y, z) -> (x, -z, y)
    expected = np.stack([positions[:, 0], -positions[:, 2], positions[:, 1]], 1)
    np.testing.assert_allclose(mesh_positions(obj), expected, atol=1e-6)
    assert len(obj.data.polygons) == len(faces)

    # UVs: per corner, v flipped to Blender's bottom-up convention
    uv = np.empty(len(obj.data.loops) * 2, np.float32)
    obj.data.uv_layers["UVMap"].data.foreach_get("uv", uv)
    corner_vertex = np.empty(len(obj.data.loops), np.int32)
    obj.data.loops.foreach_get("vertex_index", corner_vertex)
    np.testing.assert_allclose(uv.reshape(-1, 2)[:, 0], uvs[corner_vertex, 0], atol=1e-6)
    np.testing.assert_allclose(uv.reshape(-1, 2)[:, 1], 1 - uvs[corner_vertex, 1], atol=1e-6)

    # custom normals: the engine's, per corner, in Blender axes
    corner_normals = np.empty(len(obj.data.loops) * 3, np.float32)
    obj.data.corner_normals.foreach_get("vector", corner_normals)
    n = _normals[corner_vertex]
    np.testing.assert_allclose(corner_normals.reshape(-1, 3), np.stack([n[:, 0], -n[:, 2], n[:, 1]], 1), atol=1e-4)

    # materials: one slot per label group material, each a Principled BSDF with textures
    assert [m.name for m in obj.data.materials] == ["IMG_0042_skin", "IMG_0042_clothing"]
    for mat in obj.data.materials:
        nodes = mat.node_tree.nodes
        bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
        albedo = bsdf.inputs["Base Color"].links[0].from_node
        assert albedo.type == "TEX_IMAGE" and albedo.image.packed_file is not None
        assert tuple(albedo.image.size) == (8, 8)
        normal_map = bsdf.inputs["Normal"].links[0].from_node
        assert normal_map.type == "NORMAL_MAP"
        assert normal_map.inputs["Color"].links[0].from_node.image.colorspace_settings.name == "Non-Color"
    mat_index = np.empty(len(obj.data.polygons), np.int32)
    obj.data.polygons.foreach_get("material_index", mat_index)
    assert set(mat_index.tolist()) == {0, 1}

    # labels: one vertex group per body part, holding exactly that part's vertices
    avatar = read_avatar(avatar_dir)
    for label, name in LABELS.items():
        group = obj.vertex_groups[name]
        members = {v.index for v in obj.data.vertices if any(g.group == group.index for g in v.groups)}
        assert members == set(np.flatnonzero(avatar.mesh.labels == label).tolist())

    # armature: names, parents, heads in Blender axes
    bones = result.armature_object.data.bones
    assert [b.name for b in bones] == [b[0] for b in TEST_BONES]
    for name, parent, head, _tail in TEST_BONES:
        assert (bones[name].parent.name if bones[name].parent else None) == parent
        np.testing.assert_allclose(bones[name].head_local, [head[0], -head[2], head[1]], atol=1e-5)
    assert obj.parent == result.armature_object
    assert obj.modifiers["Armature"].object == result.armature_object


def test_skin_weights_are_the_engines_and_normalized(tmp_path, empty_scene):
    result = import_avatar(write_test_avatar(tmp_path / "avatar"), name="p")
    obj = result.mesh_object
    positions, *_ = grid_body(12, 16)
    joints, weights = skin_weights(positions)
    bone_names = [b[0] for b in TEST_BONES]
    dense = np.zeros((len(positions), len(bone_names)))
    np.add.at(dense, (np.arange(len(positions))[:, None].repeat(4, 1), joints), weights)
    got = np.zeros_like(dense)
    group_bone = {g.index: bone_names.index(g.name) for g in obj.vertex_groups if g.name in bone_names}
    for v in obj.data.vertices:
        for g in v.groups:
            if g.group in group_bone:
                got[v.index, group_bone[g.group]] = g.weight
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-6)
    assert np.abs(got - dense).max() <= 2.0 / 1024 + 1e-6


def test_animation_becomes_an_action_that_poses_the_rig(tmp_path, empty_scene):
    result = import_avatar(write_test_avatar(tmp_path / "avatar"), name="p")
    arm = result.armature_object
    assert result.action is not None and arm.animation_data.action == result.action
    scene = empty_scene
    fps = scene.render.fps / scene.render.fps_base
    scene.frame_set(int(round(scene.frame_start + fps)))  # t = 1 s: the last key
    bpy.context.view_layer.update()
    pose = arm.pose.bones
    # upper_arm.L turned 90 degrees about avatar +Z (Blender -Y): its tail swings from +X to +Z (up)
    head = np.array(pose["upper_arm.L"].head)
    tail = np.array(pose["upper_arm.L"].tail)
    direction = (tail - head) / np.linalg.norm(tail - head)
    np.testing.assert_allclose(direction, [0, 0, 1], atol=1e-4)
    # the spine moved up 10 cm and carried its children
    np.testing.assert_allclose(np.array(pose["spine"].head), [0, 0, 1.0], atol=1e-4)
    np.testing.assert_allclose(np.array(pose["thigh.L"].head), [0.1, 0, 1.0], atol=1e-4)
    # the skinned mesh follows: the evaluated mesh moved up where it is weighted to the spine
    evaluated = result.mesh_object.evaluated_get(bpy.context.evaluated_depsgraph_get())
    moved = np.array([v.co for v in evaluated.data.vertices]) - mesh_positions(result.mesh_object)
    assert moved[:, 2].max() > 0.05


def test_failed_import_leaves_the_scene_as_it_was(tmp_path, empty_scene, monkeypatch):
    avatar_dir = write_test_avatar(tmp_path / "avatar")
    before = scene_snapshot()
    from sapiens_blender.blender import armature

    def broken(*args, **kwargs):
        raise RuntimeError("binding failed")

    monkeypatch.setattr(armature, "bind_skin", broken)
    with pytest.raises(RuntimeError, match="binding failed"):
        import_avatar(avatar_dir, name="half")
    assert scene_snapshot() == before
    assert bpy.context.object is None or bpy.context.object.mode == "OBJECT"


def test_bad_avatar_is_refused_before_anything_is_made(tmp_path, empty_scene):
    avatar_dir = write_test_avatar(tmp_path / "avatar", rig=False)
    data = bytearray((avatar_dir / "avatar.glb").read_bytes())
    (avatar_dir / "avatar.glb").write_bytes(bytes(data[: len(data) // 2]))
    before = scene_snapshot()
    with pytest.raises(AvatarError, match="avatar.glb"):
        import_avatar(avatar_dir)
    assert scene_snapshot() == before


def test_avatar_without_rig_has_no_armature(tmp_path, empty_scene):
    result = import_avatar(write_test_avatar(tmp_path / "avatar", rig=False), name="plain")
    assert result.armature_object is None and result.action is None
    assert not result.mesh_object.modifiers
    assert "Torso" in result.mesh_object.vertex_groups
    meta = json.loads((tmp_path / "avatar" / "avatar.json").read_text())
    assert meta["labels"]["groups"]["clothing"] == [22]
