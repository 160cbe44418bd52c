"""build_surface: predicted maps of one person -> a metric triangle mesh with UVs and labels.

Stages (each reports progress as stage "surface"):
1. check the inputs (BundleError naming the problem);
2. downsample to the asked resolution (mask-aware, front-most layer; K rescaled);
3. open surface: detail="normals" refines the depth with the normals, the pointmap as prior
   (engine/geometry/normal_integration.py); then a pixel-grid mesh cut at depth
   discontinuities (grid_mesh.py), cleaned (cleanup.py);
4. watertight=True instead: trusted front, refined on the solid's own grid, back, screened
   Poisson at depth 7, split in four, the seen front snapped onto the front's depth
   (watertight.py, trust.py);
6. target_faces: quadric decimation keeping UVs and labels (cleanup.decimate).

UVs are the photo projection of each vertex: u = x / W, v = y / H with (x, y) = K (X/Z, Y/Z, 1)
in photo pixel coordinates (pixel centres at +0.5). That is glTF's convention (UV origin at the
top-left of the image, v down), so these UVs go to TEXCOORD_0 unchanged; OBJ wants 1 - v.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.errors import BundleError, EngineError
from engine.geometry.cleanup import clean_mesh, decimate, face_cross, row_lengths
from engine.geometry.grid_mesh import downsample_maps, finite_pixels, grid_mesh, valid_pixels

RESOLUTIONS = {"full": 1, "half": 2, "quarter": 4}
DETAILS = ("normals", "none")


@dataclass
class Surface:
    vertices: np.ndarray  # V x 3 float32, camera frame (OpenCV), metres
    faces: np.ndarray  # F x 3 int32, counter-clockwise seen from outside (front faces the camera)
    vertex_normals: np.ndarray  # V x 3 float32 unit, area-weighted from the faces, outward
    uv: np.ndarray  # V x 2 float32 photo projection in [0, 1], origin top-left (glTF convention)
    vertex_labels: np.ndarray | None  # V uint8 segmentation class id (0 = unknown), None without seg
    vertex_pixel: np.ndarray  # V x 2 int32 (row, col) in the processing grid; -1 if not from a pixel
    front: np.ndarray  # V bool: the vertex lies on the surface the camera saw
    grid_factor: int  # processing grid = photo pixels / grid_factor (1 full, 2 half, 4 quarter)
    stats: dict = field(default_factory=dict)


Progress = Callable[[str, float, str], None] | None


def _check_inputs(pointmap, normal, mask, seg, K, detail):
    if pointmap is None:
        raise BundleError("the bundle has no pointmap: a surface needs one")
    pointmap = np.asarray(pointmap)
    if pointmap.ndim != 3 or pointmap.shape[2] != 3:
        raise BundleError(f"pointmap must be H x W x 3, got shape {pointmap.shape}")
    H, W = pointmap.shape[:2]
    if mask is None:
        raise BundleError("the bundle has no person mask")
    mask = np.asarray(mask)
    if mask.shape != (H, W):
        raise BundleError(f"mask is {mask.shape[:2]} but the pointmap is {(H, W)}: sizes differ")
    mask = mask.astype(bool)
    if not mask.any():
        raise BundleError("the person mask is empty: no person to build")
    if normal is not None:
        normal = np.asarray(normal)
        if normal.shape != (H, W, 3):
            raise BundleError(f"normal map is {normal.shape} but the pointmap is {(H, W, 3)}: sizes differ")
    elif detail == "normals":
        raise BundleError("detail='normals' needs a normal map and the bundle has none (use detail='none')")
    if seg is not None:
        seg = np.asarray(seg)
        if seg.shape != (H, W):
            raise BundleError(f"segmentation is {seg.shape} but the pointmap is {(H, W)}: sizes differ")
    K = np.asarray(K, np.float64) if K is not None else None
    if K is None or K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise BundleError(f"K is not a valid 3 x 3 pinhole intrinsics matrix: {None if K is None else K.tolist()}")
    valid = valid_pixels(pointmap, mask)
    if not valid.any():
        raise BundleError("the pointmap has no finite point with positive depth inside the person mask")
    if valid.sum() < 0.5 * mask.sum():
        raise BundleError(
            f"the pointmap is NaN or behind the camera on {int(mask.sum() - valid.sum())} of "
            f"{int(mask.sum())} person pixels: it does not match the mask"
        )
    if normal is not None and detail == "normals":
        with_normal = valid & finite_pixels(normal)
        if with_normal.sum() < 0.5 * valid.sum():
            raise BundleError("the normal map is NaN on most of the person: cannot refine with it (use detail='none')")
    return pointmap.astype(np.float32), normal, mask, seg, K


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (unit; zero-length where a vertex has no face)."""
    v = np.asarray(vertices, np.float64)
    face_normal = face_cross(v, faces)
    out = np.zeros_like(v)
    for axis in range(3):
        out[:, axis] = np.bincount(faces.ravel(), np.repeat(face_normal[:, axis], 3), len(v))
    length = row_lengths(out)[:, None]
    return (out / np.where(length > 0, length, 1.0)).astype(np.float32)


