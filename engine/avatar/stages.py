"""The named stages of an avatar build (engine.avatar.build runs them in this order):

read (bundle read and checked, camera matrix resolved once) -> surface (engine.geometry) ->
frame (`refine_head`: the head's face/hair border split fine; UV islands split; then `place`:
the back of the head's hair, the mesh moved to the avatar frame, one normal per position; the
fused build, engine.avatar.fused, takes `refine_head` before its own islands and ends its frame
stage in `place` too) -> uv plan (texture layout, UVs, tangents) -> appearance (textures baked)
-> rig (skeleton and skin, when asked) -> write (the formats table) -> manifest (engine.avatar.manifest).

Each stage takes what the earlier ones made and returns a named result; none reads the bundle
again for something an earlier stage already resolved (the camera matrix above all).
"""

from __future__ import annotations

import json
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.avatar.describe import avatar_mesh, avatar_scene
from engine.avatar.frame import apply_transform, camera_to_avatar
from engine.avatar.inputs import camera_matrix, check_buildable
from engine.avatar.islands import assign_islands, split_islands
from engine.avatar.labels import FOOT_CLASSES_LEFT, FOOT_CLASSES_RIGHT, class_ids
from engine.avatar.textures import FRONT, HIDDEN
from engine.errors import EngineError
from engine.formats.scene import Mesh, Scene
from engine.formats.textures import write_textures
from engine.geometry.cleanup import weld_by_position
from engine.geometry.refine_border import Photo, refine_border
from engine.geometry.surface import vertex_normals  # area-weighted: the normal map adds detail on top


@dataclass
class Inputs:
    """The bundle, checked, and its camera matrix resolved once for every later stage."""

    bundle: object
    source: str
    K: np.ndarray
    K_source: str


@dataclass
class Framed:
    """The surface split into UV islands and moved to the avatar frame."""

    vertices_camera: np.ndarray  # V x 3 float64
    vertices_avatar: np.ndarray  # V x 3 float64
    normals_avatar: np.ndarray  # V x 3 float32, unit
    faces: np.ndarray
    labels: np.ndarray  # V uint8
    face_island: np.ndarray  # F island of each face (0: front)
    vertex_island: np.ndarray
    camera_to_avatar: np.ndarray  # 4 x 4
    origin: str  # how the origin was placed
    walls: np.ndarray | None = None  # F bool: faces of a parted arm's cut (seamless_normals)


@dataclass
class Rigged:
    rig: object  # engine.rig.Rig
    skeleton: object  # engine.formats.scene.Skeleton
    skin: object  # engine.formats.scene.Skin


def unit_normals(normals: np.ndarray) -> np.ndarray:
    """glTF requires unit normals: a vertex whose faces are all degenerate gets +Z (facing the camera)."""
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 0.5, normals / np.maximum(length, 1e-12), np.float32([0.0, 0.0, 1.0])).astype(np.float32)


def seamless_normals(vertices: np.ndarray, faces: np.ndarray, walls: np.ndarray | None = None) -> np.ndarray:
    """Area-weighted vertex normals with the copies of a vertex on a UV seam (same position)
    taken as one: both sides of the islands' border get the same normal (normals of each side
    alone would step the shading along the seam). walls: faces of a parted arm's cut
    (engine.geometry.arm_parting.wall_faces); a vertex that also has other faces takes its
    normal from those alone (the walls, across the skin, leaned the rim's normals 73 degrees
    and shaded a dark line along it)."""
    vertices = np.asarray(vertices)
    weld, first = weld_by_position(vertices)
    unique = vertices[first]
    # a vertex's normal sums its faces in their order whatever the numbering: np.unique's bytes
    welded = weld[faces]
    normals = vertex_normals(unique, welded)
    if walls is not None and walls.any():
        skin, wall = np.zeros(len(unique), bool), np.zeros(len(unique), bool)
        skin[welded[~walls].ravel()] = True
        wall[welded[walls].ravel()] = True
        rim = skin & wall
        normals[rim] = vertex_normals(unique, welded[~walls])[rim]
    return normals[weld]


