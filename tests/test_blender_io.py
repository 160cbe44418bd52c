"""The add-on's format readers (no bpy): GLB accessors, avatar directories, skin batches, animation.

`write_test_avatar` writes a small avatar directory with pygltflib, independently of the engine's
writer, so the reader is checked against the glTF spec rather than against itself. The bench and
the Blender import tests use it too.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest

from sapiens_blender.io import animation as anim_io
from sapiens_blender.io.avatar import AvatarError, read_avatar
from sapiens_blender.io.glb import Glb, GlbError
from sapiens_blender.io.skin import quantize_weights, weight_batches

# bones of the test rig: name, parent, head, tail (avatar frame, metres, +Y up)
TEST_BONES = [
    ("spine", None, (0.0, 0.9, 0.0), (0.0, 1.2, 0.0)),
    ("spine.001", "spine", (0.0, 1.2, 0.0), (0.0, 1.5, 0.0)),
    ("upper_arm.L", "spine.001", (0.15, 1.45, 0.0), (0.45, 1.45, 0.0)),
    ("upper_arm.R", "spine.001", (-0.15, 1.45, 0.0), (-0.45, 1.45, 0.0)),
    ("thigh.L", "spine", (0.1, 0.9, 0.0), (0.1, 0.45, 0.0)),
    ("thigh.R", "spine", (-0.1, 0.9, 0.0), (-0.1, 0.45, 0.0)),
]
LABELS = {3: "Face_Neck", 22: "Torso", 11: "Left_Upper_Arm", 20: "Right_Upper_Arm"}
GROUPS = {"skin": [3, 11, 20], "clothing": [22]}


def _png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="PNG")
    return buf.getvalue()


def grid_body(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A cylinder-ish grid of rows x cols vertices from y=0.45 to 1.6 m: positions, faces, uvs, normals."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    angle = c / cols * 2 * np.pi
    y = 0.45 + 1.15 * r / (rows - 1)
    positions = np.stack([0.2 * np.sin(angle), y, 0.15 * np.cos(angle)], -1).reshape(-1, 3).astype(np.float32)
    normals = np.stack([np.sin(angle), np.zeros_like(angle), np.cos(angle)], -1).reshape(-1, 3).astype(np.float32)
    uvs = np.stack([c / (cols - 1), r / (rows - 1)], -1).reshape(-1, 2).astype(np.float32)
    v = (r[:-1, :-1] * cols + c[:-1, :-1]).ravel()
    right = (r[:-1, :-1] * cols + (c[:-1, :-1] + 1) % cols).ravel()
    # counter-clockwise seen from outside, as the normals point (a glTF front face)
    faces = np.concatenate(
        [np.stack([v, right, v + cols], 1), np.stack([right, right + cols, v + cols], 1)]
    ).astype(np.uint32)
    return positions, faces, uvs, normals


def body_labels(positions: np.ndarray) -> np.ndarray:
    """Torso, arms by x, face/neck at the top (float ids, as the engine stores them)."""
    labels = np.full(len(positions), 22.0, np.float32)
    labels[positions[:, 0] > 0.12] = 11
    labels[positions[:, 0] < -0.12] = 20
    labels[positions[:, 1] > 1.5] = 3
    return labels




def skin_weights(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Up to four bones per vertex by inverse distance to the bone segments; rows sum to 1."""
    heads = np.array([b[2] for b in TEST_BONES], np.float32)
    tails = np.array([b[3] for b in TEST_BONES], np.float32)
    seg = tails - heads
    t = np.clip(np.einsum("vbk,bk->vb", positions[:, None] - heads, seg) / np.sum(seg * seg, 1), 0, 1)
    dist = np.linalg.norm(positions[:, None] - (heads + t[..., None] * seg), axis=2)
    joints = np.argsort(dist, axis=1)[:, :4]
    w = 1.0 / np.maximum(np.take_along_axis(dist, joints, 1), 1e-3) ** 4
    w /= w.sum(1, keepdims=True)
    return joints.astype(np.uint16), w.astype(np.float32)


