"""Predictions bundle -> avatar directory (docs/avatar.md).

The stages (engine.avatar.stages): read and check the bundle (camera matrix resolved once);
build the surface (engine.geometry); split UV islands and move the mesh to the avatar frame;
plan the UVs; bake the textures; rig (when asked); write the chosen formats (engine.formats
.WRITERS) and avatar.json, all into a temporary directory beside the target that is renamed
into place, so a failure or a cancel leaves either the previous avatar or nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from engine import fileio
from engine.avatar import stages
from engine.avatar.detail import crop_texture, fuse_crop_maps, fuse_crop_surface, start_closed_hands
from engine.avatar.heap import reuse_freed_arrays
from engine.avatar.labels import groups_table, labels_table
from engine.avatar.manifest import (
    FORMAT_NAME, FORMAT_VERSION, avatar_manifest, mesh_summary, provenance, rig_summary, textures_summary,
)
from engine.avatar.parting import part_arms
from engine.errors import EngineError
from engine.formats import writers_for
from engine.formats.textures import avatar_textures

Progress = Callable[[str, float, str], None]

DETAIL_CHOICES = ("none", "normals")
RESOLUTION_CHOICES = ("full", "half", "quarter")
# the baking arrays grow with the texture: at 8192 texels on the long side a 300k-pixel person
# peaks at 4.8 GB (bench/bench_avatar.py), at 4096 at 1.4 GB
MAX_TEXTURE_SIZE = 8192


def _check_options(detail, resolution, target_faces, texture_size) -> None:
    if detail not in DETAIL_CHOICES:
        raise EngineError(f"detail must be one of {', '.join(DETAIL_CHOICES)}, not {detail!r}")
    if resolution not in RESOLUTION_CHOICES:
        raise EngineError(f"resolution must be one of {', '.join(RESOLUTION_CHOICES)}, not {resolution!r}")
    if target_faces is not None and int(target_faces) < 100:
        raise EngineError(f"the target face count must be at least 100, not {target_faces}")
    if not 64 <= int(texture_size) <= MAX_TEXTURE_SIZE:
        raise EngineError(f"texture size must be between 64 and {MAX_TEXTURE_SIZE} texels, not {texture_size}")


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
    watertight: bool = True,  # closed by default, as the options table (engine/options.py) declares
    target_faces: int | None = None,
    texture_size: int = 2048,
    rig: str | None = None,
    rest_pose: str = "photo",
    formats=None,
    detail_crops: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Build the avatar directory `out_dir` from the bundle at `bundle_dir`; returns `out_dir`.

    rig: a skeleton convention (assets/rigs/NAME.json, e.g. "rigify"), None for no rig: the one
    default of this call that is not the options table's (the CLI, protocol, panel and batch rig
    with "rigify"), so that a script's build of a bundle without keypoints does not fail;
    rest_pose: "photo" (the pose in the photo) or a canonical pose the rig straightens the mesh
    to (docs/rig.md).
    formats: the file formats to write (names in engine.formats.WRITERS, a list or "glb,obj";
    None: engine.formats.AVATAR_DEFAULT); the textures and avatar.json are always written.
    detail_crops: fuse the bundle's hand and face crops, when it has them (engine.avatar.detail).
    Raises BundleError for a bundle that cannot be built, EngineError for bad options, and
    Cancelled when `progress` raises it; in every case nothing is left at `out_dir` (an avatar
    already there stays as it was).
    """
    with reuse_freed_arrays():
        return _build_avatar(
            bundle_dir, out_dir, detail=detail, resolution=resolution, watertight=watertight, target_faces=target_faces,
            texture_size=texture_size, rig=rig, rest_pose=rest_pose, formats=formats, detail_crops=detail_crops,
            progress=progress,
        )


