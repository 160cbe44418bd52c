"""Apply Motion to Armature in real bpy with a real engine: a synthetic walk onto a Mixamo-named
character made here (T-pose rest, other rolls, same or other proportions, a skinned mesh), onto a
Rigify metarig, and onto the avatar's own rig; hands and feet follow the source (issue 12's
bounds: same proportions < 1 cm mean, other proportions bone directions < 2 degrees mean)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_support import addon, rigify_avatar  # noqa: E402,F401  (fixtures)
from mathutils import Vector  # noqa: E402

from engine.motion.retarget_sources import read_motion  # noqa: E402
from engine.motion.retarget_synthetic import character, humanoid_parts, write_motion_dir  # noqa: E402

TO_BLENDER = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])      # avatar (Y up) -> Blender (Z up)
FRAMES = 12
POSITION_BOUND_CM = 1.0
DIRECTION_BOUND_DEG = 2.0
EXTREMITIES = ("leftHand", "rightHand", "leftFoot", "rightFoot")
CHAINS = (("leftUpperArm", "leftLowerArm"), ("leftLowerArm", "leftHand"), ("rightUpperArm", "rightLowerArm"),
          ("rightLowerArm", "rightHand"), ("leftUpperLeg", "leftLowerLeg"), ("leftLowerLeg", "leftFoot"),
          ("rightUpperLeg", "rightLowerLeg"), ("rightLowerLeg", "rightFoot"))


@pytest.fixture(scope="module")
def walk_dir(tmp_path_factory):
    return write_motion_dir(tmp_path_factory.mktemp("motion") / "walk", "walk", FRAMES)


def walk_on_skeleton(walk_dir, skeleton_json, out):
    """The synthetic walk carried onto another skeleton by the engine and written as an `animate`
    output with that skeleton as its rest: a source with the character's own proportions, so hands
    and feet must land where its joints are (issue 12's same-proportions bound)."""
    from engine.formats.scene import matrix_to_quaternion
    from engine.motion.retarget import plan_retarget, retarget
    from engine.motion.retarget_sources import load_target

    source = read_motion(walk_dir)
    skeleton, _ = load_target(skeleton_json)
    result = retarget(plan_retarget(source.skeleton, skeleton), source.world, source.fps)
    quats = matrix_to_quaternion(result.local()[..., :3, :3])
    (out / "frames").mkdir(parents=True)
    (out / "skeleton.json").write_text(Path(skeleton_json).read_text())
    (out / "animation.json").write_text(json.dumps({"format": "sapiens-animation", "version": "1.0",
                                                    "fps": source.fps, "frames": len(quats)}))
    for t in range(len(quats)):
        bones = {n: {"rotation": quats[t, b].tolist()} for b, n in enumerate(skeleton.names)}
        (out / "frames" / f"{t:06d}.json").write_text(json.dumps(
            {"bones": bones, "root_position": result.world[t, 0, :3, 3].tolist()}))
    return out


@pytest.fixture(scope="module")
def avatar_walk_dir(tmp_path_factory, walk_dir, rigify_avatar):
    return walk_on_skeleton(walk_dir, rigify_avatar / "skeleton.json", tmp_path_factory.mktemp("avatar_walk") / "walk")


def make_armature(skeleton, name: str):
    """An armature object from an engine RestSkeleton (avatar frame), rolls included."""
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    heads = skeleton.heads @ TO_BLENDER.T
    tails = skeleton.tails @ TO_BLENDER.T
    zs = skeleton.rest[:, :3, 2] @ TO_BLENDER.T
    bones = []
    for b, n in enumerate(skeleton.names):
        eb = data.edit_bones.new(n)
        eb.head, eb.tail = Vector(heads[b]), Vector(tails[b])
        eb.align_roll(Vector(zs[b]))
        if skeleton.parents[b] >= 0:
            eb.parent = bones[skeleton.parents[b]]
        bones.append(eb)
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def skin_hands(obj, bones: list[str]):
    """A mesh with one small triangle at each named bone's head, weighted fully to it."""
    heads = [obj.data.bones[b].head_local for b in bones]
    verts = [tuple(h + Vector(o)) for h in heads for o in ((0, 0, 0), (0.01, 0, 0), (0, 0.01, 0))]
    mesh = bpy.data.meshes.new("skin")
    mesh.from_pydata(verts, [], [(3 * i, 3 * i + 1, 3 * i + 2) for i in range(len(bones))])
    skin = bpy.data.objects.new("skin", mesh)
    bpy.context.scene.collection.objects.link(skin)
    for i, b in enumerate(bones):
        group = skin.vertex_groups.new(name=b)
        group.add([3 * i, 3 * i + 1, 3 * i + 2], 1.0, "REPLACE")
    skin.modifiers.new("Armature", "ARMATURE").object = obj
    skin.parent = obj
    return skin


def apply(obj, walk_dir):
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 30, 1.0    # one key per scene frame
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    bpy.context.scene.sapiens_motion_transfer.motion_dir = str(walk_dir)
    assert bpy.ops.sapiens.apply_motion() == {"FINISHED"}


def pose_heads(obj, frames: int) -> dict[str, np.ndarray]:
    """Bone head world positions per frame (Blender space)."""
    scene = bpy.context.scene
    out = {b.name: np.zeros((frames, 3)) for b in obj.pose.bones}
    for t in range(frames):
        scene.frame_set(scene.frame_start + t)
        for pb in obj.pose.bones:
            out[pb.name][t] = np.array(obj.matrix_world @ pb.head)
    return out


def source_heads(walk_dir) -> tuple[dict[str, np.ndarray], object]:
    source = read_motion(walk_dir)
    parts = humanoid_parts(source.skeleton)
    return {p: source.world[:, b, :3, 3] @ TO_BLENDER.T for p, b in parts.items()}, source


def direction_errors(heads, parts_bones, src, chains=CHAINS) -> list[float]:
    out = []
    for a, b in chains:
        dt = heads[parts_bones[b]] - heads[parts_bones[a]]
        ds = src[b] - src[a]
        cos = (dt * ds).sum(-1) / np.linalg.norm(dt, axis=-1) / np.linalg.norm(ds, axis=-1)
        out.append(float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean()))
    return out


