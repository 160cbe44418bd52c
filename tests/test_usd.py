"""USD (UsdSkel) avatars and motions: OpenUSD's own validators, the stage's layout, and the
values read back with usd-core's own queries (UsdSkel.Cache / AnimQuery)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pygltflib
import pytest

pxr = pytest.importorskip("pxr")
from pxr import Sdf, Usd, UsdGeom, UsdShade, UsdSkel  # noqa: E402

from engine.avatar.build import build_avatar  # noqa: E402
from engine.avatar.manifest import read_avatar_manifest  # noqa: E402
from engine.bundle import write_bundle  # noqa: E402
from engine.formats import WRITERS  # noqa: E402
from engine.formats.usd import prim_names, validate  # noqa: E402
from engine.rig.describe import skeleton_description  # noqa: E402
from test_avatar_build import FAST, glb_arrays, sample_bundle  # noqa: E402
from test_formats_writers import chain_scene  # noqa: E402


@pytest.fixture(scope="module")
def usd_avatar(shared_samples, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("usd")
    bundle = write_bundle(sample_bundle(shared_samples), tmp / "bundle")
    return build_avatar(bundle, tmp / "avatar", rig="rigify", formats="glb,usd,usdz", **FAST)


def _gf(matrices) -> np.ndarray:
    """Gf matrices (row-vector convention) -> N x 4 x 4 math layout."""
    return np.swapaxes(np.array([np.array(m) for m in matrices]), -1, -2)


def test_joint_names_become_valid_unique_prim_names():
    names = ["upper_arm.L", "mixamorig:Hips", "spine.001", "1st", "a.b", "a_b", "ok_name"]
    mapped = prim_names(names)
    assert all(Sdf.Path.IsValidIdentifier(n) for n in mapped)
    assert len(set(mapped)) == len(names)
    assert mapped[:4] == ["upper_arm_L", "mixamorig_Hips", "spine_001", "_1st"] and mapped[-1] == "ok_name"


def test_avatar_files_pass_openusd_validators(usd_avatar):
    manifest = read_avatar_manifest(usd_avatar)
    assert manifest["files"]["usd"] == "avatar.usdc" and manifest["files"]["usdz"] == "avatar.usdz"
    assert validate(usd_avatar / "avatar.usdc") == []
    assert validate(usd_avatar / "avatar.usdz") == []


def test_avatar_stage_holds_the_skeleton_skin_and_materials(usd_avatar):
    stage = Usd.Stage.Open(str(usd_avatar / "avatar.usdc"))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0 and UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    root = stage.GetDefaultPrim()
    assert root.IsA(UsdSkel.Root)
    skeleton_json = json.loads((usd_avatar / "skeleton.json").read_text())
    expected = skeleton_description(skeleton_json)

    skel = UsdSkel.Skeleton(stage.GetPrimAtPath("/Avatar/Skeleton"))
    joints = list(skel.GetJointsAttr().Get())
    assert list(skel.GetJointNamesAttr().Get()) == expected.names  # the convention's own names kept
    for i, path in enumerate(joints):  # parents before children, each joint under its parent
        parent = expected.parents[i]
        assert path.count("/") == (0 if parent < 0 else joints[parent].count("/") + 1)
        assert parent < 0 or path.startswith(joints[parent] + "/")
    np.testing.assert_allclose(_gf(skel.GetBindTransformsAttr().Get()), expected.bind_world, atol=1e-9)
    np.testing.assert_allclose(_gf(skel.GetRestTransformsAttr().Get()), expected.rest_local, atol=1e-9)

    body = stage.GetPrimAtPath("/Avatar/Body")
    binding = UsdSkel.BindingAPI(body)
    assert binding.GetSkeletonRel().GetTargets() == [skel.GetPath()]
    indices, weights = binding.GetJointIndicesPrimvar(), binding.GetJointWeightsPrimvar()
    assert indices.GetElementSize() == weights.GetElementSize() == 4
    assert indices.GetInterpolation() == weights.GetInterpolation() == UsdGeom.Tokens.vertex
    w = np.array(weights.Get()).reshape(-1, 4)
    j = np.array(indices.Get()).reshape(-1, 4)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(_gf([binding.GetGeomBindTransformAttr().Get()])[0], np.eye(4))

    # the same mesh, weights and UVs as the glb (st is OpenGL's: v up)
    glb = glb_arrays(usd_avatar / "avatar.glb")
    gltf = glb["gltf"]
    mesh = UsdGeom.Mesh(body)
    np.testing.assert_array_equal(np.array(mesh.GetPointsAttr().Get()), glb["positions"])
    faces = np.array(mesh.GetFaceVertexIndicesAttr().Get()).reshape(-1, 3)
    assert sorted(map(tuple, faces)) == sorted(map(tuple, glb["faces"]))
    st = np.array(UsdGeom.PrimvarsAPI(body).GetPrimvar("st").Get())
    np.testing.assert_allclose(st[:, 0], glb["uv"][:, 0], atol=1e-7)
    np.testing.assert_allclose(st[:, 1], 1.0 - glb["uv"][:, 1], atol=1e-6)
    blob = gltf.binary_blob()
    attrs = gltf.meshes[0].primitives[0].attributes

    def accessor(index, dtype, width):
        a = gltf.accessors[index]
        view = gltf.bufferViews[a.bufferView]
        return np.frombuffer(blob, dtype, a.count * width, view.byteOffset + (a.byteOffset or 0)).reshape(a.count, width)

    np.testing.assert_array_equal(j, accessor(attrs.JOINTS_0, np.uint16, 4))
    np.testing.assert_allclose(w, accessor(attrs.WEIGHTS_0, np.float32, 4), atol=1e-6)

    # one material per slot, on face subsets that partition the mesh, reading both textures
    manifest = read_avatar_manifest(usd_avatar)
    subsets = UsdShade.MaterialBindingAPI(body).GetMaterialBindSubsets()
    assert [s.GetPrim().GetName() for s in subsets] == manifest["material_slots"]
    covered = np.sort(np.concatenate([np.array(s.GetIndicesAttr().Get()) for s in subsets]))
    np.testing.assert_array_equal(covered, np.arange(len(faces)))
    for subset in subsets:
        material, _ = UsdShade.MaterialBindingAPI(subset.GetPrim()).ComputeBoundMaterial()
        surface = material.ComputeSurfaceSource()[0]
        assert surface.GetIdAttr().Get() == "UsdPreviewSurface"
        sources = {}
        for name in ("diffuseColor", "normal"):
            texture = surface.GetInput(name).GetConnectedSources()[0][0].source
            shader = UsdShade.Shader(texture.GetPrim())
            assert shader.GetIdAttr().Get() == "UsdUVTexture"
            sources[name] = shader
            reader = shader.GetInput("st").GetConnectedSources()[0][0].source
            assert UsdShade.Shader(reader.GetPrim()).GetIdAttr().Get() == "UsdPrimvarReader_float2"
        assert sources["diffuseColor"].GetInput("sourceColorSpace").Get() == "sRGB"
        assert sources["normal"].GetInput("sourceColorSpace").Get() == "raw"
        assert tuple(sources["normal"].GetInput("scale").Get()) == (2, 2, 2, 1)
        assert tuple(sources["normal"].GetInput("bias").Get()) == (-1, -1, -1, 0)
        for shader in sources.values():
            assert (usd_avatar / shader.GetInput("file").Get().path).is_file()


def test_usdz_packages_the_stage_first_with_its_textures(usd_avatar):
    with zipfile.ZipFile(usd_avatar / "avatar.usdz") as package:
        names = package.namelist()
        assert names[0] == "avatar.usdc"
        assert set(names[1:]) == {"textures/albedo.png", "textures/normal.png"}
        assert package.read("textures/albedo.png") == (usd_avatar / "textures/albedo.png").read_bytes()
        assert all(info.compress_type == zipfile.ZIP_STORED for info in package.infolist())
    assert not [p for p in usd_avatar.iterdir() if p.name.startswith(".")], "temporary files left"


def test_motion_stage_animates_every_joint_at_the_motion_rate(tmp_path):
    scene = chain_scene(frames=11)
    scene.animation.frame_data["confidence"] = np.linspace(0.2, 0.9, 11)
    scene.animation.frame_data["filled"][3] = True
    contacts = np.zeros((11, 2), bool)
    contacts[4:, 0] = True
    scene.animation.frame_data["foot_contact"] = contacts  # per-frame data of several values
    assert WRITERS["usd"].motion(scene, tmp_path) == {"usd": "animation.usdc"}
    path = tmp_path / "animation.usdc"
    assert validate(path) == []
    stage = Usd.Stage.Open(str(path))
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode()) == (0, 10)
    assert stage.GetTimeCodesPerSecond() == stage.GetFramesPerSecond() == 24.0
    skel = UsdSkel.Skeleton(stage.GetPrimAtPath("/Motion/Skeleton"))
    anim_path = UsdSkel.BindingAPI(skel.GetPrim()).GetAnimationSourceRel().GetTargets()[0]
    anim = UsdSkel.Animation(stage.GetPrimAtPath(anim_path))
    for attr in (anim.GetTranslationsAttr(), anim.GetRotationsAttr(), anim.GetScalesAttr()):
        assert attr.GetTimeSamples() == list(range(11))
    cache = UsdSkel.Cache()
    query = cache.GetSkelQuery(skel)
    world = scene.animation.world(scene.skeleton.parents)
    for frame in (0, 3, 10):
        got = _gf(query.ComputeJointSkelTransforms(Usd.TimeCode(frame)))
        np.testing.assert_allclose(got, world[frame], atol=1e-6)
    filled = anim.GetPrim().GetAttribute("sapiens:filled")
    assert [filled.Get(t) for t in range(5)] == [False, False, False, True, False]
    assert anim.GetPrim().GetAttribute("sapiens:confidence").Get(10) == pytest.approx(0.9, abs=1e-6)
    contact = anim.GetPrim().GetAttribute("sapiens:foot_contact")
    assert [list(contact.Get(t)) for t in (3, 4)] == [[False, False], [True, False]]


def test_unrigged_avatar_is_a_plain_mesh_stage(shared_samples, tmp_path):
    bundle = write_bundle(sample_bundle(shared_samples), tmp_path / "bundle")
    out = build_avatar(bundle, tmp_path / "avatar", formats=["usd"], **FAST)
    assert set(read_avatar_manifest(out)["files"]) == {"usd", "albedo_png", "albedo_exr", "normal_png"}
    assert validate(out / "avatar.usdc") == []
    stage = Usd.Stage.Open(str(out / "avatar.usdc"))
    assert not stage.GetPrimAtPath("/Avatar/Skeleton")
    assert not stage.GetPrimAtPath("/Avatar/Body").HasAPI(UsdSkel.BindingAPI)
