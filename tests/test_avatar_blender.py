"""The avatar.glb in real Blender (bpy): Blender's own glTF importer, factory settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.avatar.build import build_avatar
from engine.avatar.manifest import read_avatar_manifest
from engine.bundle import write_bundle

from tests.test_avatar_build import FAST, glb_arrays, sample_bundle

bpy = pytest.importorskip("bpy")


@pytest.fixture(scope="module")
def imported(shared_samples, tmp_path_factory):
    root = tmp_path_factory.mktemp("blender")
    bundle = write_bundle(sample_bundle(shared_samples, "person_102"), root / "bundle")
    avatar = build_avatar(bundle, root / "avatar", **FAST)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(avatar / "avatar.glb"))
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    assert len(meshes) == 1, [o.name for o in bpy.data.objects]
    return avatar, meshes[0]


def test_mesh_uvs_and_textures_arrive_in_blender(imported):
    avatar, obj = imported
    manifest = read_avatar_manifest(avatar)
    mesh = obj.data
    assert len(mesh.vertices) > 0.9 * manifest["mesh"]["vertices"]  # the importer may merge seam vertices
    assert len(mesh.polygons) == manifest["mesh"]["faces"]
    assert len(mesh.uv_layers) == 1
    assert [m.name for m in mesh.materials] == manifest["material_slots"]
    width, height = manifest["textures"]["size"]
    for material in mesh.materials:
        nodes = material.node_tree.nodes
        images = [n.image for n in nodes if n.type == "TEX_IMAGE" and n.image is not None]
        assert len(images) == 2 and all(tuple(image.size) == (width, height) for image in images)
        assert any(n.type == "NORMAL_MAP" for n in nodes)
        bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
        assert bsdf.inputs["Base Color"].is_linked and bsdf.inputs["Normal"].is_linked
    # the avatar stands on the ground in Blender's Z-up frame
    co = np.empty(len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", co)
    z = co.reshape(-1, 3)[:, 2]
    assert z.min() == pytest.approx(0.0, abs=1e-4) and z.max() > 1.4


def test_blender_tangent_frames_match_the_ones_the_normal_map_was_baked_for(imported):
    """Blender computes MikkTSpace tangents itself; the bake used ours. They must agree."""
    avatar, obj = imported
    mesh = obj.data
    mesh.calc_tangents(uvmap=mesh.uv_layers[0].name)
    n_loops = len(mesh.loops)
    tangent, sign, vertex = np.empty(n_loops * 3), np.empty(n_loops), np.empty(n_loops, np.int64)
    mesh.loops.foreach_get("tangent", tangent)
    mesh.loops.foreach_get("bitangent_sign", sign)
    mesh.loops.foreach_get("vertex_index", vertex)
    co = np.empty(len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)

    glb = glb_arrays(avatar / "avatar.glb")
    # Blender is Z-up: glTF (x, y, z) -> Blender (x, -z, y)
    to_blender = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    ours_pos = glb["positions"] @ to_blender.T
    from scipy.spatial import cKDTree

    distance, index = cKDTree(ours_pos).query(co[vertex])
    assert distance.max() < 1e-5
    ours_tangent = glb["tangents"][index, :3] @ to_blender.T
    ours_sign = glb["tangents"][index, 3]
    cos = np.einsum("ij,ij->i", ours_tangent, tangent.reshape(-1, 3))
    # Measured on person_102: handedness agrees on every loop, 99.8 % of tangents within 2 degrees
    assert np.mean(sign == ours_sign) > 0.995
    assert np.median(cos) > 0.9999 and np.mean(cos > np.cos(np.radians(2))) > 0.99