def _build_avatar(bundle_dir, out_dir, *, detail, resolution, watertight, target_faces, texture_size, rig, rest_pose, formats,
                  detail_crops, progress) -> Path:
    _check_options(detail, resolution, target_faces, texture_size)
    if rest_pose != "photo" and not rig:
        raise EngineError(f"a rest pose ({rest_pose}) applies to a rig: ask for one with rig=NAME (--rig)")
    selected = writers_for(formats, "avatar")
    rigging = stages.load_rigging() if rig else None
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
    inputs = stages.read(bundle_dir, detail=detail, rig=rig)
    bundle = inputs.bundle
    lap("read")
    report("read", 1.0, f"photo {bundle.size[0]} x {bundle.size[1]}, {int(bundle.mask.sum())} person pixels")

    _check_output(out_dir)
    # Writers run beside the texture baking; leaving the block waits for them (a failure or a
    # cancel drops the ones not started) before the staging directory is published or removed.
    with fileio.atomic_directory(out_dir) as tmp, _writer_pool() as writers:
        # the hands' second solve starts as soon as the crops are aligned, beside the maps' fusion
        # and the body's solve (engine.geometry.detail_solid.HandSolve)
        solving = []
        crops = fuse_crop_maps(inputs, enabled=detail_crops, resolution=resolution, on_aligned=lambda aligned: solving.append(
            start_closed_hands(inputs, aligned, watertight=watertight, target_faces=target_faces, progress=progress)))
        hands = solving[0] if solving else None
        built = stages.surface(
            inputs, detail=detail, resolution=resolution, watertight=watertight, target_faces=target_faces, progress=progress,
            on_samples=None if hands is None else hands.body_samples,
        )
        built = fuse_crop_surface(inputs, built, crops, watertight=watertight, target_faces=target_faces)
        # a rig raises the arms: part them from what they touch in the closed solid
        arm_tubes = []
        if rigging is not None and watertight:
            built, arm_tubes = part_arms(inputs, built, progress=progress)
        lap("surface")

        report("frame", 0.0, "UV islands and avatar frame")
        framed = stages.frame(inputs, built, watertight=watertight, target_faces=target_faces, arm_tubes=arm_tubes)
        lap("frame")

        plan = stages.uv_plan(inputs, framed, texture_size=texture_size, pool=writers)
        mesh = stages.final_mesh(framed, plan)
        textures = avatar_textures(normal_map=bundle.normal is not None)
        metadata = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "description": "avatar.json"}
        # without a rig the mesh is final now: the formats that need no texture are written while
        # the textures bake
        started = {} if rigging else stages.start_untextured(selected, stages.avatar_scene(mesh, textures, metadata=metadata), tmp, writers)
        # the crops' albedo and normals are fused inside the bake (beside the normal map's)
        appearance = stages.appearance(inputs, framed, plan, progress=progress,
                                       crops=crop_texture(crops, inputs.bundle.mask, framed=framed, K=inputs.K))
        lap("textures")

        rigged = None
        if rigging is not None:
            report("rig", 0.0, f"rigging ({rig})")
            rigged = stages.rig(inputs, framed, mesh, rigging, convention=rig, rest_pose=rest_pose, progress=progress,
                                arm_tubes=arm_tubes)
            lap("rig")

        report("write", 0.0, f"writing {out_dir}")
        scene, files = stages.write_avatar(selected, mesh, textures, appearance, rigged, metadata=metadata, out_dir=tmp,
                                    started=started, pool=writers)
        lap("write")

        manifest = avatar_manifest(
            name=_avatar_name(bundle, bundle_dir),
            camera_to_avatar=framed.camera_to_avatar,
            origin=framed.origin,
            K=inputs.K,
            K_source=inputs.K_source,
            photo_size=bundle.size,
            mesh=mesh_summary(mesh, framed, built, closed=watertight),
            textures=textures_summary(appearance),
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
                "formats": [w.name for w in selected],
                "detail_crops": bool(detail_crops),
            },
            rig=None if rigged is None else rig_summary(rigged.rig, rig),
            provenance=provenance(bundle, bundle_dir, _engine_version()),
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
