"""Retargeting end to end through files: an `animate`-style motion directory onto a skinned GLB
character (Mixamo names, T-pose, centimetres under a scaled armature node, other proportions)
and onto skeleton.json; the CLI; bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pygltflib
import pytest
from scipy.spatial.transform import Rotation

from engine.errors import EngineError
from engine.motion.retarget import RestSkeleton
from engine.motion.retarget_gltf import _append, skeleton_document
from engine.motion.retarget_output import retarget_to_dir
from engine.motion.retarget_sources import load_gltf, read_motion
from engine.motion.retarget_synthetic import character, humanoid_parts, write_motion_dir

FRAMES = 16


@pytest.fixture(scope="module")
def walk_dir(tmp_path_factory):
    return write_motion_dir(tmp_path_factory.mktemp("walk") / "walk", "walk", FRAMES)


def make_mixamo_glb(path, source: RestSkeleton, *, scale=1.1, arm_scale=1.1) -> RestSkeleton:
    """A Mixamo-named skinned character as Blender exports one from an FBX: bones in centimetres
    under an 'Armature' node scaled 0.01, T-pose, other proportions, one triangle per bone."""
    target = character(source, rest_pose="tpose", roll_seed=11, scale=scale, arm_scale=arm_scale, names="mixamo")
    cm = RestSkeleton(target.names, target.parents, target.rest.copy(), target.tails * 100)
    cm.rest[:, :3, 3] *= 100
    gltf, _ = skeleton_document(cm)
    B = len(cm.names)
    # one small triangle at each bone head, skinned fully to that bone (metres, mesh at the origin)
    heads = target.heads
    verts = np.concatenate([heads, heads + [0.01, 0, 0], heads + [0, 0, 0.01]]).astype(np.float32)
    faces = np.stack([np.arange(B), np.arange(B) + B, np.arange(B) + 2 * B], 1).astype(np.uint32)
    pos = _append(gltf, verts, "VEC3", minmax=True)
    blob = gltf.binary_blob()
    pad = (-len(blob)) % 4
    gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=len(blob) + pad, byteLength=faces.nbytes))
    gltf.set_binary_blob(blob + b"\0" * pad + faces.tobytes())
    gltf.buffers[0].byteLength = len(gltf.binary_blob())
    gltf.accessors.append(pygltflib.Accessor(bufferView=len(gltf.bufferViews) - 1, componentType=5125,
                                             count=faces.size, type="SCALAR"))
    idx = len(gltf.accessors) - 1
    joints = np.tile(np.arange(B), 3)[:, None] * np.array([[1, 0, 0, 0]])
    weights = np.tile([1.0, 0, 0, 0], (3 * B, 1))
    blob = gltf.binary_blob()
    j = joints.astype(np.uint16)
    gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=len(blob), byteLength=j.nbytes))
    gltf.set_binary_blob(blob + j.tobytes())
    gltf.buffers[0].byteLength = len(gltf.binary_blob())
    gltf.accessors.append(pygltflib.Accessor(bufferView=len(gltf.bufferViews) - 1, componentType=5123,
                                             count=len(j), type="VEC4"))
    jacc = len(gltf.accessors) - 1
    wacc = _append(gltf, weights, "VEC4")
    gltf.meshes = [pygltflib.Mesh(name="body", primitives=[pygltflib.Primitive(
        attributes=pygltflib.Attributes(POSITION=pos, JOINTS_0=jacc, WEIGHTS_0=wacc), indices=idx)])]
    # the skin's bind matrices: the joints' world at rest (with the armature's 0.01)
    armature = pygltflib.Node(name="Armature", scale=[0.01, 0.01, 0.01], children=list(gltf.scenes[0].nodes))
    gltf.nodes.append(armature)
    gltf.nodes.append(pygltflib.Node(name="body", mesh=0, skin=0))
    gltf.scenes[0].nodes = [len(gltf.nodes) - 2, len(gltf.nodes) - 1]
    ibm = np.linalg.inv(np.diag([0.01, 0.01, 0.01, 1.0]) @ cm.rest)
    gltf.skins[0].inverseBindMatrices = _append(gltf, np.swapaxes(ibm, 1, 2), "MAT4")
    gltf.save_binary(str(path))
    return target


def read_accessor(gltf, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
    data = np.frombuffer(gltf.binary_blob(), np.float32, acc.count * width, view.byteOffset + (acc.byteOffset or 0))
    return data.reshape(acc.count, width)


def animated_world(path) -> tuple[list[str], np.ndarray]:
    """Evaluate the GLB's animation at every key: (node names, T x N x 4 x 4 node world matrices)."""
    gltf = pygltflib.GLTF2().load(str(path))
    anim = gltf.animations[0]
    T = gltf.accessors[anim.samplers[0].input].count
    N = len(gltf.nodes)
    local = np.zeros((T, N, 4, 4))
    for i, node in enumerate(gltf.nodes):
        m = np.eye(4)
        if node.rotation:
            m[:3, :3] = Rotation.from_quat(node.rotation).as_matrix()
        if node.scale:
            m[:3, :3] *= np.array(node.scale)[None]
        if node.translation:
            m[:3, 3] = node.translation
        local[:, i] = m
    for ch in anim.channels:
        values = read_accessor(gltf, anim.samplers[ch.sampler].output)
        node = ch.target.node
        s = np.cbrt(np.linalg.det(local[0, node, :3, :3]))
        if ch.target.path == "rotation":
            local[:, node, :3, :3] = Rotation.from_quat(values).as_matrix() * s
        elif ch.target.path == "translation":
            local[:, node, :3, 3] = values
    parent = {c: i for i, n in enumerate(gltf.nodes) for c in (n.children or [])}
    world = np.zeros_like(local)
    order = []

    def visit(i):
        order.append(i)
        for c in gltf.nodes[i].children or []:
            visit(c)
    for r in gltf.scenes[0].nodes:
        visit(r)
    for i in order:
        world[:, i] = local[:, i] if i not in parent else world[:, parent[i]] @ local[:, i]
    return [n.name for n in gltf.nodes], world


