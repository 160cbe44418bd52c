"""GltfBuilder: accessors, alignment, matrices, materials, multi-primitive meshes, skins, animation."""

from __future__ import annotations

import io

import numpy as np
import pygltflib
import pytest
from PIL import Image

from engine.formats.gltf import ARRAY_BUFFER, GltfBuilder, read_glb_json


def _png(color=(200, 100, 50), size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def _accessor_data(gltf: pygltflib.GLTF2, index: int) -> np.ndarray:
    """Read an accessor back from a loaded GLB (independent of the builder's code)."""
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    blob = gltf.binary_blob()
    dtype = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}[
        accessor.componentType
    ]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}[accessor.type]
    item = np.dtype(dtype).itemsize
    stride = view.byteStride or width * item
    start = view.byteOffset + (accessor.byteOffset or 0)
    raw = np.frombuffer(blob, np.uint8, count=stride * (accessor.count - 1) + width * item, offset=start)
    rows = np.lib.stride_tricks.as_strided(raw, (accessor.count, width * item), (stride, 1))
    return np.ascontiguousarray(rows).view(dtype).reshape(accessor.count, width)


def _quad_builder():
    builder = GltfBuilder()
    texture = builder.add_texture(builder.add_image(_png()))
    skin = builder.add_material("skin", texture, texture, roughness=0.5)
    hair = builder.add_material("hair", texture)
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float64)
    mesh = builder.add_mesh(
        "quad",
        positions,
        np.tile([0.0, 0.0, 1.0], (4, 1)),
        positions[:, :2],
        tangents=np.tile([1.0, 0.0, 0.0, 1.0], (4, 1)),
        extra_attributes={"_LABEL": np.array([3, 3, 4, 4], np.float32)},
        submeshes=[(np.array([[0, 1, 2]]), skin), (np.array([[1, 3, 2]]), hair)],
    )
    node = builder.add_node("quad", mesh=mesh, root=True)
    return builder, mesh, node


def test_accessors_round_trip_with_types_alignment_and_minmax(tmp_path):
    builder = GltfBuilder()
    floats = np.random.default_rng(0).normal(size=(5, 3))  # float64 -> float32
    small = np.arange(15, dtype=np.uint8).reshape(5, 3)  # 3-byte elements: padded stride as a vertex attribute
    ints = np.arange(7, dtype=np.int64)  # -> uint32
    matrices = np.stack([np.arange(16.0).reshape(4, 4) + k for k in range(2)])
    a = builder.add_accessor(floats, target=ARRAY_BUFFER, minmax=True)
    b = builder.add_accessor(small, target=ARRAY_BUFFER, normalized=True)
    c = builder.add_accessor(ints)
    d = builder.add_accessor(matrices)
    path = builder.save(tmp_path / "data.glb")

    gltf = pygltflib.GLTF2().load(str(path))
    assert np.array_equal(_accessor_data(gltf, a), floats.astype(np.float32))
    assert gltf.accessors[a].min == pytest.approx(floats.astype(np.float32).min(axis=0).tolist())
    assert gltf.accessors[a].max == pytest.approx(floats.astype(np.float32).max(axis=0).tolist())
    assert gltf.accessors[b].normalized and gltf.bufferViews[gltf.accessors[b].bufferView].byteStride == 4
    assert np.array_equal(_accessor_data(gltf, b), small)
    assert gltf.accessors[c].componentType == pygltflib.UNSIGNED_INT
    assert np.array_equal(_accessor_data(gltf, c)[:, 0], ints)
    # glTF matrices are column-major: element (row 0, col 3) is the 13th value
    stored = _accessor_data(gltf, d)
    assert np.array_equal(stored.reshape(2, 4, 4).transpose(0, 2, 1), matrices)
    assert all(view.byteOffset % 4 == 0 for view in gltf.bufferViews)


def test_bad_arrays_are_refused():
    builder = GltfBuilder()
    with pytest.raises(ValueError, match="negative"):
        builder.add_accessor(np.array([-1, 2]))
    with pytest.raises(ValueError, match="shape"):
        builder.add_accessor(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="normalized"):
        builder.add_accessor(np.zeros((3, 2), np.float32), normalized=True)
    with pytest.raises(ValueError, match="rows"):
        builder.add_mesh("m", np.zeros((3, 3)), np.zeros((2, 3)), indices=np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="out of range"):
        builder.add_mesh("m", np.zeros((3, 3)), indices=np.array([[0, 1, 3]]))


def test_multi_primitive_mesh_with_materials_opens_in_trimesh(tmp_path):
    import trimesh

    builder, mesh, _ = _quad_builder()
    path = builder.save(tmp_path / "quad.glb")
    doc = read_glb_json(path)
    primitives = doc["meshes"][mesh]["primitives"]
    assert [p["material"] for p in primitives] == [0, 1]
    # the primitives share their vertex accessors, custom attribute included
    assert primitives[0]["attributes"] == primitives[1]["attributes"]
    assert "_LABEL" in primitives[0]["attributes"] and "TANGENT" in primitives[0]["attributes"]
    assert doc["materials"][0]["normalTexture"]["index"] == 0
    scene = trimesh.load(path)
    assert len(scene.geometry) == 2
    for geometry in scene.geometry.values():
        assert geometry.visual.uv is not None
        assert geometry.visual.material.baseColorTexture.size == (8, 8)