def read(bundle_dir, *, detail: str, rig: str | None) -> Inputs:
    """Read and check the bundle for these options; a bundle without a usable camera matrix (none
    stored, none fittable to its pointmap) fails here, before any surface is built."""
    from engine.bundle import read_bundle

    bundle = read_bundle(bundle_dir)
    check_buildable(bundle, bundle_dir, detail=detail, rig=rig)
    K, K_source = camera_matrix(bundle, bundle_dir)
    return Inputs(bundle, str(bundle_dir), K, K_source)


def surface(inputs: Inputs, *, detail, resolution, watertight, target_faces, progress, on_samples=None):
    """The person's surface (engine.geometry.build_surface); on_samples: given the closed solid's
    Poisson samples before its solve (the hands' second solve, engine.avatar.detail.start_closed_hands)."""
    from engine.geometry import build_surface

    built = build_surface(
        inputs.bundle, detail=detail, resolution=resolution, watertight=watertight, target_faces=target_faces, progress=progress,
        on_samples=on_samples,
    )
    if len(built.faces) == 0:
        raise EngineError(f"{inputs.source}: the surface has no triangles (is the pointmap valid over the mask?)")
    return built


@dataclass
class HairView:
    """A photo that says where the hidden back of the head is hair (engine.avatar.appearance
    .hidden_hair_labels: the rows where its hair reaches its outline): its bundle and camera
    matrix, the mesh's vertices in its camera frame, and the vertices it should decide (those
    on its far side that no photo shows)."""

    bundle: object
    K: np.ndarray
    vertices_camera: np.ndarray  # V x 3, this photo's camera frame
    hidden: np.ndarray  # V bool


def refine_head(vertices, faces, labels, photos, *, max_faces: int | None = None):
    """The step both builds take on their surface before its UV islands are made (the one-photo
    build in `frame`, the fused one in engine.avatar.fused): the head's face/hair border split
    fine (engine.geometry.refine_border; material slots and label colours follow triangles).
    photos: engine.geometry.refine_border.Photo per view, the mesh's own frame's first.
    Returns (vertices, faces, labels)."""
    return refine_border(vertices, faces, labels, photos=photos, max_faces=max_faces)


def frame(inputs: Inputs, built, *, watertight: bool, target_faces: int | None = None, arm_tubes=()) -> Framed:
    vertices_source = np.asarray(built.vertices, np.float64)
    source_labels = built.vertex_labels
    if source_labels is None:
        source_labels = np.zeros(len(vertices_source), np.uint8)
    bundle = inputs.bundle
    photos = [Photo(bundle.seg, bundle.pointmap, inputs.K)] if bundle.seg is not None and bundle.pointmap is not None else []
    vertices_source, faces, source_labels = refine_head(vertices_source, built.faces, source_labels, photos, max_faces=target_faces)
    # a closed solid's head is split along the seen/hidden cut too (islands.assign_islands)
    vertices_source, faces, source_labels, face_island = assign_islands(
        vertices_source, faces, source_labels, inputs.bundle.pointmap, inputs.K, closed=watertight, photos=photos,
        max_faces=target_faces)
    faces, source_vertex, vertex_island = split_islands(faces, face_island)
    vertices_camera = vertices_source[source_vertex]
    labels = np.asarray(source_labels, np.uint8)[source_vertex]
    hair = [HairView(inputs.bundle, inputs.K, vertices_camera, vertex_island == HIDDEN)] if watertight else []
    return place(vertices_camera, faces, labels, face_island, vertex_island, hair_views=hair,
                 walls=parted_walls(vertices_camera, faces, arm_tubes))


def parted_walls(vertices_camera, faces, arm_tubes):
    """The faces of the parted arms' cut (engine.geometry.arm_parting.wall_faces), None without."""
    if not arm_tubes:
        return None
    from engine.geometry.arm_parting import wall_faces

    return wall_faces(vertices_camera, faces, list(arm_tubes))