def project_uv(vertices: np.ndarray, K: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Photo-projection UVs in [0, 1] (u = x / W, v = y / H, origin top-left)."""
    H, W = size_hw
    v = np.asarray(vertices, np.float64)
    z = np.where(np.abs(v[:, 2]) > 1e-9, v[:, 2], 1e-9)
    x = K[0, 0] * v[:, 0] / z + K[0, 1] * v[:, 1] / z + K[0, 2]
    y = K[1, 1] * v[:, 1] / z + K[1, 2]
    return np.clip(np.stack([x / W, y / H], -1), 0.0, 1.0).astype(np.float32)


def build_surface(
    source,
    normal: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    seg: np.ndarray | None = None,
    K: np.ndarray | None = None,
    *,
    detail: str = "normals",
    resolution: str = "full",
    watertight: bool = False,
    target_faces: int | None = None,
    progress: Progress = None,
    on_samples=None,
    keypoints: np.ndarray | None = None,
) -> Surface:
    """Mesh of the person from a pointmap (H x W x 3) or a Bundle (engine.bundle.Bundle).

    `source` is the pointmap, or a bundle-like object with .pointmap, .normal, .mask, .seg, .K
    (arguments given explicitly override its fields; without any K, one is fitted to the
    pointmap). Raises BundleError for unusable inputs and EngineError for unknown options.
    on_samples: for a watertight surface, called with the closed solid's Poisson samples before
    its solve (engine.geometry.watertight.close_surface).
    keypoints: the photo's 308 pose keypoints (x, y, score), the bundle's when not given; the
    closed solid's labels behind the upper arms ask them how each arm hangs (engine.geometry.arm_pose).
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress("surface", fraction, message)

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    if detail not in DETAILS:
        raise EngineError(f"detail must be one of {DETAILS}, got {detail!r}")
    if resolution not in RESOLUTIONS:
        raise EngineError(f"resolution must be one of {tuple(RESOLUTIONS)}, got {resolution!r}")
    if target_faces is not None and int(target_faces) < 100:
        raise EngineError(f"target_faces must be at least 100, got {target_faces}")

    if hasattr(source, "pointmap"):
        bundle = source
        pointmap = bundle.pointmap
        normal = bundle.normal if normal is None else normal
        mask = bundle.mask if mask is None else mask
        seg = bundle.seg if seg is None else seg
        K = bundle.K if K is None else K
        keypoints = getattr(bundle, "keypoints", None) if keypoints is None else keypoints
        if K is None and pointmap is not None and mask is not None:
            from engine.intrinsics import intrinsics_from_pointmap

            fitted = intrinsics_from_pointmap(np.asarray(pointmap), np.asarray(mask, bool))
            K = None if fitted is None else fitted.K
    else:
        pointmap = source
    pointmap, normal, mask, seg, K = _check_inputs(pointmap, normal, mask, seg, K, detail)
    photo_hw = mask.shape
    factor = RESOLUTIONS[resolution]
    clock = time.perf_counter()

    # Work on the person's bounding box (aligned to the grid factor, one block of margin): the
    # cost of every stage follows the number of pixels it touches.
    rows, cols = np.nonzero(mask)
    r0 = max(0, (rows.min() // factor - 1) * factor)
    c0 = max(0, (cols.min() // factor - 1) * factor)
    r1, c1 = min(photo_hw[0], rows.max() + 1 + factor), min(photo_hw[1], cols.max() + 1 + factor)
    crop = (slice(r0, r1), slice(c0, c1))
    K_crop = K.copy()
    K_crop[0, 2] -= c0
    K_crop[1, 2] -= r0

    report(0.0, f"{resolution} resolution grid")
    points, grid_mask, grid_normal, grid_seg, grid_K = downsample_maps(
        factor,
        pointmap[crop],
        mask[crop],
        None if normal is None else normal[crop],
        None if seg is None else seg[crop],
        K_crop,
    )
    grid_offset = np.array([r0 // factor, c0 // factor], np.int32)
    clock = lap("downsample", clock)

    stats: dict = {
        "resolution": resolution,
        "detail": detail,
        "grid": [-(-photo_hw[0] // factor), -(-photo_hw[1] // factor)],
        "grid_crop": [int(grid_offset[0]), int(grid_offset[1]), *grid_mask.shape],
    }
    if watertight:
        # the closed solid refines (on its own grid) and meshes itself: no front mesh here
        from engine.geometry.arm_pose import upper_arm_axes
        from engine.geometry.watertight import close_surface

        report(0.1, "closing the surface (trusted front, back, Poisson)")
        solid = close_surface(points, grid_mask, grid_seg, grid_K, grid_normal, refine=detail == "normals", progress=progress,
                              on_samples=on_samples, arm_axes=upper_arm_axes(keypoints, K))
        vertices, faces, labels = solid.vertices, solid.faces, solid.labels
        stats["person_pixels"] = int(grid_mask.sum())
        stats["watertight"] = solid.stats
        # A vertex is on the seen front when it sits at the front depth of its pixel.
        front_depth = solid.front_points[..., 2]
        uvg = project_uv(vertices, grid_K, grid_mask.shape)
        rows = np.clip((uvg[:, 1] * grid_mask.shape[0]).astype(np.int64), 0, grid_mask.shape[0] - 1)
        cols = np.clip((uvg[:, 0] * grid_mask.shape[1]).astype(np.int64), 0, grid_mask.shape[1] - 1)
        with np.errstate(invalid="ignore"):
            front = np.abs(vertices[:, 2] - front_depth[rows, cols]) < 0.01 + 0.01 * vertices[:, 2]
        pixel = np.full((len(vertices), 2), -1, np.int32)
        clock = lap("watertight", clock)
    else:
        if detail == "normals":
            from engine.geometry.normal_integration import refine_depth

            report(0.1, "refining depth with the normals")
            # cut at the steps the pointmap's own noise does not explain (a fringe's lip kept)
            refined, info = refine_depth(points, grid_normal, grid_mask, grid_K, jump_rtol="auto")
            points = np.where(np.isfinite(refined), refined, points)
            stats["refine_levels"] = info.levels
            clock = lap("refine", clock)

        report(0.5, "pixel-grid mesh")
        grid = grid_mesh(points, grid_mask, normal=grid_normal, seg=grid_seg)
        stats["person_pixels"] = int(grid_mask.sum())
        stats["cut_triangles"] = grid.n_cut
        attributes = {"pixel": grid.pixel}
        if grid.labels is not None:
            attributes["labels"] = grid.labels
        cleaned = clean_mesh(grid.vertices, grid.faces, attributes, min_island_faces=20, min_island_fraction=0.0005)
        stats["cleanup_removed"] = cleaned.removed
        vertices, faces = cleaned.vertices, cleaned.faces
        pixel = cleaned.attributes["pixel"] + grid_offset
        labels = cleaned.attributes.get("labels")
        front = np.ones(len(vertices), bool)
        # Pixels that ended up in some triangle, over all person pixels of the grid.
        stats["covered_fraction"] = round(len(vertices) / max(1, stats["person_pixels"]), 5)
        clock = lap("mesh", clock)

    if target_faces is not None and len(faces) > int(target_faces):
        report(0.9, f"decimating {len(faces)} -> {int(target_faces)} faces")
        attributes = {"pixel": pixel, "front": front}
        if labels is not None:
            attributes["labels"] = labels
        reduced = decimate(vertices, faces, int(target_faces), attributes)
        vertices, faces = reduced.vertices.astype(np.float32), reduced.faces
        pixel, front = reduced.attributes["pixel"], reduced.attributes["front"]
        labels = reduced.attributes.get("labels")
        clock = lap("decimate", clock)

    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces, np.int32)
    surface = Surface(
        vertices=vertices,
        faces=faces,
        vertex_normals=vertex_normals(vertices, faces),
        uv=project_uv(vertices, K, photo_hw),
        vertex_labels=None if labels is None else np.asarray(labels, np.uint8),
        vertex_pixel=np.asarray(pixel, np.int32),
        front=np.asarray(front, bool),
        grid_factor=factor,
        stats=stats,
    )
    stats.update(vertices=int(len(vertices)), faces=int(len(faces)), seconds=timings)
    stats["seconds"]["total"] = round(time.perf_counter() - start, 3)
    report(1.0, f"{len(faces)} triangles")
    return surface