def write_test_avatar(
    directory: Path, rows: int = 12, cols: int = 16, *, rig: bool = True, animation: bool = True
) -> Path:
    """An avatar directory as docs/avatar.md describes it, written with pygltflib."""
    directory.mkdir(parents=True, exist_ok=True)
    positions, faces, uvs, normals = grid_body(rows, cols)
    labels = body_labels(positions)
    blobs: list[bytes] = []
    gltf = gl.GLTF2(asset=gl.Asset(version="2.0"), scene=0)

    def view(data: bytes) -> int:
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * (-len(data) % 4))
        gltf.bufferViews.append(gl.BufferView(buffer=0, byteOffset=offset, byteLength=len(data)))
        return len(gltf.bufferViews) - 1

    def accessor(array: np.ndarray, kind: str, component: int, **extra) -> int:
        a = np.ascontiguousarray(array)
        acc = gl.Accessor(bufferView=view(a.tobytes()), componentType=component, count=len(a), type=kind, **extra)
        gltf.accessors.append(acc)
        return len(gltf.accessors) - 1

    attrs = gl.Attributes(
        POSITION=accessor(positions, gl.VEC3, gl.FLOAT, min=positions.min(0).tolist(), max=positions.max(0).tolist()),
        NORMAL=accessor(normals, gl.VEC3, gl.FLOAT),
        TEXCOORD_0=accessor(uvs, gl.VEC2, gl.FLOAT),
    )
    attrs._LABEL = accessor(labels, gl.SCALAR, gl.FLOAT)
    joints = weights = None
    if rig:
        joints, weights = skin_weights(positions)
        attrs.JOINTS_0 = accessor(joints, gl.VEC4, gl.UNSIGNED_SHORT)
        attrs.WEIGHTS_0 = accessor(weights, gl.VEC4, gl.FLOAT)

    for i, rgb in enumerate([(200, 150, 120), (128, 128, 255)]):
        gltf.images.append(gl.Image(bufferView=view(_png(rgb)), mimeType="image/png", name=["albedo", "normal"][i]))
        gltf.textures.append(gl.Texture(source=i))
    for name in ("skin", "clothing"):
        gltf.materials.append(
            gl.Material(
                name=name,
                pbrMetallicRoughness=gl.PbrMetallicRoughness(
                    baseColorTexture=gl.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=0.8
                ),
                normalTexture=gl.NormalMaterialTexture(index=1, scale=1.0),
            )
        )
    # material slots by label group: a face goes to "clothing" when its first vertex is torso
    clothing = labels[faces[:, 0]] == 22
    prims = []
    for material, selected in ((0, ~clothing), (1, clothing)):
        idx = accessor(faces[selected].ravel(), gl.SCALAR, gl.UNSIGNED_INT)
        prims.append(gl.Primitive(attributes=attrs, indices=idx, material=material))
    gltf.meshes.append(gl.Mesh(name="avatar", primitives=prims))
    gltf.nodes.append(gl.Node(name="avatar", mesh=0))
    roots = [0]
    skeleton = None
    if rig:
        skeleton, joint_nodes = _add_rig(gltf, accessor)
        gltf.nodes[0].skin = 0
        roots.append(joint_nodes[0])
        if animation:
            _add_animation(gltf, accessor, joint_nodes)
    gltf.scenes.append(gl.Scene(nodes=roots))
    blob = b"".join(blobs)
    gltf.buffers.append(gl.Buffer(byteLength=len(blob)))
    gltf.set_binary_blob(blob)
    gltf.save_binary(str(directory / "avatar.glb"))

    meta = {
        "format": "sapiens-avatar",
        "version": "1.0",
        "name": "test_person",
        "units": "metres",
        "labels": {
            "classes": [{"id": k, "name": v} for k, v in LABELS.items()],
            "groups": GROUPS,
        },
        "files": {"glb": "avatar.glb"},
    }
    (directory / "avatar.json").write_text(json.dumps(meta))
    if skeleton is not None:
        (directory / "skeleton.json").write_text(json.dumps(skeleton))
    return directory


def _add_rig(gltf, accessor) -> tuple[dict, list[int]]:
    index = {name: i for i, (name, *_rest) in enumerate(TEST_BONES)}
    first = len(gltf.nodes)
    heads = np.array([b[2] for b in TEST_BONES])
    for name, parent, head, _tail in TEST_BONES:
        offset = np.array(head) - (heads[index[parent]] if parent else 0.0)
        gltf.nodes.append(gl.Node(name=name, translation=offset.tolist()))
    for name, parent, *_ in TEST_BONES:
        if parent:
            gltf.nodes[first + index[parent]].children.append(first + index[name])
    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (len(TEST_BONES), 1, 1))
    inverse_bind[:, :3, 3] = -heads
    ibm = accessor(np.ascontiguousarray(inverse_bind.transpose(0, 2, 1)).reshape(-1, 16), gl.MAT4, gl.FLOAT)
    joint_nodes = list(range(first, first + len(TEST_BONES)))
    gltf.skins.append(gl.Skin(joints=joint_nodes, inverseBindMatrices=ibm, skeleton=first))
    skeleton = {
        "format": "sapiens-skeleton",
        "version": "1.0",
        "convention": "test",
        "bones": [
            {"name": n, "parent": p, "head": list(h), "tail": list(t), "roll": 0.0, "deform": True}
            for n, p, h, t in TEST_BONES
        ],
    }
    return skeleton, joint_nodes


