"""Predictions bundle -> avatar directory (docs/avatar.md).

Stages: read and check the bundle; build the surface (engine.geometry); split UV islands and move
the mesh to the avatar frame; bake the textures; rig (when asked); write every file into a
temporary directory beside the target and rename it into place, so a failure or a cancel leaves
either the previous avatar or nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engine.avatar.appearance import make_appearance, plan_uvs
from engine.avatar.frame import apply_transform, camera_to_avatar
from engine.avatar.heap import reuse_freed_arrays
from engine.avatar.islands import assign_islands, split_islands
from engine.avatar.inputs import camera_matrix, check_buildable
from engine.avatar.labels import groups_table, labels_table
from engine.avatar.describe import avatar_mesh, avatar_scene
from engine.avatar.manifest import FORMAT_NAME, FORMAT_VERSION, avatar_manifest
from engine import fileio
from engine.formats import writers_for
from engine.formats.textures import avatar_textures, write_textures
from engine.errors import EngineError
from engine.geometry.surface import vertex_normals  # area-weighted: the normal map adds detail on top

Progress = Callable[[str, float, str], None]

DETAIL_CHOICES = ("none", "normals")
RESOLUTION_CHOICES = ("full", "half", "quarter")
# the baking arrays grow with the texture: at 8192 texels on the long side a 300k-pixel person
# peaks at 4.8 GB (bench/bench_avatar.py), at 4096 at 1.4 GB
MAX_TEXTURE_SIZE = 8192


def _unit_normals(normals: np.ndarray) -> np.ndarray:
    """glTF requires unit normals: a vertex whose faces are all degenerate gets +Z (facing the camera)."""
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 0.5, normals / np.maximum(length, 1e-12), np.float32([0.0, 0.0, 1.0])).astype(np.float32)


def _check_options(detail, resolution, target_faces, texture_size) -> None:
    if detail not in DETAIL_CHOICES:
        raise EngineError(f"detail must be one of {', '.join(DETAIL_CHOICES)}, not {detail!r}")
    if resolution not in RESOLUTION_CHOICES:
        raise EngineError(f"resolution must be one of {', '.join(RESOLUTION_CHOICES)}, not {resolution!r}")
    if target_faces is not None and int(target_faces) < 100:
        raise EngineError(f"the target face count must be at least 100, not {target_faces}")
    if not 64 <= int(texture_size) <= MAX_TEXTURE_SIZE:
        raise EngineError(f"texture size must be between 64 and {MAX_TEXTURE_SIZE} texels, not {texture_size}")


def _load_rigging():
    """engine.rig's entry points, or a clear error when this build has none."""
    try:
        from engine.rig import rig_avatar
        from engine.rig.describe import skeleton_description, skin_description
    except ImportError as exc:
        raise EngineError(
            f"a rig was requested but rigging is not available in this engine build ({exc}); build without --rig"
        ) from exc
    return rig_avatar, skeleton_description, skin_description