def test_glb_character_keeps_its_mesh_and_follows_the_motion(walk_dir, tmp_path):
    source = read_motion(walk_dir)
    target = make_mixamo_glb(tmp_path / "mixamo.glb", source.skeleton, scale=1.0, arm_scale=1.0)
    loaded = load_gltf(tmp_path / "mixamo.glb")
    assert loaded.skeleton.names == target.names
    np.testing.assert_allclose(loaded.skeleton.heads, target.heads, atol=1e-5)
    result = retarget_to_dir(walk_dir, tmp_path / "mixamo.glb", tmp_path / "out", with_curves=True)
    assert result["convention"] == "mixamo" and result["scale"] == pytest.approx(1.0, abs=1e-5)
    assert result["travelling_bone"] == "mixamorig:Hips"
    out = pygltflib.GLTF2().load(str(tmp_path / "out" / "animation.glb"))
    assert out.meshes[0].primitives[0].attributes.JOINTS_0 is not None and len(out.skins) == 1
    names, world = animated_world(tmp_path / "out" / "animation.glb")
    sp, tp = humanoid_parts(source.skeleton), humanoid_parts(target)
    for part in ("leftHand", "rightHand", "leftFoot", "rightFoot", "head", "leftLowerArm"):
        got = world[:, names.index(target.names[tp[part]]), :3, 3]
        want = source.world[:, sp[part], :3, 3]
        assert np.linalg.norm(got - want, axis=-1).mean() < 0.01, part     # 1 cm, same proportions
    assert set(result["curves"]["bones"]) >= {"mixamorig:Hips", "mixamorig:LeftArm"}
    assert "location" in result["curves"]["bones"]["mixamorig:Hips"]
    bvh = (tmp_path / "out" / "animation.bvh").read_text()
    assert bvh.startswith("HIERARCHY") and f"Frames: {FRAMES}" in bvh and "mixamorig:LeftForeArm" in bvh
    manifest = json.loads((tmp_path / "out" / "animation.json").read_text())
    assert manifest["retarget"]["bone_map"]["mixamorig:LeftArm"] == "upper_arm.L"
    saved = json.loads((tmp_path / "out" / "bone_map.json").read_text())
    assert saved["format"] == "sapiens-bone-map" and saved["bones"]["mixamorig:LeftArm"] == "leftUpperArm"
    # the saved map drives the same result when given back
    again = retarget_to_dir(walk_dir, tmp_path / "mixamo.glb", tmp_path / "again", bone_map=tmp_path / "out" / "bone_map.json",
                            with_curves=True)
    assert again["convention"] == "map" and again["bone_map"] == result["bone_map"]
    np.testing.assert_allclose(again["curves"]["bones"]["mixamorig:LeftForeArm"]["rotation"],
                               result["curves"]["bones"]["mixamorig:LeftForeArm"]["rotation"], atol=1e-9)


