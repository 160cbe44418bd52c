"""USD round trip through real Blender (bpy.ops.wm.usd_import): the avatar's armature has every
joint, its vertex groups carry the engine's weights, its materials read the textures; a motion's
bones are where the engine put them on sampled frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytest.importorskip("pxr")

from engine.avatar.build import build_avatar  # noqa: E402
from engine.bundle import write_bundle  # noqa: E402
from engine.formats import WRITERS  # noqa: E402
from engine.formats.usd import prim_names  # noqa: E402
from engine.rig.describe import skeleton_description  # noqa: E402
from test_avatar_build import FAST, glb_arrays, sample_bundle  # noqa: E402

# avatar frame (+Y up) -> Blender's (+Z up): what the importer's Y-up root rotation does
AVATAR_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _import(path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.ops.wm.usd_import(filepath=str(path)) == {"FINISHED"}
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    assert len(armatures) == 1
    return armatures[0]


def test_avatar_imports_with_every_joint_its_weights_and_textures(shared_samples, tmp_path):
    bundle = write_bundle(sample_bundle(shared_samples), tmp_path / "bundle")
    out = build_avatar(bundle, tmp_path / "avatar", rig="rigify", formats="glb,usd", **FAST)
    armature = _import(out / "avatar.usdc")
    skeleton = skeleton_description(json.loads((out / "skeleton.json").read_text()))
    names = prim_names(skeleton.names)
    assert sorted(armature.data.bones.keys()) == sorted(names)
    for i, parent in enumerate(skeleton.parents):
        bone = armature.data.bones[names[i]]
        assert (bone.parent is None) if parent < 0 else bone.parent.name == names[parent]
    heads = np.array([armature.matrix_world @ armature.data.bones[n].head_local for n in names])
    np.testing.assert_allclose(heads, skeleton.heads @ AVATAR_TO_BLENDER.T, atol=1e-4)

    body = next(o for o in bpy.data.objects if o.type == "MESH")
    glb = glb_arrays(out / "avatar.glb")
    gltf = glb["gltf"]
    blob = gltf.binary_blob()

    def accessor(index, dtype):
        a = gltf.accessors[index]
        view = gltf.bufferViews[a.bufferView]
        return np.frombuffer(blob, dtype, a.count * 4, view.byteOffset + (a.byteOffset or 0)).reshape(a.count, 4)

    attrs = gltf.meshes[0].primitives[0].attributes
    joints, weights = accessor(attrs.JOINTS_0, np.uint16), accessor(attrs.WEIGHTS_0, np.float32)
    assert len(body.data.vertices) == len(joints)
    expected = np.zeros((len(joints), len(names)))
    np.add.at(expected, (np.repeat(np.arange(len(joints)), 4), joints.reshape(-1)), weights.reshape(-1))
    group_joint = {g.index: names.index(g.name) for g in body.vertex_groups}
    got = np.zeros_like(expected)
    for v in body.data.vertices:
        for g in v.groups:
            got[v.index, group_joint[g.group]] = g.weight
    assert np.abs(got - expected).max() < 1e-3

    assert [m.name for m in body.data.materials] == json.loads((out / "avatar.json").read_text())["material_slots"]
    for material in body.data.materials:
        links = {(l.to_node.type, l.to_socket.name): l.from_node for l in material.node_tree.links}
        albedo = links[("BSDF_PRINCIPLED", "Base Color")]
        assert albedo.type == "TEX_IMAGE" and albedo.image.filepath.endswith("textures/albedo.png")
        assert albedo.image.colorspace_settings.name == "sRGB"
        normal_map = links[("BSDF_PRINCIPLED", "Normal")]
        assert normal_map.type == "NORMAL_MAP"
        normal = links[("NORMAL_MAP", "Color")]
        assert normal.image.filepath.endswith("textures/normal.png") and normal.image.colorspace_settings.name == "Non-Color"
        assert albedo.image.size[0] > 0  # the file was found and loaded


def test_motion_bones_follow_the_engine_within_a_millimetre(shared_samples, tmp_path):
    from engine.motion.animate import motion_from_tracks, motion_scene
    from engine.rig.lift import lift_joints

    d = shared_samples / "person_101"
    maps = np.load(d / "gt_maps.npz")
    kp = np.array(json.loads((d / "keypoints.json").read_text())["keypoints"], np.float64)
    joints = lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"])
    base = joints.positions * [1, -1, -1]
    T = 16
    rng = np.random.default_rng(1)
    tracks = np.repeat(base[None], T, axis=0) + rng.normal(0, 0.02, (T, *base.shape))
    tracks += (0.03 * np.arange(T))[:, None, None] * np.array([1.0, 0.0, 0.4])
    motion, _ = motion_from_tracks(joints.names, tracks, np.ones(tracks.shape[:2], bool), 25.0, height=joints.height)
    scene = motion_scene(motion)
    WRITERS["usd"].motion(scene, tmp_path)
    armature = _import(tmp_path / "animation.usdc")
    names = prim_names(scene.skeleton.names)
    assert len(armature.pose.bones) == len(names)
    world = motion.world()
    blender_scene = bpy.context.scene
    assert (blender_scene.frame_start, blender_scene.frame_end) == (0, T - 1)
    for frame in (0, 5, 11, T - 1):
        blender_scene.frame_set(frame)
        got = np.array([armature.matrix_world @ armature.pose.bones[n].head for n in names])
        assert np.abs(got - world[frame, :, :3, 3] @ AVATAR_TO_BLENDER.T).max() < 1e-3