def test_skin_and_animation_added_to_an_existing_mesh(tmp_path):
    builder, mesh, mesh_node = _quad_builder()
    hip = builder.add_node("hip", translation=[0.5, 0.0, 0.0])
    knee = builder.add_node("knee", translation=[0.0, 1.0, 0.0])
    builder.add_child(hip, knee)
    builder.add_root(hip)
    joints = builder.add_primitive_attribute(mesh, "JOINTS_0", np.array([[0, 1, 0, 0]] * 4, np.uint16))
    weights = builder.add_primitive_attribute(mesh, "WEIGHTS_0", np.array([[0.75, 0.25, 0, 0]] * 4, np.float32))
    inverse_bind = np.stack([np.eye(4), np.eye(4)])
    inverse_bind[0, :3, 3] = [-0.5, 0, 0]
    inverse_bind[1, :3, 3] = [-0.5, -1.0, 0]
    skin = builder.add_skin([hip, knee], inverse_bind, skeleton=hip, name="armature")
    builder.set_node_skin(mesh_node, skin)
    animation = builder.add_animation("wave")
    times = builder.add_times([0.0, 0.5, 1.0])
    angle = np.radians([0.0, 45.0, 0.0]) / 2
    rotation = np.stack([np.sin(angle), np.zeros(3), np.zeros(3), np.cos(angle)], axis=1)
    builder.add_animation_channel(animation, knee, "rotation", times, rotation)
    builder.add_animation_channel(animation, hip, "translation", times, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="keyframes"):
        builder.add_animation_channel(animation, hip, "rotation", times, np.zeros((2, 4)))
    path = builder.save(tmp_path / "skinned.glb")

    gltf = pygltflib.GLTF2().load(str(path))
    for primitive in gltf.meshes[mesh].primitives:
        assert primitive.attributes.JOINTS_0 == joints and primitive.attributes.WEIGHTS_0 == weights
    assert gltf.nodes[mesh_node].skin == skin and gltf.skins[skin].joints == [hip, knee]
    assert np.allclose(_accessor_data(gltf, gltf.skins[skin].inverseBindMatrices).reshape(2, 4, 4).transpose(0, 2, 1), inverse_bind)
    anim = gltf.animations[animation]
    assert len(anim.channels) == 2 and anim.samplers[0].input == anim.samplers[1].input == times
    assert gltf.accessors[times].min == [0.0] and gltf.accessors[times].max == [1.0]
    assert gltf.scenes[0].nodes == [mesh_node, hip]


def test_skinned_builder_output_imports_in_blender(tmp_path):
    bpy = pytest.importorskip("bpy")
    builder, mesh, mesh_node = _quad_builder()
    hip = builder.add_node("hip", translation=[0.5, 0.0, 0.0], root=True)
    builder.add_primitive_attribute(mesh, "JOINTS_0", np.zeros((4, 4), np.uint16))
    builder.add_primitive_attribute(mesh, "WEIGHTS_0", np.tile([1.0, 0, 0, 0], (4, 1)).astype(np.float32))
    inverse_bind = np.eye(4)[None].copy()
    inverse_bind[0, :3, 3] = [-0.5, 0, 0]
    builder.set_node_skin(mesh_node, builder.add_skin([hip], inverse_bind))
    animation = builder.add_animation("lift")
    builder.add_animation_channel(animation, hip, "translation", [0.0, 1.0], [[0.5, 0, 0], [0.5, 1.0, 0]])
    path = builder.save(tmp_path / "skinned.glb")

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(path))
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    # (the importer also makes an Icosphere to draw bones with)
    meshes = [o for o in bpy.data.objects if o.type == "MESH" and o.name == "quad"]
    assert len(armatures) == 1 and [b.name for b in armatures[0].data.bones] == ["hip"]
    assert len(meshes) == 1 and "hip" in meshes[0].vertex_groups and meshes[0].parent == armatures[0]
    assert len(meshes[0].data.materials) == 2
    assert any(action.name.startswith("lift") for action in bpy.data.actions)


def test_container_is_written_as_pygltflib_writes_it(tmp_path):
    """save() lays out the .glb itself (no copies of the buffer): the bytes pygltflib's own
    save_to_bytes gives for the same document, for odd-sized views (an image, uint8 data)
    and a JSON chunk that needs padding alike."""
    builder, mesh, _ = _quad_builder()
    builder.add_image(b"\x89PNG odd length", "image/png", name="odd")
    builder.add_accessor(np.arange(7, dtype=np.uint8))
    for extra in ("", "x", "xy", "xyz"):  # every JSON padding remainder
        builder.gltf.asset.extras = {"pad": extra}
        path = builder.save(tmp_path / "fast.glb")
        builder.gltf.set_binary_blob(bytes(builder._blob))
        expected = b"".join(bytes(part) for part in builder.gltf.save_to_bytes())
        assert path.read_bytes() == expected == builder.to_bytes()