def _add_animation(gltf, accessor, joint_nodes) -> None:
    """upper_arm.L swings 90 degrees about avatar Z over 1 s (5 keys); spine moves up 10 cm."""
    times = np.linspace(0, 1, 5).astype(np.float32)
    half = np.linspace(0, np.pi / 4, 5)
    quats = np.stack([np.zeros(5), np.zeros(5), np.sin(half), np.cos(half)], 1).astype(np.float32)
    t_in = accessor(times, gl.SCALAR, gl.FLOAT, min=[0.0], max=[1.0])
    rot = accessor(quats, gl.VEC4, gl.FLOAT)
    spine_t = np.array([[0, 0.9 + 0.1 * k / 4, 0] for k in range(5)], np.float32)
    trans = accessor(spine_t, gl.VEC3, gl.FLOAT)
    names = [b[0] for b in TEST_BONES]
    gltf.animations.append(
        gl.Animation(
            name="wave",
            samplers=[gl.AnimationSampler(input=t_in, output=rot), gl.AnimationSampler(input=t_in, output=trans)],
            channels=[
                gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=joint_nodes[names.index("upper_arm.L")], path="rotation")),
                gl.AnimationChannel(sampler=1, target=gl.AnimationChannelTarget(node=joint_nodes[0], path="translation")),
            ],
        )
    )


# --- tests -----------------------------------------------------------------------------------


def test_read_avatar_matches_what_was_written(tmp_path):
    write_test_avatar(tmp_path / "a")
    avatar = read_avatar(tmp_path / "a")
    positions, faces, uvs, normals = grid_body(12, 16)
    mesh = avatar.mesh
    np.testing.assert_array_equal(mesh.positions, positions)
    np.testing.assert_array_equal(mesh.uvs, uvs)
    np.testing.assert_array_equal(mesh.normals, normals)
    # faces come back grouped per primitive (material slot), as the same set of triangles
    assert sorted(map(tuple, mesh.faces.tolist())) == sorted(map(tuple, faces.astype(np.int32).tolist()))
    assert set(mesh.face_materials.tolist()) == {0, 1}
    np.testing.assert_array_equal(mesh.labels, body_labels(positions).astype(np.int32))
    joints, weights = skin_weights(positions)
    np.testing.assert_array_equal(mesh.joints, joints)
    np.testing.assert_allclose(mesh.weights, weights)
    assert mesh.joint_names == [b[0] for b in TEST_BONES]
    assert [m.name for m in avatar.materials] == ["skin", "clothing"]
    assert avatar.materials[0].albedo_image == 0 and avatar.materials[0].normal_image == 1
    assert avatar.images[0].data.startswith(b"\x89PNG")
    assert avatar.label_names[22] == "Torso" and avatar.label_groups["clothing"] == [22]
    assert [b["name"] for b in avatar.skeleton["bones"]] == [b[0] for b in TEST_BONES]
    assert avatar.animations[0].name == "wave" and len(avatar.animations[0].channels) == 2


def _glb_bytes(document: dict, binary: bytes) -> bytes:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


def test_strided_normalized_and_sparse_accessors(tmp_path):
    # interleaved: 3 vertices of (float32 x 3 position, uint8 x 4 normalized colour) = 16 bytes
    pos = np.arange(9, dtype=np.float32).reshape(3, 3)
    col = np.array([[0, 255, 51, 255]] * 3, np.uint8)
    inter = np.zeros(3, dtype=[("p", "<f4", 3), ("c", "u1", 4)])
    inter["p"], inter["c"] = pos, col
    sparse_idx = np.array([1], np.uint16).tobytes() + b"\0\0"
    sparse_val = np.array([7.0, 8.0, 9.0], np.float32).tobytes()
    binary = inter.tobytes() + sparse_idx + sparse_val
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 48, "byteStride": 16},
            {"buffer": 0, "byteOffset": 48, "byteLength": 2},
            {"buffer": 0, "byteOffset": 52, "byteLength": 12},
        ],
        "accessors": [
            {"bufferView": 0, "byteOffset": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
            {"bufferView": 0, "byteOffset": 12, "componentType": 5121, "count": 3, "type": "VEC4", "normalized": True},
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
             "sparse": {"count": 1, "indices": {"bufferView": 1, "componentType": 5123},
                        "values": {"bufferView": 2}}},
        ],
    }
    path = tmp_path / "x.glb"
    path.write_bytes(_glb_bytes(doc, binary))
    glb = Glb(path)
    np.testing.assert_array_equal(glb.accessor(0), pos)
    np.testing.assert_allclose(glb.accessor(1), col / 255.0)
    expected = pos.copy()
    expected[1] = [7, 8, 9]
    np.testing.assert_array_equal(glb.accessor(2), expected)


