"""USD with usd-core (Pixar's own library): avatar.usdc / avatar.usdz and animation.usdc.

Layout of a stage (docs/avatar.md "USD"):
- stage metadata: metersPerUnit 1, upAxis Y, defaultPrim the SkelRoot, and for motions
  timeCodesPerSecond = framesPerSecond = the motion's fps, time codes 0 .. frames - 1;
- /Avatar (SkelRoot) holding /Avatar/Skeleton (UsdSkel.Skeleton: joints as paths, parents
  before children, bindTransforms in the avatar frame, restTransforms relative to the parent,
  jointNames with the convention's own names) and /Avatar/Body (Mesh: points, normals,
  primvars:st, primvars:label, and with a rig the SkelBindingAPI: primvars:skel:jointIndices /
  jointWeights with one elementSize, normalized, geomBindTransform identity);
- /Avatar/Body/<slot> GeomSubsets (familyName materialBind), each bound to
  /Avatar/Materials/<slot>: a UsdPreviewSurface reading the albedo (sRGB) and the tangent-space
  normal map (raw, scale 2 / bias -1) through UsdUVTexture + UsdPrimvarReader_float2 ("st");
- a motion: /Motion (SkelRoot) with /Motion/Skeleton bound to /Motion/Skeleton/Animation
  (SkelAnimation: translations, rotations and scales all authored on every frame) through
  skel:animationSource; per-frame data as time-sampled custom attributes sapiens:<name>.

Joint names such as Rigify's "upper_arm.L" or Mixamo's "mixamorig:Hips" are not valid prim
names: `prim_names` maps them to identifiers; the originals are kept in jointNames.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from engine.formats.scene import Scene, Skeleton, matrix_to_quaternion, uv_opengl

try:  # loading this module is how a build checks, before any work, that USD can be written
    import pxr.UsdSkel  # noqa: F401
except ImportError as exc:
    raise ImportError(f"writing USD needs Pixar's usd-core package (pip install usd-core): {exc}") from exc

AVATAR_FILE = "avatar.usdc"
AVATAR_PACKAGE = "avatar.usdz"
MOTION_FILE = "animation.usdc"


def prim_names(names: list[str]) -> list[str]:
    """Valid, unique prim names (for joints and material slots): characters outside [A-Za-z0-9_] become "_", a leading
    digit gets a "_" in front, and a name already taken gets "_2", "_3", ..."""
    out: list[str] = []
    taken: set[str] = set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_]", "_", name) or "_"
        if base[0].isdigit():
            base = "_" + base
        candidate, k = base, 2
        while candidate in taken:
            candidate, k = f"{base}_{k}", k + 1
        taken.add(candidate)
        out.append(candidate)
    return out


def joint_paths(skeleton: Skeleton) -> list[str]:
    """UsdSkel joint paths ("Hips", "Hips/Spine", ...): each joint under its parent."""
    names = prim_names(skeleton.names)
    paths: list[str] = []
    for i, parent in enumerate(skeleton.parents):
        paths.append(names[i] if parent < 0 else f"{paths[parent]}/{names[i]}")
    return paths


def _gf_matrices(matrices: np.ndarray):
    """N x 4 x 4 math-layout matrices -> Vt.Matrix4dArray (Gf multiplies row vectors: transposed)."""
    from pxr import Vt

    return Vt.Matrix4dArray.FromNumpy(np.ascontiguousarray(np.swapaxes(np.asarray(matrices, np.float64), -1, -2)))


def _new_stage(path: Path, root: str):
    from pxr import Usd, UsdGeom, UsdSkel

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    skel_root = UsdSkel.Root.Define(stage, f"/{root}")
    stage.SetDefaultPrim(skel_root.GetPrim())
    return stage, skel_root


def _define_skeleton(stage, path: str, skeleton: Skeleton):
    from pxr import Vt, UsdSkel

    usd_skeleton = UsdSkel.Skeleton.Define(stage, path)
    usd_skeleton.CreateJointsAttr(Vt.TokenArray(joint_paths(skeleton)))
    usd_skeleton.CreateJointNamesAttr(Vt.TokenArray(list(skeleton.names)))
    usd_skeleton.CreateBindTransformsAttr(_gf_matrices(skeleton.bind_world))
    usd_skeleton.CreateRestTransformsAttr(_gf_matrices(skeleton.rest_local))
    usd_skeleton.GetPrim().SetCustomDataByKey("sapiens:convention", skeleton.name)
    return usd_skeleton


def _define_material(stage, path: str, slot, textures: dict[str, str]):
    """A UsdPreviewSurface material reading the slot's textures through one st reader."""
    from pxr import Gf, Sdf, UsdShade

    material = UsdShade.Material.Define(stage, path)
    surface = UsdShade.Shader.Define(stage, f"{path}/PreviewSurface")
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(slot.roughness))
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(float(slot.metallic))
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    st_input = material.CreateInput("frame:stPrimvarName", Sdf.ValueTypeNames.String)
    st_input.Set("st")
    reader = UsdShade.Shader.Define(stage, f"{path}/StReader")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).ConnectToSource(st_input)
    st = reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)

    def texture(name: str, file: str, colour_space: str):
        shader = UsdShade.Shader.Define(stage, f"{path}/{name}")
        shader.CreateIdAttr("UsdUVTexture")
        shader.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(file))
        shader.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st)
        shader.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("clamp")
        shader.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("clamp")
        shader.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set(colour_space)
        return shader

    if slot.base_color in textures:
        albedo = texture("AlbedoTexture", textures[slot.base_color], "sRGB")
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(
            albedo.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        )
    if slot.normal in textures:
        normal = texture("NormalTexture", textures[slot.normal], "raw")
        # 8-bit tangent-space normals: [0, 1] -> [-1, 1]
        normal.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(2.0, 2.0, 2.0, 1.0))
        normal.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(-1.0, -1.0, -1.0, 0.0))
        surface.CreateInput("normal", Sdf.ValueTypeNames.Normal3f).ConnectToSource(
            normal.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        )
    return material