def test_taller_longer_armed_character_keeps_directions(walk_dir, tmp_path):
    source = read_motion(walk_dir)
    target = make_mixamo_glb(tmp_path / "tall.glb", source.skeleton, scale=1.2, arm_scale=1.15)
    result = retarget_to_dir(walk_dir, tmp_path / "tall.glb", tmp_path / "out", formats=["glb"])
    assert result["scale"] == pytest.approx(1.2, rel=1e-4)
    names, world = animated_world(tmp_path / "out" / "animation.glb")
    sp, tp = humanoid_parts(source.skeleton), humanoid_parts(target)
    for a, b in (("leftUpperArm", "leftLowerArm"), ("leftLowerArm", "leftHand"), ("rightUpperLeg", "rightLowerLeg"),
                 ("leftLowerLeg", "leftFoot"), ("spine", "chest")):
        ds = source.world[:, sp[b], :3, 3] - source.world[:, sp[a], :3, 3]
        dt = (world[:, names.index(target.names[tp[b]]), :3, 3] - world[:, names.index(target.names[tp[a]]), :3, 3])
        cos = (ds * dt).sum(-1) / np.linalg.norm(ds, axis=-1) / np.linalg.norm(dt, axis=-1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).mean() < 2.0, (a, b)
    assert not (tmp_path / "out" / "animation.bvh").exists()