def test_mixamo_character_same_proportions_follows_within_a_centimetre(addon, walk_dir):
    src, source = source_heads(walk_dir)
    target = character(source.skeleton, rest_pose="tpose", roll_seed=9, names="mixamo")
    obj = make_armature(target, "mixamo_same")
    tp = {p: target.names[b] for p, b in humanoid_parts(target).items()}
    skin = skin_hands(obj, [tp["leftHand"], tp["rightFoot"]])
    before = len(bpy.data.actions)
    apply(obj, walk_dir)
    assert len(bpy.data.actions) == before + 1 and obj.animation_data.action is not None
    # the bone map the engine used is on the armature, editable
    items = {i.bone: i.part for i in obj.sapiens_bone_map}
    assert items["mixamorig:LeftArm"] == "leftUpperArm" and items["mixamorig:Hips"] == "hips"
    heads = pose_heads(obj, FRAMES)
    for part in EXTREMITIES:
        err = np.linalg.norm(heads[tp[part]] - src[part], axis=-1) * 100
        assert err.mean() < POSITION_BOUND_CM, (part, err.mean())
    # the mesh moves with it: the hand's triangle is where the hand bone is
    scene = bpy.context.scene
    scene.frame_set(scene.frame_start + FRAMES - 1)
    evaluated = skin.evaluated_get(bpy.context.evaluated_depsgraph_get())
    vertex = np.array(skin.matrix_world @ evaluated.data.vertices[0].co)
    assert np.linalg.norm(vertex - src["leftHand"][-1]) < 0.01
    rest_vertex = np.array(skin.matrix_world @ skin.data.vertices[0].co)
    assert np.linalg.norm(vertex - rest_vertex) > 0.2          # and it did move from the T-pose