@contextmanager
def _writer_pool():
    """Two writer threads (this machine class has 2+ cores; zlib, OpenEXR, numpy and file
    writes release the GIL). On the way out it waits for the running jobs and drops queued ones."""
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="avatar-writer")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_output(out_dir: Path) -> None:
    """Refuse to replace something that is not an avatar."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise EngineError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / "avatar.json").is_file():
            raise EngineError(f"{out_dir}: exists and is not an avatar directory; choose an empty or new directory")


def build_avatar(
    bundle_dir,
    out_dir,
    *,
    detail: str = "normals",
    resolution: str = "full",
    watertight: bool = False,
    target_faces: int | None = None,
    texture_size: int = 2048,
    rig: str | None = None,
    rest_pose: str = "photo",
    formats=None,
    progress: Progress | None = None,
) -> Path:
    """Build the avatar directory `out_dir` from the bundle at `bundle_dir`; returns `out_dir`.

    rig: a skeleton convention (assets/rigs/NAME.json, e.g. "rigify"); rest_pose: "photo" (the
    pose in the photo) or a canonical pose the rig straightens the mesh to (docs/rig.md).
    formats: the file formats to write (names in engine.formats.WRITERS, a list or "glb,obj";
    None: engine.formats.AVATAR_DEFAULT); the textures and avatar.json are always written.
    Raises BundleError for a bundle that cannot be built, EngineError for bad options, and
    Cancelled when `progress` raises it; in every case nothing is left at `out_dir` (an avatar
    already there stays as it was).
    """
    with reuse_freed_arrays():
        return _build_avatar(
            bundle_dir, out_dir, detail=detail, resolution=resolution, watertight=watertight, target_faces=target_faces,
            texture_size=texture_size, rig=rig, rest_pose=rest_pose, formats=formats, progress=progress,
        )


def _build_avatar(bundle_dir, out_dir, *, detail, resolution, watertight, target_faces, texture_size, rig, rest_pose, formats, progress) -> Path:
    from engine.bundle import read_bundle

    _check_options(detail, resolution, target_faces, texture_size)
    if rest_pose != "photo" and not rig:
        raise EngineError(f"a rest pose ({rest_pose}) applies to a rig: ask for one with rig=NAME (--rig)")
    selected = writers_for(formats, "avatar")
    rigging = _load_rigging() if rig else None
    out_dir = Path(out_dir)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def report(stage: str, fraction: float, message: str) -> None:
        if progress is not None:
            progress(stage, fraction, message)

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    report("read", 0.0, f"reading {bundle_dir}")
    bundle = read_bundle(bundle_dir)
    check_buildable(bundle, bundle_dir, detail=detail, rig=rig)
    K, K_source = camera_matrix(bundle, bundle_dir)
    lap("read")
    report("read", 1.0, f"photo {bundle.size[0]} x {bundle.size[1]}, {int(bundle.mask.sum())} person pixels")

    _check_output(out_dir)
    # Writers run beside the texture baking; leaving the block waits for them (a failure or a
    # cancel drops the ones not started) before the staging directory is published or removed.
    with fileio.atomic_directory(out_dir) as tmp, _writer_pool() as writers:
        from engine.geometry import build_surface

        surface = build_surface(
            bundle, detail=detail, resolution=resolution, watertight=watertight, target_faces=target_faces, progress=progress
        )
        if len(surface.faces) == 0:
            raise EngineError(f"{bundle_dir}: the surface has no triangles (is the pointmap valid over the mask?)")
        lap("surface")

        report("frame", 0.0, "UV islands and avatar frame")
        vertices_source = np.asarray(surface.vertices, np.float64)
        source_labels = surface.vertex_labels
        if source_labels is None:
            source_labels = np.zeros(len(vertices_source), np.uint8)
        face_island = assign_islands(vertices_source, surface.faces, bundle.pointmap, K, closed=watertight)
        faces, source_vertex, vertex_island = split_islands(surface.faces, face_island)
        vertices_camera = vertices_source[source_vertex]
        labels = np.asarray(source_labels, np.uint8)[source_vertex]
        to_avatar, origin = camera_to_avatar(vertices_camera, labels)
        vertices_avatar = apply_transform(to_avatar, vertices_camera)
        normals_avatar = _unit_normals(vertex_normals(vertices_avatar, faces))
        lap("frame")

        uv_plan = plan_uvs(
            bundle.mask,
            vertices_camera=vertices_camera,
            vertices_avatar=vertices_avatar,
            normals_avatar=normals_avatar,
            faces=faces,
            vertex_island=vertex_island,
            K=K,
            texture_size=int(texture_size),
            bundle=bundle,
            pool=writers,  # the photo maps resample there while the tangents are computed
        )
        mesh = avatar_mesh(
            vertices_avatar.astype(np.float32), normals_avatar, faces, uv_plan.uv, uv_plan.tangents, labels
        )
        textures = avatar_textures(normal_map=bundle.normal is not None)
        metadata = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "description": "avatar.json"}
        # Writers that need neither the textures nor the rig run now, beside the texture baking:
        # without a rig the mesh is final already.
        early: dict = {}
        if rigging is None:
            scene = avatar_scene(mesh, textures, metadata=metadata)
            early = {w.name: writers.submit(w.avatar, scene, tmp) for w in selected if not w.needs_textures}
        appearance = make_appearance(
            bundle,
            uv_plan,
            vertices_camera=vertices_camera,
            normals_avatar=normals_avatar,
            faces=faces,
            face_island=face_island,
            progress=progress,
        )
        lap("textures")

        rig_result = skeleton = skin = None
        if rigging is not None:
            rig_avatar, skeleton_description, skin_description = rigging
            report("rig", 0.0, f"rigging ({rig})")
            rig_result = rig_avatar(
                bundle, mesh.vertices, mesh.faces, mesh.labels, to_avatar, convention=rig, rest_pose=rest_pose, progress=progress
            )
            if rig_result.rest_vertices is not None:
                # re-posed to a rest pose: the tangent-space normal map stays valid on the new frames
                from engine.avatar.textures import vertex_tangents

                mesh.vertices = np.asarray(rig_result.rest_vertices, np.float32)
                mesh.normals = _unit_normals(vertex_normals(mesh.vertices, mesh.faces))
                mesh.tangents = vertex_tangents(mesh.vertices, mesh.normals, mesh.uv, mesh.faces)
            skeleton, skin = skeleton_description(rig_result.skeleton), skin_description(rig_result)
            lap("rig")

        report("write", 0.0, f"writing {out_dir}")
        scene = avatar_scene(mesh, textures, metadata=metadata, skeleton=skeleton, skin=skin)
        if rigging is not None:
            early = {w.name: writers.submit(w.avatar, scene, tmp) for w in selected if not w.needs_textures}
        scene.texture("albedo").pixels = appearance.albedo_srgb8
        if scene.texture("normal") is not None:
            scene.texture("normal").pixels = appearance.normal_rgb8
        files = write_textures(scene, tmp, appearance.albedo_linear, pool=writers)
        for writer in selected:
            if writer.name not in early:
                files.update(writer.avatar(scene, tmp))
        if rig_result is not None:
            (tmp / "skeleton.json").write_text(json.dumps(rig_result.skeleton, indent=1))
            files["skeleton"] = "skeleton.json"
        for job in early.values():
            files.update(job.result())
        lap("write")

        manifest = avatar_manifest(
            name=_avatar_name(bundle, bundle_dir),
            camera_to_avatar=to_avatar,
            origin=origin,
            K=K,
            K_source=K_source,
            photo_size=bundle.size,
            mesh={
                "vertices": int(len(mesh.vertices)),
                "faces": int(len(mesh.faces)),
                "closed": bool(watertight),
                "bounds": [np.round(mesh.vertices.min(axis=0), 5).tolist(), np.round(mesh.vertices.max(axis=0), 5).tolist()],
                "height": round(float(np.ptp(mesh.vertices[:, 1])), 5),
                "uv_islands": int(vertex_island.max()) + 1,
                "hidden_faces": int((face_island != 0).sum()),
                "surface": getattr(surface, "stats", None) or {},
            },
            textures={
                "size": [appearance.layout.width, appearance.layout.height],
                "albedo_source": appearance.albedo_source,
                "albedo_note": None
                if appearance.albedo_source == "albedo"
                else "the bundle has no albedo: the base colour is the photo itself, lighting included",
                "colour_space": {"albedo_png": "sRGB", "albedo_exr": "linear Rec.709, half float"},
                "normal_map": None
                if appearance.normal_rgb8 is None
                else {"space": "tangent", "convention": "glTF / OpenGL (+Y up), MikkTSpace-style tangents", "baked_fraction": round(appearance.stats["normal_baked_fraction"], 4)},
                "layout": {
                    "crop_photo_px": [float(c) for c in appearance.layout.crop],
                    "islands": ["front", "hidden"][: appearance.layout.n_islands],
                    "island_width": appearance.layout.island_width,
                    "gutter": appearance.layout.gutter if appearance.layout.n_islands > 1 else 0,
                },
                "fill": round(appearance.stats["texture_fill"], 4),
            },
            labels=labels_table(mesh.labels),
            label_groups=groups_table(),
            material_slots=[m.name for m in scene.materials],
            files=dict(sorted(files.items())),
            options={
                "detail": detail,
                "resolution": resolution,
                "watertight": bool(watertight),
                "target_faces": None if target_faces is None else int(target_faces),
                "texture_size": int(texture_size),
                "rig": rig,
                "rest_pose": rest_pose if rig else None,
            },
            rig=None
            if rig_result is None
            else {
                "convention": rig,
                "bones": len(rig_result.skeleton.get("bones", [])),
                "deform_bones": len(rig_result.joint_names),
                "rest_pose_applied": rig_result.rest_vertices is not None,
            },
            provenance={
                "engine": _engine_version(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "bundle": {
                    "path": str(bundle_dir),
                    "format": bundle.meta.get("format"),
                    "version": bundle.meta.get("version"),
                    "provenance": bundle.meta.get("provenance"),
                    "source": bundle.meta.get("source"),
                    "notes": bundle.meta.get("notes"),
                },
            },
            timings=timings,
        )
        # avatar.json last: its presence marks the directory complete
        (tmp / "avatar.json").write_text(json.dumps(manifest, indent=1))
        report("write", 0.9, "publishing")
    report("write", 1.0, f"avatar written to {out_dir}")
    return out_dir


def _avatar_name(bundle, bundle_dir) -> str:
    """The photo's name when the bundle knows it, else the bundle directory's."""
    photo = (bundle.meta.get("photo") or {}).get("path") or (bundle.meta.get("photo") or {}).get("name")
    return Path(photo).stem if photo else Path(bundle_dir).name


def _engine_version() -> str:
    from engine import __version__

    return f"sapiens-engine {__version__}"