def test_skeleton_json_target_and_the_cli(walk_dir, tmp_path):
    game = character(read_motion(walk_dir).skeleton, rest_pose="apose", names="unreal")
    from engine.motion.retarget_gltf import skeleton_document as doc
    gltf, _ = doc(game)
    gltf.save_binary(str(tmp_path / "game.glb"))
    proc = subprocess.run([sys.executable, "-m", "engine", "retarget", str(walk_dir), "--target",
                           str(tmp_path / "game.glb"), "--out", str(tmp_path / "cli")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cli" / "animation.glb").is_file() and (tmp_path / "cli" / "animation.bvh").is_file()
    proc = subprocess.run([sys.executable, "-m", "engine", "retarget", str(walk_dir), "--target",
                           str(walk_dir / "skeleton.json"), "--out", str(tmp_path / "cli2")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    names, world = animated_world(tmp_path / "cli2" / "animation.glb")
    source = read_motion(walk_dir)
    np.testing.assert_allclose(world[:, [names.index(n) for n in source.skeleton.names]][..., :3, 3],
                               source.world[..., :3, 3], atol=1e-4)


def test_bad_inputs_are_named(walk_dir, tmp_path):
    with pytest.raises(EngineError, match="not a motion directory"):
        retarget_to_dir(tmp_path / "nothing", walk_dir / "skeleton.json", tmp_path / "o")
    (tmp_path / "x.glb").write_bytes(b"not a glb")
    with pytest.raises(EngineError, match="not a readable glTF"):
        retarget_to_dir(walk_dir, tmp_path / "x.glb", tmp_path / "o")
    gltf = pygltflib.GLTF2(nodes=[pygltflib.Node(name="a")], scenes=[pygltflib.Scene(nodes=[0])])
    gltf.save_binary(str(tmp_path / "noskin.glb"))
    with pytest.raises(EngineError, match="has no skin"):
        retarget_to_dir(walk_dir, tmp_path / "noskin.glb", tmp_path / "o")
    with pytest.raises(EngineError, match="a target character is"):
        retarget_to_dir(walk_dir, tmp_path / "char.fbx", tmp_path / "o")
    with pytest.raises(EngineError, match="formats obj"):
        retarget_to_dir(walk_dir, walk_dir / "skeleton.json", tmp_path / "o", formats=["obj"])
    assert not (tmp_path / "o").exists()


def _edited_motion(walk_dir, dest, file=None, edit=None, frame_edit=None):
    import shutil

    motion = shutil.copytree(walk_dir, dest)
    if file is not None:
        (motion / file).write_text(json.dumps(edit(json.loads((motion / file).read_text()))))
    if frame_edit is not None:
        first = sorted((motion / "frames").glob("*.json"))[0]
        doc = json.loads(first.read_text())
        frame_edit(doc)
        first.write_text(json.dumps(doc))
    return motion


def _zero_rotation(doc):
    doc["bones"][next(iter(doc["bones"]))]["rotation"] = [0, 0, 0, 0]


def _nan_root(doc):
    doc["root_position"] = [0.0, float("nan"), 0.0]


def _list_contacts(doc):
    doc["contacts"] = [True, False]


@pytest.mark.parametrize("file, edit, frame_edit, words", [
    ("skeleton.json", lambda d: [1], None, r"skeleton.json: holds a JSON list, not an object"),
    ("animation.json", lambda d: [1], None, r"animation.json: holds a JSON list, not an object"),
    ("animation.json", lambda d: {**d, "fps": "fast"}, None, r"animation.json: 'fps' is 'fast'; the frame rate"),
    ("animation.json", lambda d: {**d, "fps": -5}, None, r"animation.json: 'fps' is -5; the frame rate must be a positive"),
    ("animation.json", lambda d: {**d, "fps": True}, None, r"animation.json: 'fps' is True"),
    (None, None, _zero_rotation, r"000000.json: bone '\S+' has rotation \[0.0, 0.0, 0.0, 0.0\], not a rotation quaternion"),
    (None, None, _nan_root, r"000000.json: 'root_position' is .*not finite"),
    (None, None, _list_contacts, r"000000.json: not a motion frame .*'contacts' is \[True, False\]"),
], ids=["skeleton list", "animation list", "fps text", "fps negative", "fps bool", "zero quaternion", "NaN root",
        "contacts list"])
def test_bad_motion_files_are_refused_naming_file_and_field(walk_dir, tmp_path, file, edit, frame_edit, words):
    motion = _edited_motion(walk_dir, tmp_path / "motion", file, edit, frame_edit)
    with pytest.raises(EngineError, match=words):
        read_motion(motion)
    with pytest.raises(EngineError, match=words):
        retarget_to_dir(motion, walk_dir / "skeleton.json", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_motion_without_animation_json_plays_at_30_fps(walk_dir, tmp_path):
    motion = _edited_motion(walk_dir, tmp_path / "motion")
    (motion / "animation.json").unlink()
    assert read_motion(motion).fps == 30.0
    assert read_motion(walk_dir).fps == json.loads((walk_dir / "animation.json").read_text())["fps"]


def test_protocol_method_returns_curves_for_a_client_armature(walk_dir, tmp_path):
    """A client sends its armature as bones (head, tail, z axis, armature space: Z up) and gets
    rest-relative curves back; keyed on its rest they put the hands where the source's are."""
    source = read_motion(walk_dir)
    target = character(source.skeleton, rest_pose="tpose", roll_seed=4, names="mixamo")
    to_blender = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    rest = target.rest.copy()
    rest[:, :3, :] = to_blender @ rest[:, :3, :]
    bones = [{"name": n, "parent": target.names[p] if p >= 0 else None, "head": rest[b, :3, 3].tolist(),
              "tail": (to_blender @ target.tails[b]).tolist(), "z_axis": rest[b, :3, 2].tolist()}
             for b, (n, p) in enumerate(zip(target.names, target.parents))]
    (tmp_path / "armature.json").write_text(json.dumps({"bones": bones}))
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "ready"
        for rid, params in ((1, {"motion": str(walk_dir), "target": 7}),
                            (2, {"motion": str(walk_dir), "target": str(tmp_path / "armature.json"),
                                 "out_dir": str(tmp_path / "proto"), "curves": True})):
            proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "retarget", "params": params}) + "\n")
            proc.stdin.flush()
            while True:
                msg = json.loads(proc.stdout.readline())
                if msg.get("id") == rid and msg.get("type") in ("result", "error"):
                    break
            if rid == 1:
                assert msg["error"]["code"] == "invalid_params" and msg["error"]["data"]["param"] == "target"
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    curves = msg["result"]["curves"]
    assert curves["frames"] == FRAMES and curves["quaternion_order"] == "xyzw"
    # rebuild the pose the way Blender does: pose = parent pose x rest_local x basis
    idx = {n: i for i, n in enumerate(target.names)}
    basis = np.tile(np.eye(4), (FRAMES, len(bones), 1, 1))
    for name, c in curves["bones"].items():
        if "rotation" in c:
            basis[:, idx[name], :3, :3] = Rotation.from_quat(c["rotation"]).as_matrix()
        if "location" in c:
            basis[:, idx[name], :3, 3] = c["location"]
    world_rest = np.tile(np.eye(4), (len(bones), 1, 1))
    world_rest[:, :3, :] = rest[:, :3, :]
    rest_local = world_rest.copy()
    has = target.parents >= 0
    rest_local[has] = np.linalg.inv(world_rest[target.parents[has]]) @ world_rest[has]
    pose = np.zeros_like(basis)
    for b, p in enumerate(target.parents):
        local = rest_local[b] @ basis[:, b]
        pose[:, b] = local if p < 0 else pose[:, p] @ local
    sp, tp = humanoid_parts(source.skeleton), humanoid_parts(target)
    for part in ("leftHand", "rightFoot"):
        want = source.world[:, sp[part], :3, 3] @ to_blender.T
        assert np.abs(pose[:, tp[part], :3, 3] - want).max() < 1e-3, part


def test_vrm_labels_name_the_parts_whatever_the_bone_names(walk_dir, tmp_path):
    source = read_motion(walk_dir)
    target = character(source.skeleton, rest_pose="apose", roll_seed=2, names="vrm")
    parts = humanoid_parts(target)
    anonymous = RestSkeleton([f"J_{i:02d}" for i in range(len(target.names))], target.parents, target.rest, None)
    gltf, _ = skeleton_document(anonymous)
    # VRM 1.0 labels (thumbs: metacarpal, proximal, distal)
    human = {p.replace("ThumbProximal", "ThumbMetacarpal").replace("ThumbIntermediate", "ThumbProximal"): {"node": b}
             for p, b in parts.items()}
    gltf.extensionsUsed = ["VRMC_vrm"]
    gltf.extensions = {"VRMC_vrm": {"specVersion": "1.0", "humanoid": {"humanBones": human}}}
    gltf.save_binary(str(tmp_path / "avatar.vrm"))
    loaded = load_gltf(tmp_path / "avatar.vrm")
    assert loaded.skeleton.parts[f"J_{parts['leftThumbProximal']:02d}"] == "leftThumbProximal"
    result = retarget_to_dir(walk_dir, tmp_path / "avatar.vrm", tmp_path / "out", formats=["glb"])
    assert result["convention"] == "file" and result["parts"][f"J_{parts['leftUpperArm']:02d}"] == "leftUpperArm"
    names, world = animated_world(tmp_path / "out" / "animation.glb")
    sp = humanoid_parts(source.skeleton)
    for part in ("leftHand", "rightFoot", "leftThumbDistal"):
        got = world[:, names.index(f"J_{parts[part]:02d}"), :3, 3]
        assert np.linalg.norm(got - source.world[:, sp[part], :3, 3], axis=-1).mean() < 0.01, part


def test_bvh_of_a_many_rooted_character_is_refused_before_work(walk_dir, tmp_path):
    source = read_motion(walk_dir)
    target = character(source.skeleton, names="mixamo")
    parents = target.parents.copy()
    parents[parents == 0] = -1                      # the hips' children become roots
    loose = RestSkeleton(target.names, parents, target.rest, target.tails)
    gltf, _ = skeleton_document(loose)
    gltf.save_binary(str(tmp_path / "loose.glb"))
    with pytest.raises(EngineError, match="BVH holds one root bone.*--formats glb"):
        retarget_to_dir(walk_dir, tmp_path / "loose.glb", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    assert retarget_to_dir(walk_dir, tmp_path / "loose.glb", tmp_path / "o", formats=["glb"])["files"]["gltf"]


def test_usd_motion_through_the_formats_table(walk_dir, tmp_path):
    pytest.importorskip("pxr")
    from pxr import Usd, UsdSkel

    source = read_motion(walk_dir)
    make_mixamo_glb(tmp_path / "m.glb", source.skeleton, scale=1.0, arm_scale=1.0)
    result = retarget_to_dir(walk_dir, tmp_path / "m.glb", tmp_path / "out", formats=["usd"])
    stage = Usd.Stage.Open(str(tmp_path / "out" / result["files"]["usd"]))
    skel = next(UsdSkel.Skeleton(p) for p in stage.Traverse() if p.IsA(UsdSkel.Skeleton))
    query = UsdSkel.Cache().GetSkelQuery(skel)
    joints = [str(j).rsplit("/", 1)[-1] for j in query.GetJointOrder()]
    hand = joints.index("mixamorig_LeftHand")
    sp = humanoid_parts(source.skeleton)
    for t in range(FRAMES):
        xf = np.array(query.ComputeJointSkelTransforms(Usd.TimeCode(stage.GetStartTimeCode() + t)))
        assert np.linalg.norm(xf[hand][3, :3] - source.world[t, sp["leftHand"], :3, 3]) < 1e-3


def test_output_never_replaces_an_input(walk_dir, tmp_path):
    from engine.jobs import run_job

    before = sorted(p.name for p in walk_dir.iterdir())
    with pytest.raises(EngineError, match="holds the motion"):
        run_job("retarget", {"motion": str(walk_dir), "target": str(walk_dir / "skeleton.json"), "out_dir": str(walk_dir)})
    earlier = tmp_path / "earlier"              # an earlier output, with a character the user put in it
    earlier.mkdir()
    (earlier / "animation.json").write_text("{}")
    (earlier / "character.json").write_text((walk_dir / "skeleton.json").read_text())
    with pytest.raises(EngineError, match="holds the target"):
        run_job("retarget", {"motion": str(walk_dir), "target": str(earlier / "character.json"), "out_dir": str(earlier)})
    assert (earlier / "character.json").is_file()
    assert sorted(p.name for p in walk_dir.iterdir()) == before