def _define_body(stage, path: str, scene: Scene, skeleton_prim):
    from pxr import Sdf, UsdGeom, UsdShade, UsdSkel, Vt

    mesh = scene.mesh
    body = UsdGeom.Mesh.Define(stage, path)
    n_faces = len(mesh.faces)
    body.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(mesh.vertices, np.float32)))
    body.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(n_faces, 3, np.int32)))
    body.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.ascontiguousarray(mesh.faces, np.int32).reshape(-1)))
    body.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(mesh.normals, np.float32)))
    body.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    body.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    body.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    body.CreateExtentAttr(Vt.Vec3fArray.FromNumpy(np.array([lo, hi], np.float32)))
    primvars = UsdGeom.PrimvarsAPI(body)
    primvars.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex).Set(
        Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(uv_opengl(mesh.uv)))
    )
    primvars.CreatePrimvar("label", Sdf.ValueTypeNames.IntArray, UsdGeom.Tokens.vertex).Set(
        Vt.IntArray.FromNumpy(np.asarray(mesh.labels, np.int32))
    )
    body.GetPrim().SetCustomDataByKey("sapiens:labelNames", Vt.StringArray(list(mesh.label_names)))

    if scene.materials:
        textures = {t.name: t.path for t in scene.textures}
        material_binding = UsdShade.MaterialBindingAPI.Apply(body.GetPrim())
        for slot, name in zip(scene.materials, prim_names([m.name for m in scene.materials])):
            if slot.face_indices is None:
                raise ValueError(f"material slot {slot.name!r} has no face indices (USD binds materials to face subsets)")
            material = _define_material(stage, f"{path.rsplit('/', 1)[0]}/Materials/{name}", slot, textures)
            subset = material_binding.CreateMaterialBindSubset(
                name, Vt.IntArray.FromNumpy(np.asarray(slot.face_indices, np.int32))
            )
            UsdShade.MaterialBindingAPI.Apply(subset.GetPrim()).Bind(material)
        material_binding.SetMaterialBindSubsetsFamilyType(UsdGeom.Tokens.partition)

    if skeleton_prim is not None and scene.skin is not None:
        binding = UsdSkel.BindingAPI.Apply(body.GetPrim())
        binding.CreateSkeletonRel().SetTargets([skeleton_prim.GetPath()])
        influences = scene.skin.joints.shape[1]
        indices = binding.CreateJointIndicesPrimvar(False, influences)
        indices.Set(Vt.IntArray.FromNumpy(np.ascontiguousarray(scene.skin.joints, np.int32).reshape(-1)))
        weights = np.asarray(scene.skin.weights, np.float32)
        weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        binding.CreateJointWeightsPrimvar(False, influences).Set(Vt.FloatArray.FromNumpy(np.ascontiguousarray(weights).reshape(-1)))
        binding.CreateGeomBindTransformAttr(_gf_matrices(np.eye(4)[None])[0])
    return body