def place(vertices_camera, faces, labels, face_island, vertex_island, *, hair_views=(), walls=None) -> Framed:
    """The mesh split into its UV islands (camera frame of the photo the avatar is framed by)
    made an avatar: the back of the head relabelled Hair by each of `hair_views` (a closed
    solid's hidden side; engine.avatar.appearance.hidden_hair_labels), moved to the avatar frame
    (origin between the feet) with one normal per position (seamless_normals: the islands'
    borders shade as one surface). The one-photo build and the fused one (engine.avatar.fused)
    both end their frame stage here.

    The hair's labels are decided in a thread beside the move and the normals (numpy and
    scipy release the GIL: the build's other core): the avatar frame reads the feet's labels
    only, which the relabelling (front-only classes -> Hair) leaves as they are; were the feet's
    labels to change, the frame is placed again from the new ones."""
    if not hair_views:
        return _placed(vertices_camera, faces, labels, face_island, vertex_island, walls)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatar-hair") as pool:
        hair = pool.submit(_hair_labels, labels, hair_views)
        try:
            framed = _placed(vertices_camera, faces, labels, face_island, vertex_island, walls)
        except BaseException:
            hair.result()  # the hair's error first, as when it ran first
            raise
        hair_labels = hair.result()
    if not np.array_equal(_feet(hair_labels), _feet(labels)):
        return _placed(vertices_camera, faces, hair_labels, face_island, vertex_island, walls)
    framed.labels = hair_labels
    return framed


def _hair_labels(labels, hair_views):
    from engine.avatar.appearance import hidden_hair_labels

    for view in hair_views:
        islands = np.where(view.hidden, HIDDEN, FRONT).astype(np.int8)
        labels = hidden_hair_labels(labels, islands, view.vertices_camera, view.bundle, view.K)
    return labels


def _feet(labels) -> np.ndarray:
    """The vertices camera_to_avatar reads the origin from (labelled feet, either side)."""
    return np.stack([np.isin(labels, class_ids(FOOT_CLASSES_LEFT)), np.isin(labels, class_ids(FOOT_CLASSES_RIGHT))])


def _placed(vertices_camera, faces, labels, face_island, vertex_island, walls=None) -> Framed:
    to_avatar, origin = camera_to_avatar(vertices_camera, labels)
    vertices_avatar = apply_transform(to_avatar, vertices_camera)
    normals_avatar = unit_normals(seamless_normals(vertices_avatar, faces, walls))
    return Framed(vertices_camera, vertices_avatar, normals_avatar, faces, labels, face_island, vertex_island, to_avatar, origin,
                  walls)


def uv_plan(inputs: Inputs, framed: Framed, *, texture_size: int, pool: Executor):
    """The texture layout, UVs and tangents; the photo maps start resampling in `pool` meanwhile."""
    from engine.avatar.appearance import plan_uvs

    return plan_uvs(
        inputs.bundle.mask,
        vertices_camera=framed.vertices_camera,
        vertices_avatar=framed.vertices_avatar,
        normals_avatar=framed.normals_avatar,
        faces=framed.faces,
        vertex_island=framed.vertex_island,
        K=inputs.K,
        texture_size=int(texture_size),
        bundle=inputs.bundle,
        pool=pool,
        vertex_labels=framed.labels,
    )


def final_mesh(framed: Framed, plan) -> Mesh:
    return avatar_mesh(framed.vertices_avatar.astype(np.float32), framed.normals_avatar, framed.faces, plan.uv, plan.tangents, framed.labels)


def appearance(inputs: Inputs, framed: Framed, plan, *, progress, crops=None):
    """The textures baked; crops: the crops' fusion (engine.avatar.detail.crop_texture) or None."""
    from engine.avatar.appearance import make_appearance

    return make_appearance(
        inputs.bundle,
        plan,
        vertices_camera=framed.vertices_camera,
        normals_avatar=framed.normals_avatar,
        faces=framed.faces,
        face_island=framed.face_island,
        progress=progress,
        crops=crops,
    )


def load_rigging():
    """engine.rig's entry points, or a clear error when this build has none."""
    try:
        from engine.rig import rig_from_joints
        from engine.rig.describe import skeleton_description, skin_description
        from engine.rig.lift import lift_joints
    except ImportError as exc:
        raise EngineError(
            f"a rig was requested but rigging is not available in this engine build ({exc}); build without --rig"
        ) from exc
    return lift_joints, rig_from_joints, skeleton_description, skin_description