def test_mixamo_character_other_proportions_keeps_directions(addon, walk_dir):
    src, source = source_heads(walk_dir)
    target = character(source.skeleton, rest_pose="tpose", roll_seed=3, scale=1.2, arm_scale=1.15, names="mixamo")
    obj = make_armature(target, "mixamo_tall")
    apply(obj, walk_dir)
    heads = pose_heads(obj, FRAMES)
    tp = {p: target.names[b] for p, b in humanoid_parts(target).items()}
    errors = direction_errors(heads, tp, src)
    assert np.mean(errors) < DIRECTION_BOUND_DEG and max(errors) < DIRECTION_BOUND_DEG, errors
    # the hips travel 1.2 x as far as the source's
    travel_t = heads[tp["hips"]][-1] - heads[tp["hips"]][0]
    travel_s = src["hips"][-1] - src["hips"][0]
    np.testing.assert_allclose(travel_t, 1.2 * travel_s, atol=2e-3)


def test_rigify_metarig_receives_the_walk(addon, walk_dir, tmp_path):
    import addon_utils

    addon_utils.enable("rigify", default_set=True, handle_error=None)
    bpy.ops.object.armature_human_metarig_add()
    obj = bpy.context.active_object
    src, _ = source_heads(walk_dir)
    apply(obj, walk_dir)
    items = {i.bone: i.part for i in obj.sapiens_bone_map}
    assert items["upper_arm.L"] == "leftUpperArm" and items["spine"] == "hips" and items["f_index.01.L"] == "leftIndexProximal"
    heads = pose_heads(obj, FRAMES)
    parts = {p: b for b, p in items.items() if p}
    errors = direction_errors(heads, parts, src)
    assert np.mean(errors) < DIRECTION_BOUND_DEG and max(errors) < DIRECTION_BOUND_DEG, errors
    # the walk with the metarig's own proportions (its rest bones in the avatar frame as the motion's
    # skeleton): hands, feet and hips land on the source's
    from sapiens_blender.motion_transfer import armature_skeleton

    doc = armature_skeleton(obj)
    for bone in doc["bones"]:
        for key in ("head", "tail", "z_axis"):
            bone[key] = (TO_BLENDER.T @ np.array(bone[key])).tolist()
    (tmp_path / "metarig.json").write_text(json.dumps(doc))
    same_dir = walk_on_skeleton(walk_dir, tmp_path / "metarig.json", tmp_path / "metarig_walk")
    apply(obj, same_dir)
    same, _ = source_heads(same_dir)
    heads = pose_heads(obj, FRAMES)
    for part in EXTREMITIES + ("hips",):
        err = np.linalg.norm(heads[parts[part]] - same[part], axis=-1) * 100
        assert err.mean() < POSITION_BOUND_CM, (part, err.mean())


def test_edited_map_and_presets(addon, walk_dir, tmp_path):
    _, source = source_heads(walk_dir)
    target = character(source.skeleton, rest_pose="tpose", names="mixamo")
    obj = make_armature(target, "edited")
    apply(obj, walk_dir)
    scene = bpy.context.scene
    scene.sapiens_motion_transfer.preset_name = "mixamo test"
    assert bpy.ops.sapiens.save_bone_map() == {"FINISHED"}
    from sapiens_blender.motion_transfer import presets_dir

    saved = json.loads((presets_dir() / "mixamo test.json").read_text())
    assert saved["bones"]["mixamorig:LeftArm"] == "leftUpperArm"
    # clear the left arm's part: the engine leaves it at rest on the next application
    for item in obj.sapiens_bone_map:
        if item.bone == "mixamorig:LeftForeArm":
            item.part = ""
    apply(obj, walk_dir)
    fcurve_paths = {fc.data_path for fc in _fcurves(obj.animation_data.action)}
    assert 'pose.bones["mixamorig:LeftForeArm"].rotation_quaternion' not in fcurve_paths
    assert 'pose.bones["mixamorig:RightForeArm"].rotation_quaternion' in fcurve_paths
    assert bpy.ops.sapiens.load_bone_map(preset=str(presets_dir() / "mixamo test.json")) == {"FINISHED"}
    assert {i.bone: i.part for i in obj.sapiens_bone_map}["mixamorig:LeftForeArm"] == "leftLowerArm"