def test_bad_files_are_named(tmp_path):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"not a glb at all, definitely")
    with pytest.raises(GlbError, match="bad.glb.*magic"):
        Glb(bad)
    truncated = tmp_path / "t.glb"
    truncated.write_bytes(_glb_bytes({"asset": {"version": "2.0"}}, b"1234")[:-6])
    with pytest.raises(GlbError, match="t.glb"):
        Glb(truncated)
    with pytest.raises(AvatarError, match="not an avatar directory"):
        read_avatar(tmp_path / "missing")
    write_test_avatar(tmp_path / "newer", rig=False)
    meta = json.loads((tmp_path / "newer" / "avatar.json").read_text())
    meta["version"] = "2.0"
    (tmp_path / "newer" / "avatar.json").write_text(json.dumps(meta))
    with pytest.raises(AvatarError, match="avatar.json.*newer"):
        read_avatar(tmp_path / "newer")
    write_test_avatar(tmp_path / "orphan")
    skel = json.loads((tmp_path / "orphan" / "skeleton.json").read_text())
    skel["bones"][1]["parent"] = "nope"
    (tmp_path / "orphan" / "skeleton.json").write_text(json.dumps(skel))
    with pytest.raises(AvatarError, match="skeleton.json.*unknown parent"):
        read_avatar(tmp_path / "orphan")


def test_quantized_weights_keep_rows_normalized():
    rng = np.random.default_rng(0)
    w = rng.random((1000, 4)).astype(np.float32)
    w[:10] = 0.0  # unweighted vertices stay unweighted
    steps = quantize_weights(w, 4096)
    assert (steps[10:].sum(1) == 4096).all() and (steps[:10] == 0).all() and (steps >= 0).all()
    target = w[10:] / w[10:].sum(1, keepdims=True)
    error = np.abs(steps[10:] / 4096 - target)
    assert error.max() <= 2 / 4096  # the row's rounding remainder lands on its largest weight
    assert np.median(error) <= 0.5 / 4096


def test_weight_batches_reassemble_the_weights():
    rng = np.random.default_rng(1)
    joints = rng.integers(0, 6, (500, 4))
    weights = rng.random((500, 4))
    dense = np.zeros((500, 6))
    calls = 0
    for joint, weight, vertices in weight_batches(joints, weights, 1024):
        assert not dense[vertices, joint].any(), "each (vertex, joint) is set once"
        dense[vertices, joint] = weight
        calls += 1
    np.testing.assert_allclose(dense.sum(1), 1.0, atol=1e-9)
    expected = np.zeros((500, 6))
    np.add.at(expected, (np.arange(500)[:, None].repeat(4, 1), joints), weights / weights.sum(1, keepdims=True))
    assert np.abs(dense - expected).max() <= 2 / 1024
    assert calls < 6 * 1025


def test_quaternion_round_trip():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.where(q[:, :1] < 0, -1, 1)
    from sapiens_blender.io.avatar import quaternion_to_matrix

    np.testing.assert_allclose(anim_io.matrix_to_quaternion(quaternion_to_matrix(q)), q, atol=1e-9)


def test_bone_tracks_turn_node_motion_into_pose_basis(tmp_path):
    write_test_avatar(tmp_path / "a")
    avatar = read_avatar(tmp_path / "a")
    names = [b[0] for b in TEST_BONES]
    parents = [names.index(b[1]) if b[1] else -1 for b in TEST_BONES]
    # rest matrices as Blender would make them for roll 0 (only their inverse-consistency matters)
    rest = np.tile(np.eye(4), (len(names), 1, 1))
    rest[:, :3, 3] = [[h[0], -h[2], h[1]] for _, _, h, _ in TEST_BONES]
    times = anim_io.sample_times(avatar.animations[0])
    tracks = {t.bone: t for t in anim_io.bone_tracks(avatar.animations[0], avatar.nodes, names, parents, rest, times)}
    assert set(tracks) == {"upper_arm.L", "spine"}
    arm = tracks["upper_arm.L"]
    # 90 degrees about avatar +Z = Blender -Y: quaternion (cos 45, 0, -sin 45, 0) at the end
    np.testing.assert_allclose(arm.rotation[-1], [np.cos(np.pi / 4), 0, -np.sin(np.pi / 4), 0], atol=1e-6)
    np.testing.assert_allclose(arm.location, 0, atol=1e-6)
    np.testing.assert_allclose(tracks["spine"].location[-1], [0, 0, 0.1], atol=1e-6)  # up = Blender +Z
    np.testing.assert_allclose(tracks["spine"].scale, 1, atol=1e-6)