def rig(inputs: Inputs, framed: Framed, mesh: Mesh, rigging, *, convention: str, rest_pose: str, progress,
        arm_tubes=()) -> Rigged:
    """Joints lifted with the camera matrix resolved at read; the mesh re-posed in place when a
    rest pose is asked for (its normals and tangents follow: the tangent-space normal map stays
    valid on the new frames). arm_tubes: the arms engine.avatar.parting parted from the trunk
    (camera frame), whose cut the weights keep."""
    from engine.avatar.parting import parted_sides

    lift_joints, rig_from_joints, skeleton_description, skin_description = rigging
    bundle = inputs.bundle
    if progress is not None:
        progress("rig", 0.0, "lifting joints")
    joints = lift_joints(bundle.keypoints, bundle.pointmap, bundle.seg, inputs.K, mask=bundle.mask)
    result = rig_from_joints(
        joints, mesh.vertices, mesh.faces, mesh.labels, framed.camera_to_avatar, convention=convention, rest_pose=rest_pose,
        parted=parted_sides(framed.vertices_camera, mesh.faces, list(arm_tubes)), progress=progress,
    )
    if result.rest_vertices is not None:
        from engine.avatar.textures import vertex_tangents

        mesh.vertices = np.asarray(result.rest_vertices, np.float32)
        mesh.normals = unit_normals(seamless_normals(mesh.vertices, mesh.faces, framed.walls))
        mesh.tangents = vertex_tangents(mesh.vertices, mesh.normals, mesh.uv, mesh.faces)
    return Rigged(result, skeleton_description(result.skeleton), skin_description(result))


def start_untextured(selected, scene: Scene, out_dir: Path, pool: Executor) -> dict:
    """Start, in `pool`, the writers that need no texture pixels (OBJ, PLY): they can run while
    the textures bake. {format name: future of its files}."""
    return {w.name: pool.submit(w.avatar, scene, out_dir) for w in selected if not w.needs_textures}


def write(selected, scene: Scene, out_dir: Path, albedo_linear: np.ndarray, *, started: dict, pool: Executor) -> dict[str, str]:
    """The texture files, then every chosen format not started yet; waits for the started ones.
    Returns avatar.json's files table (without avatar.json)."""
    files = write_textures(scene, out_dir, albedo_linear, pool=pool)
    for writer in selected:
        if writer.name not in started:
            files.update(writer.avatar(scene, out_dir))
    for job in started.values():
        files.update(job.result())
    return files


def write_avatar(selected, mesh: Mesh, textures, appearance, rigged: Rigged | None, *, metadata: dict, out_dir: Path,
                 started: dict, pool: Executor) -> tuple[Scene, dict[str, str]]:
    """The avatar's files: the scene (with the skeleton and skin when rigged), the writers that
    need no pixels started now when rigging kept them from starting earlier, the texture pixels,
    every other format, and skeleton.json. Returns the scene and avatar.json's files table."""
    scene = avatar_scene(mesh, textures, metadata=metadata, skeleton=rigged and rigged.skeleton, skin=rigged and rigged.skin)
    if rigged is not None:
        started = start_untextured(selected, scene, out_dir, pool)
    scene.texture("albedo").pixels = appearance.albedo_srgb8
    if scene.texture("normal") is not None:
        scene.texture("normal").pixels = appearance.normal_rgb8
    files = write(selected, scene, out_dir, appearance.albedo_linear, started=started, pool=pool)
    if rigged is not None:
        (out_dir / "skeleton.json").write_text(json.dumps(rigged.rig.skeleton, indent=1))
        files["skeleton"] = "skeleton.json"
    return scene, files


__all__ = [
    "Inputs", "Framed", "Rigged", "HairView", "read", "surface", "refine_head", "frame", "place", "uv_plan", "final_mesh", "appearance", "load_rigging", "rig",
    "start_untextured", "write", "write_avatar", "avatar_scene", "unit_normals",
]