def test_bad_motion_folder_is_reported(addon, tmp_path):
    bpy.ops.object.armature_add()
    obj = bpy.context.active_object
    bpy.context.scene.sapiens_motion_transfer.motion_dir = str(tmp_path)
    with pytest.raises(RuntimeError, match="not an animation folder"):
        bpy.ops.sapiens.apply_motion()
    assert obj.animation_data is None


def _fcurves(action):
    if hasattr(action, "layers") and action.layers:
        return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]
    return list(action.fcurves)


def test_panel_draws_the_motion_box_for_a_selected_armature(addon, walk_dir):
    from types import SimpleNamespace

    from sapiens_blender.panel import SAPIENS_PT_main

    drawn = []

    class Layout:
        def prop(self, data, name, **_):
            assert name in data.bl_rna.properties, name
            drawn.append(name)

        def operator(self, idname, **_):
            group, name = idname.split(".")
            assert hasattr(getattr(bpy.ops, group), name), idname
            drawn.append(idname)
            return SimpleNamespace()

        def template_list(self, list_type, _id, data, prop, active_data, active_prop, **_):
            assert list_type in dir(bpy.types) and prop in data.bl_rna.properties
            drawn.append(list_type)

        def __getattr__(self, name):
            return lambda *a, **k: self

    _, source = source_heads(walk_dir)
    obj = make_armature(character(source.skeleton, names="mixamo"), "panel")
    SAPIENS_PT_main.draw(SimpleNamespace(layout=Layout()), bpy.context)
    assert {"motion_dir", "sapiens.apply_motion", "sapiens.detect_bone_map", "sapiens.save_bone_map"} <= set(drawn)
    apply(obj, walk_dir)
    drawn.clear()
    SAPIENS_PT_main.draw(SimpleNamespace(layout=Layout()), bpy.context)
    assert "SAPIENS_UL_bone_map" in drawn and "feet" in drawn       # the one Feet option, animate's


