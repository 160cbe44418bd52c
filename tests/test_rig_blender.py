"""A rig for a synthetic person in Blender: Rigify names and parents, Rigify Generate runs,
the skinned mesh deforms sensibly when a bone rotates; glTF skin loads as one armature."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from engine.rig import rig_from_joints  # noqa: E402
from engine.rig.lift import lift_joints  # noqa: E402
from engine.rig.pose import forward_kinematics, rotation_between, skin_vertices  # noqa: E402
from engine.rig.skeleton import load_convention  # noqa: E402

CAM_TO_AVATAR = np.diag([1.0, -1.0, -1.0, 1.0])


def sample_rig(shared_samples, person="person_102", rest_pose="photo"):
    import trimesh
    d = shared_samples / person
    maps = np.load(d / "gt_maps.npz")
    kp = np.array(json.loads((d / "keypoints.json").read_text())["keypoints"], np.float64)
    mesh = trimesh.load(d / "gt_mesh.ply", process=False)
    v_cam = np.asarray(mesh.vertices)
    uv = v_cam @ maps["K"].T
    col = np.clip((uv[:, 0] / uv[:, 2]).astype(int), 0, maps["seg"].shape[1] - 1)
    row = np.clip((uv[:, 1] / uv[:, 2]).astype(int), 0, maps["seg"].shape[0] - 1)
    labels = maps["seg"][row, col]          # front-projected labels (back vertices share them)
    joints = lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"])
    verts = v_cam @ CAM_TO_AVATAR[:3, :3].T
    rig = rig_from_joints(joints, verts, np.asarray(mesh.faces), labels, CAM_TO_AVATAR, rest_pose=rest_pose)
    return rig, verts, labels


def build_metarig(skeleton: dict):
    """The armature from skeleton.json with edit bones (Blender's Z-up: (x, y, z) -> (x, -z, y))."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.preferences.addon_enable(module="rigify")
    arm = bpy.data.armatures.new("metarig")
    obj = bpy.data.objects.new("metarig", arm)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    for b in skeleton["bones"]:
        eb = arm.edit_bones.new(b["name"])
        eb.head = (b["head"][0], -b["head"][2], b["head"][1])
        eb.tail = (b["tail"][0], -b["tail"][2], b["tail"][1])
        eb.roll = b["roll"]
        eb.use_deform = b["deform"]
    for b in skeleton["bones"]:
        if b["parent"]:
            arm.edit_bones[b["name"]].parent = arm.edit_bones[b["parent"]]
            arm.edit_bones[b["name"]].use_connect = b["connect"]
    bpy.ops.object.mode_set(mode="OBJECT")
    collections = {}
    for c in skeleton.get("rigify_collections", []):
        bc = arm.collections.new(c["name"])
        bc.rigify_ui_row, bc.rigify_color_set_id = c["ui_row"], c["color_set_id"]
        collections[c["name"]] = bc
    for b in skeleton["bones"]:
        pb = obj.pose.bones[b["name"]]
        if b.get("collection") in collections:
            collections[b["collection"]].assign(pb)
        pb.rigify_type = b.get("rigify_type", "")
        for key, value in b.get("rigify_parameters", {}).items():
            setattr(pb.rigify_parameters, key, value)
    return obj


@pytest.fixture(scope="module")
def rig102(shared_samples):
    return sample_rig(shared_samples)


def test_armature_has_rigify_names_parents_and_rolls(rig102):
    rig, _, _ = rig102
    obj = build_metarig(rig.skeleton)
    table = {b["name"]: b["parent"] for b in load_convention("rigify")["bones"]}
    bones = obj.data.bones
    assert set(bones.keys()) == set(table)
    for name, parent in table.items():
        assert (bones[name].parent.name if bones[name].parent else None) == parent, name
    for core in ("spine.006", "upper_arm.L", "f_index.03.R", "thumb.01.L", "heel.02.R", "jaw", "eye.L"):
        assert core in bones
    # Blender's bone axes equal skeleton.json's z_axis (roll maths agree with Blender)
    for b in rig.skeleton["bones"]:
        z = np.array(bones[b["name"]].matrix_local)[:3, 2]   # armature-space rest axes
        want = np.array([b["z_axis"][0], -b["z_axis"][2], b["z_axis"][1]])
        assert np.linalg.norm(z - want) < 1e-3, b["name"]


def test_fingers_curl_toward_the_palm_on_both_hands(rig102):
    rig, _, _ = rig102
    bones = {b["name"]: b for b in rig.skeleton["bones"]}
    for s in "LR":
        wrist = np.array(bones[f"hand.{s}"]["head"])
        palm_centre = np.mean([bones[f"palm.0{i}.{s}"]["tail"] for i in range(1, 5)], axis=0)
        for f in ("f_index", "f_middle", "f_ring", "f_pinky"):
            b = bones[f"{f}.01.{s}"]
            head, tail, z = (np.array(b[k]) for k in ("head", "tail", "z_axis"))
            y = (tail - head) / np.linalg.norm(tail - head)
            x = np.cross(y, z)
            # +X rotation by 60 degrees moves the tip along +Z, the palm side on both hands
            c, s60 = np.cos(np.radians(60)), np.sin(np.radians(60))
            tip = head + np.linalg.norm(tail - head) * (c * y + s60 * np.cross(x, y))
            assert z @ (tip - tail) > 0
    # mirror the person: the right hand's axes must be the mirror image of the left hand's
    from engine.rig.joints import mirror_name
    from engine.rig.skeleton import build_skeleton
    joints = {k: np.asarray(v) for k, v in rig.skeleton["joints3d"]["positions"].items()}
    mirrored = {mirror_name(k): v * [-1, 1, 1] for k, v in joints.items()}
    a = {b["name"]: b for b in build_skeleton(joints)["bones"]}
    m = {b["name"]: b for b in build_skeleton(mirrored)["bones"]}
    for name in ("f_index.01.L", "f_pinky.02.L", "thumb.01.L", "forearm.L", "shin.L", "hand.L"):
        twin = name[:-1] + "R"
        assert np.allclose(np.array(a[name]["z_axis"]) * [-1, 1, 1], m[twin]["z_axis"], atol=1e-4), name
        assert abs(a[name]["roll"] + m[twin]["roll"]) < 1e-3, name   # Blender's symmetric rolls


def test_rigify_generate_runs(rig102):
    rig, _, _ = rig102
    build_metarig(rig.skeleton)
    bpy.ops.pose.rigify_generate()
    generated = [o for o in bpy.data.objects if o.type == "ARMATURE" and o.name != "metarig"]
    assert len(generated) == 1
    names = set(generated[0].data.bones.keys())
    assert {"DEF-upper_arm.L", "DEF-thigh.R", "DEF-spine", "DEF-f_index.01.L"} <= names


def test_weights_respect_body_parts_and_mesh_deforms_sensibly(rig102):
    rig, verts, labels = rig102
    names = rig.joint_names
    part = {b["name"]: (b["part"], b["side"]) for b in rig.skeleton["bones"]}
    assert np.allclose(rig.weights.sum(1), 1, atol=1e-5)
    assert rig.weights_joints.shape == (len(verts), 4)
    # an arm vertex never follows a leg bone, a leg vertex never an arm bone
    used = rig.weights > 1e-4
    bone_part = np.array([part[n][0] for n in names])
    arm_vertex = np.isin(labels, [6, 7, 11, 15, 16, 20])
    leg_vertex = np.isin(labels, [5, 8, 9, 10, 12, 14, 17, 18, 19, 21])
    follows = bone_part[rig.weights_joints]
    assert not (np.isin(follows, ["thigh", "shin", "foot", "toe"]) & used)[arm_vertex].any()
    assert not (np.isin(follows, ["upper_arm", "forearm", "hand", "palm", "finger"]) & used)[leg_vertex].any()
    # bend the left elbow by 60 degrees: only the left forearm/hand side moves, nothing jumps
    from engine.rig import deform_bones
    from engine.rig.skeleton import skeleton_arrays
    dnames, index, parents = deform_bones(rig.skeleton)
    _, _, heads, tails, zs = skeleton_arrays(rig.skeleton)
    heads, tails, zs = heads[index], tails[index], zs[index]
    fa = dnames.index("forearm.L")
    y = (tails[fa] - heads[fa]) / np.linalg.norm(tails[fa] - heads[fa])
    bent = np.cos(np.radians(60)) * y + np.sin(np.radians(60)) * zs[fa]
    local = np.tile(np.eye(3), (len(dnames), 1, 1))
    local[fa] = rotation_between(y, bent)
    R, new_heads = forward_kinematics(heads, tails, parents, local)
    moved = skin_vertices(verts, rig.weights_joints, rig.weights, heads, R, new_heads)
    shift = np.linalg.norm(moved - verts, axis=1)
    not_left_arm = np.isin(labels, [3, 4, 5, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21])  # labelled elsewhere
    assert shift[not_left_arm].max() < 1e-6
    forearm_len = np.linalg.norm(tails[fa] - heads[fa])
    # every vertex stays within reach of the forearm's arc (no vertex thrown across the body)
    assert shift.max() < 2.2 * forearm_len
    hand = labels == 6
    assert np.median(shift[hand]) > 0.5 * forearm_len


def test_glb_skin_imports_as_one_armature(rig102, tmp_path):
    from engine.formats.gltf import GltfBuilder, add_skin
    from engine.rig.describe import skeleton_description, skin_description
    import trimesh  # noqa: F401
    rig, verts, _ = rig102
    builder = GltfBuilder()
    faces = np.arange(len(verts) - len(verts) % 3).reshape(-1, 3)[:1000]
    mesh = builder.add_mesh("body", verts, indices=faces)
    node = builder.add_node("body", mesh=mesh, root=True)
    add_skin(builder, node, skeleton_description(rig.skeleton), skin_description(rig))
    path = builder.save(tmp_path / "rig.glb")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(path))
    arms = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    assert len(arms) == 1
    assert set(rig.joint_names) <= set(arms[0].data.bones.keys())
    body = [o for o in bpy.data.objects if o.type == "MESH"][0]
    assert set(rig.joint_names) <= {g.name for g in body.vertex_groups}