def write_stage(scene: Scene, path: Path) -> None:
    """The scene as one USD layer at `path` (.usdc binary crate, .usda text)."""
    from pxr import Vt

    root = "Avatar" if scene.kind == "avatar" else "Motion"
    stage, skel_root = _new_stage(path, root)
    # the motion's metadata is already namespaced ({"sapiens": {...}}), the avatar's is not
    metadata = scene.metadata.get("sapiens", scene.metadata) if len(scene.metadata) == 1 else scene.metadata
    for key, value in _custom_data(metadata).items():
        skel_root.GetPrim().SetCustomDataByKey(f"sapiens:{key}", value)
    skeleton_prim = None
    if scene.skeleton is not None:
        skeleton_prim = _define_skeleton(stage, f"/{root}/Skeleton", scene.skeleton).GetPrim()
    if scene.mesh is not None:
        _define_body(stage, f"/{root}/Body", scene, skeleton_prim)
    if scene.animation is not None and skeleton_prim is not None:
        from pxr import UsdSkel

        animation = scene.animation
        anim = UsdSkel.Animation.Define(stage, f"/{root}/Skeleton/Animation")
        anim.CreateJointsAttr(Vt.TokenArray(joint_paths(scene.skeleton)))
        translations = np.asarray(animation.translations, np.float32)
        rotations = matrix_to_quaternion(animation.rotations).astype(np.float32)
        scales = np.ones(translations.shape, np.float16) if animation.scales is None else np.asarray(animation.scales, np.float16)
        t_attr, r_attr, s_attr = anim.CreateTranslationsAttr(), anim.CreateRotationsAttr(), anim.CreateScalesAttr()
        extras = {
            name: anim.GetPrim().CreateAttribute(f"sapiens:{name}", _value_type(values), custom=True)
            for name, values in animation.frame_data.items()
        }
        for t in range(animation.frames):
            t_attr.Set(Vt.Vec3fArray.FromNumpy(translations[t]), t)
            r_attr.Set(Vt.QuatfArray.FromNumpy(rotations[t]), t)
            s_attr.Set(Vt.Vec3hArray.FromNumpy(scales[t]), t)
            for name, attr in extras.items():
                attr.Set(_plain(animation.frame_data[name][t]), t)
        binding = UsdSkel.BindingAPI.Apply(skeleton_prim)
        binding.CreateAnimationSourceRel().SetTargets([anim.GetPath()])
        stage.SetStartTimeCode(0)
        stage.SetEndTimeCode(max(animation.frames - 1, 0))
        stage.SetTimeCodesPerSecond(float(animation.fps))
        stage.SetFramesPerSecond(float(animation.fps))
    elif scene.skeleton is not None and scene.mesh is None:
        raise ValueError("a skeleton without a mesh is written only with its animation")
    stage.GetRootLayer().Save()


def _value_type(values: np.ndarray):
    """The USD type of one frame's value: a scalar for T values, an array for T x N."""
    from pxr import Sdf

    values = np.asarray(values)
    kinds = {"b": ("Bool", "BoolArray"), "i": ("Int", "IntArray"), "u": ("Int", "IntArray"), "f": ("Float", "FloatArray")}
    if values.dtype.kind not in kinds or values.ndim > 2:
        raise ValueError(f"per-frame data of dtype {values.dtype} and shape {values.shape} has no USD type here")
    return getattr(Sdf.ValueTypeNames, kinds[values.dtype.kind][values.ndim - 1])


def _plain(value):
    """One frame's value as USD takes it."""
    from pxr import Vt

    value = np.asarray(value)
    if not value.ndim:
        return value.item()
    array = {"b": Vt.BoolArray, "i": Vt.IntArray, "u": Vt.IntArray, "f": Vt.FloatArray}[value.dtype.kind]
    cast = {"b": np.bool_, "i": np.int32, "u": np.int32, "f": np.float32}[value.dtype.kind]
    return array.FromNumpy(np.ascontiguousarray(value, cast))


def _custom_data(metadata: dict) -> dict:
    """The scene's metadata as flat customData (strings, numbers, nested dicts kept as dicts)."""
    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (bool, int, float, str)):
            return value
        return str(value)

    return {str(k): plain(v) for k, v in metadata.items()}


def write_avatar(scene: Scene, out_dir: Path) -> dict[str, str]:
    write_stage(scene, Path(out_dir) / AVATAR_FILE)
    return {"usd": AVATAR_FILE}


def write_avatar_package(scene: Scene, out_dir: Path) -> dict[str, str]:
    """avatar.usdz: the stage and its textures in one package (the textures' paths inside it
    are the same relative paths as in the directory)."""
    from pxr import Sdf

    out_dir = Path(out_dir)
    work = Path(tempfile.mkdtemp(prefix=".usdz-", dir=out_dir))
    try:
        layer = work / AVATAR_FILE
        write_stage(scene, layer)
        with Sdf.ZipFileWriter.CreateNew(str(out_dir / AVATAR_PACKAGE)) as package:
            package.AddFile(str(layer), AVATAR_FILE)
            for texture in scene.textures:
                package.AddFile(str(out_dir / texture.path), texture.path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"usdz": AVATAR_PACKAGE}


def write_motion(scene: Scene, out_dir: Path) -> dict[str, str]:
    write_stage(scene, Path(out_dir) / MOTION_FILE)
    return {"usd": MOTION_FILE}


def validate(path: str | Path) -> list[str]:
    """Every problem OpenUSD's registered validators find in the stage at `path` (all of them:
    usd-core ships no usdchecker); [] when it passes."""
    from pxr import Usd, UsdValidation

    registry = UsdValidation.ValidationRegistry()
    context = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators())
    stage = Usd.Stage.Open(str(path))
    return [error.GetErrorAsString() for error in context.Validate(stage) if not error.HasNoError()]