def test_the_avatars_own_rig_and_its_mesh_receive_the_walk(addon, walk_dir, avatar_walk_dir, rigify_avatar):
    from blender_support import evaluated_positions

    assert bpy.ops.sapiens.import_avatar(directory=str(rigify_avatar)) == {"FINISHED"}
    rig, mesh = bpy.data.objects["sample_rig"], bpy.data.objects["sample"]
    src, _ = source_heads(walk_dir)
    rest = evaluated_positions(mesh)
    apply(rig, walk_dir)
    parts = {i.part: i.bone for i in rig.sapiens_bone_map if i.part}
    assert parts["leftUpperArm"] == "upper_arm.L" and parts["hips"] == "spine"
    heads = pose_heads(rig, FRAMES)
    errors = direction_errors(heads, parts, src)
    assert np.mean(errors) < DIRECTION_BOUND_DEG and max(errors) < DIRECTION_BOUND_DEG, errors
    # the mesh moves with the hands: the left hand's vertices (by body-part label) travel with hand.L
    scene = bpy.context.scene
    labels = {e["name"]: e["id"] for e in json.loads((rigify_avatar / "avatar.json").read_text())["labels"]}
    values = np.empty(len(mesh.data.vertices), np.int32)
    mesh.data.attributes["sapiens_label"].data.foreach_get("value", values)
    hand_vertices = np.flatnonzero(values == labels["Left_Hand"])
    assert len(hand_vertices) > 10
    for t in (FRAMES // 2, FRAMES - 1):
        scene.frame_set(scene.frame_start + t)
        now = evaluated_positions(mesh)[hand_vertices]
        # where hand.L alone would carry them (rigid with the bone)
        carry = np.array(rig.matrix_world @ rig.pose.bones["hand.L"].matrix @ rig.data.bones["hand.L"].matrix_local.inverted()
                         @ rig.matrix_world.inverted())
        rigid = rest[hand_vertices] @ carry[:3, :3].T + carry[:3, 3]
        assert np.linalg.norm(now - rigid, axis=1).mean() < 0.02, t
        assert np.linalg.norm(now - rest[hand_vertices], axis=1).mean() > 0.1
    # the walk with the avatar's own proportions: hands, feet and hips land on the source's
    apply(rig, avatar_walk_dir)
    same, _ = source_heads(avatar_walk_dir)
    heads = pose_heads(rig, FRAMES)
    for part in EXTREMITIES + ("hips",):
        err = np.linalg.norm(heads[parts[part]] - same[part], axis=-1) * 100
        assert err.mean() < POSITION_BOUND_CM, (part, err.mean())


def test_generated_rigify_rig_takes_the_walk_on_its_fk_controls(addon, walk_dir, avatar_walk_dir, rigify_avatar):
    """Limbs and torso: the torso control travels and turns with the hips, the FK spine bends
    (spine_fk the pelvis, spine_fk.001-.003 up the back), the limbs on FK; controls hanging under
    constraint-driven MCH bones are keyed where the engine means them (visual keys)."""
    assert bpy.ops.sapiens.import_avatar(directory=str(rigify_avatar)) == {"FINISHED"}
    metarig = bpy.data.objects["sample_rig"]
    bpy.context.view_layer.objects.active = metarig
    assert bpy.ops.pose.rigify_generate() == {"FINISHED"}
    rig = metarig.data.rigify_target_rig
    src, _ = source_heads(walk_dir)
    apply(rig, walk_dir)
    parts = {i.part: i.bone for i in rig.sapiens_bone_map if i.part}
    assert parts["leftUpperArm"] == "upper_arm_fk.L" and parts["body"] == "torso" and parts["hips"] == "spine_fk"
    assert parts["spine"] == "spine_fk.001" and parts["upperChest"] == "spine_fk.003"
    heads = pose_heads(rig, FRAMES)
    deform = {p: "DEF-" + name for p, name in (("leftUpperArm", "upper_arm.L"), ("leftLowerArm", "forearm.L"),
                                               ("leftHand", "hand.L"), ("rightUpperArm", "upper_arm.R"),
                                               ("rightLowerArm", "forearm.R"), ("rightHand", "hand.R"),
                                               ("leftUpperLeg", "thigh.L"), ("leftLowerLeg", "shin.L"),
                                               ("leftFoot", "foot.L"), ("rightUpperLeg", "thigh.R"),
                                               ("rightLowerLeg", "shin.R"), ("rightFoot", "foot.R"))}
    errors = direction_errors(heads, deform, src)
    assert np.mean(errors) < DIRECTION_BOUND_DEG and max(errors) < DIRECTION_BOUND_DEG, errors
    assert all(rig.pose.bones[n]["IK_FK"] == 1.0 for n in ("upper_arm_parent.L", "thigh_parent.R"))
    # the deform bones really move (the mesh follows them), the torso too
    assert np.linalg.norm(heads["DEF-hand.L"] - heads["DEF-hand.L"][0], axis=1).max() > 0.1
    torso = direction_errors(heads, {"a": "DEF-spine", "b": "DEF-spine.003", "c": "DEF-spine.004", "d": "DEF-spine.006"},
                             {k: src[p] for k, p in (("a", "hips"), ("b", "upperChest"), ("c", "neck"), ("d", "head"))},
                             chains=(("a", "b"), ("c", "d")))
    assert max(torso) < DIRECTION_BOUND_DEG, torso
    pelvis = direction_errors(heads, {"a": "DEF-spine", "b": "DEF-spine.001"}, {k: src[p] for k, p in
                                                                              (("a", "hips"), ("b", "spine"))},
                              chains=(("a", "b"),))
    assert max(pelvis) < DIRECTION_BOUND_DEG, pelvis
    paths = {fc.data_path for fc in _fcurves(rig.animation_data.action)}
    assert {'pose.bones["torso"].location', 'pose.bones["torso"].rotation_quaternion',
            'pose.bones["spine_fk"].rotation_quaternion'} <= paths
    # nothing of the baking is left: no holding empties, no extra constraints
    from sapiens_blender.blender.constrained_keys import HOLD

    assert not [o for o in bpy.data.objects if o.name.startswith(HOLD)]
    assert not [c for pb in rig.pose.bones for c in pb.constraints if c.name == HOLD]

    # the walk with the rig's own proportions: the deform bones' hands, feet and pelvis land on the source's
    apply(rig, avatar_walk_dir)
    same, _ = source_heads(avatar_walk_dir)
    heads = pose_heads(rig, FRAMES)
    for part, bone in (("leftHand", "DEF-hand.L"), ("rightHand", "DEF-hand.R"), ("leftFoot", "DEF-foot.L"),
                       ("rightFoot", "DEF-foot.R"), ("hips", "DEF-spine"), ("head", "DEF-spine.006")):
        err = np.linalg.norm(heads[bone] - same[part], axis=-1) * 100
        assert err.mean() < POSITION_BOUND_CM, (part, err.mean())
    assert np.linalg.norm(heads["DEF-spine"][-1] - heads["DEF-spine"][0]) > 0.1       # it travels


def test_an_animate_run_goes_straight_onto_the_chosen_armature(addon, walk_dir, tmp_path):
    """Image Sequence input with 'Animate Onto' set: the engine animates the frames, then the motion
    lands on the armature as an action; no new skeleton is imported."""
    from engine.bundle import write_bundle
    from engine.synthetic import make_sequence, to_bundle

    for i, frame in enumerate(make_sequence(4, "walk", width=192, height=256)):
        write_bundle(to_bundle(frame), tmp_path / "frames" / f"{i:04d}")
    _, source = source_heads(walk_dir)
    obj = make_armature(character(source.skeleton, rest_pose="tpose", names="mixamo"), "onto")
    scene = bpy.context.scene
    scene.sapiens.input_kind = "SEQUENCE"
    scene.sapiens.frames_dir = str(tmp_path / "frames")
    scene.sapiens.animate.smooth = False
    scene.sapiens_motion_transfer.animate_onto = obj
    armatures = set(bpy.data.armatures.keys())
    assert bpy.ops.sapiens.run() == {"FINISHED"}
    assert set(bpy.data.armatures.keys()) == armatures          # nothing new imported
    action = obj.animation_data.action
    assert action is not None and action.name.startswith("onto_retargeted")
    assert {i.bone: i.part for i in obj.sapiens_bone_map}["mixamorig:LeftUpLeg"] == "leftUpperLeg"
    heads = pose_heads(obj, 4)
    assert np.linalg.norm(heads["mixamorig:LeftFoot"][3] - heads["mixamorig:LeftFoot"][0]) > 0.02   # it walks


def test_animate_this_avatar_moves_its_skinned_textured_mesh(addon, rigify_avatar, tmp_path):
    """A built avatar (mesh, textures, rig) plus a frame sequence: one operator on the selected
    avatar mesh animates the frames and moves the avatar."""
    from blender_support import evaluated_positions
    from engine.bundle import write_bundle
    from engine.synthetic import make_sequence, to_bundle

    for i, frame in enumerate(make_sequence(4, "wave", width=192, height=256)):
        write_bundle(to_bundle(frame), tmp_path / "frames" / f"{i:04d}")
    assert bpy.ops.sapiens.import_avatar(directory=str(rigify_avatar)) == {"FINISHED"}
    mesh, rig = bpy.data.objects["sample"], bpy.data.objects["sample_rig"]
    assert mesh.active_material is not None
    scene = bpy.context.scene
    scene.sapiens.input_kind = "PHOTO"
    bpy.context.view_layer.objects.active = mesh
    with pytest.raises(RuntimeError, match="Image Sequence or a Video"):
        bpy.ops.sapiens.animate_avatar()
    scene.sapiens.input_kind = "SEQUENCE"
    scene.sapiens.frames_dir = str(tmp_path / "frames")
    scene.sapiens.animate.smooth = False
    rest = evaluated_positions(mesh)
    assert bpy.ops.sapiens.animate_avatar() == {"FINISHED"}
    assert scene.sapiens_motion_transfer.animate_onto == rig and rig.animation_data.action is not None
    scene.frame_set(scene.frame_start + 3)
    moved = np.linalg.norm(evaluated_positions(mesh) - rest, axis=1)
    assert moved.max() > 0.1          # the raised right arm carries its vertices


def test_the_cli_glb_imports_into_blender_and_plays_the_motion(addon, walk_dir, tmp_path):
    """The engine's animation.glb for a Mixamo-style character (centimetres under a 0.01 armature
    node), imported with Blender's own glTF importer: hands and feet where the source's are."""
    from test_retarget_files import make_mixamo_glb

    from engine.motion.retarget_output import retarget_to_dir

    source = read_motion(walk_dir)
    target = make_mixamo_glb(tmp_path / "mixamo.glb", source.skeleton, scale=1.0, arm_scale=1.0)
    retarget_to_dir(walk_dir, tmp_path / "mixamo.glb", tmp_path / "out", formats=["glb"])
    assert bpy.ops.import_scene.gltf(filepath=str(tmp_path / "out" / "animation.glb")) == {"FINISHED"}
    arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
    assert arm.animation_data.action is not None
    assert any(o.type == "MESH" and o.find_armature() == arm for o in bpy.context.scene.objects)
    scene = bpy.context.scene
    sp, tp = humanoid_parts(source.skeleton), humanoid_parts(target)
    errors = []
    for t in range(len(source.world)):
        f = t * scene.render.fps / scene.render.fps_base / source.fps
        scene.frame_set(int(f), subframe=f - int(f))
        for part in EXTREMITIES:
            got = np.array(arm.matrix_world @ arm.pose.bones[target.names[tp[part]]].head)
            errors.append(np.linalg.norm(got - TO_BLENDER @ source.world[t, sp[part], :3, 3]))
    assert np.mean(errors) * 100 < POSITION_BOUND_CM, np.mean(errors)


def test_apply_motion_is_one_undo_step(addon, walk_dir):
    _, source = source_heads(walk_dir)
    obj = make_armature(character(source.skeleton, rest_pose="tpose", names="mixamo"), "undoable")
    bpy.context.scene.render.fps = 30
    bpy.context.scene.sapiens_motion_transfer.motion_dir = str(walk_dir)
    bpy.ops.ed.undo_push(message="before")
    actions = set(bpy.data.actions.keys())
    # as a button press runs it: with an undo push
    assert bpy.ops.sapiens.apply_motion("EXEC_DEFAULT", True) == {"FINISHED"}
    assert set(bpy.data.actions.keys()) - actions == {"undoable_retargeted"}
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert bpy.data.objects["undoable"].animation_data is None or bpy.data.objects["undoable"].animation_data.action is None
    assert bpy.ops.ed.redo() == {"FINISHED"}
    assert bpy.data.objects["undoable"].animation_data.action.name == "undoable_retargeted"


def test_a_photo_and_a_sequence_give_a_moving_avatar_in_one_step(addon, tmp_path):
    """Avatar + Motion: the photo's avatar (its predictions cached, as a first Build leaves them)
    is built and imported, then the frames are animated onto its rig; its textured mesh moves."""
    from blender_support import evaluated_positions
    from engine.bundle import write_bundle
    from engine.paths import asset
    from engine.synthetic import make_sequence, to_bundle
    from sapiens_blender import user_data
    from sapiens_blender.pipeline import _record_bundle, photo_cache_dir

    sample = asset("sample")
    for i, frame in enumerate(make_sequence(4, "wave", width=192, height=256)):
        write_bundle(to_bundle(frame), tmp_path / "frames" / f"{i:04d}")
    scene = bpy.context.scene
    settings = scene.sapiens
    settings.photo = str(sample / "image.png")
    _record_bundle(photo_cache_dir(user_data.cache_root(), settings.photo), sample, settings.photo)
    options = settings.avatar
    options.detail, options.resolution, options.texture_size, options.rig = "none", "quarter", 512, "rigify"
    settings.input_kind = "SEQUENCE"
    settings.frames_dir = str(tmp_path / "frames")
    settings.animate.smooth = False
    assert bpy.ops.sapiens.build_and_animate() == {"FINISHED"}
    rig = scene.sapiens_motion_transfer.animate_onto
    assert rig is not None and rig.animation_data.action is not None
    mesh = next(o for o in rig.children if o.type == "MESH")
    assert mesh.active_material is not None and settings.input_kind == "SEQUENCE"
    scene.frame_set(scene.frame_start)
    first = evaluated_positions(mesh)
    scene.frame_set(scene.frame_start + 3)
    assert np.linalg.norm(evaluated_positions(mesh) - first, axis=1).max() > 0.05   # the wave moves the arm

    # the panel's button runs the same two runs modally: its timer steps driven by hand here
    # (bpy as a module has no event loop), the avatar's run then the animation's
    import time
    from types import SimpleNamespace

    from sapiens_blender.motion_transfer import SAPIENS_OT_build_and_animate as Op

    reports = []
    op = SimpleNamespace(phase=None, sequence_kind="SEQUENCE", _timer=None,
                         report=lambda kind, message: reports.append((kind, message)))
    for name in ("_start", "_onto_new_avatar"):
        setattr(op, name, getattr(Op, name).__get__(op))
    scene.sapiens_motion_transfer.animate_onto = None
    assert op._start(bpy.context, "avatar")
    phases, outcome = set(), {"RUNNING_MODAL"}
    deadline = time.monotonic() + 300
    while outcome == {"RUNNING_MODAL"} and time.monotonic() < deadline:
        time.sleep(0.05)
        phases.add(op.phase)
        outcome = Op.modal(op, bpy.context, SimpleNamespace(type="TIMER"))
    assert outcome == {"FINISHED"} and phases == {"avatar", "animate"}, reports
    second = scene.sapiens_motion_transfer.animate_onto
    assert second is not None and second != rig and second.animation_data.action is not None

    options.rig = "NONE"
    with pytest.raises(RuntimeError, match="needs a rig"):
        bpy.ops.sapiens.build_and_animate()


def test_the_feet_option_reaches_the_retarget(addon, tmp_path):
    """The panel's one Feet option (animate's) goes with Apply Motion: a squat with its contacts onto
    a character with longer shins has its feet held, and not when Feet is off."""
    from sapiens_blender import user_data

    squat = write_motion_dir(tmp_path / "squat", "squat", FRAMES)
    source = read_motion(squat)
    obj = make_armature(character(source.skeleton, rest_pose="tpose", shin_scale=1.25, names="mixamo"), "shins")
    written = user_data.user_dir("retarget", "shins") / "out" / "animation.json"
    feet = {}
    for mode in ("lock", "off"):
        bpy.context.scene.sapiens.animate.feet = mode
        apply(obj, squat)
        feet[mode] = json.loads(written.read_text())["retarget"]["feet"]
    skate = feet["lock"]["skate_mm_per_frame"]
    assert feet["lock"]["locked"] and skate["after"] < skate["before"], feet
    assert not feet["off"]["locked"]
