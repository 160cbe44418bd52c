"""Close the front surface into a solid: a plausible back, joined at the silhouette, then Poisson.

The camera sees only the front. The back is made per pixel along the pixel's ray, at
`depth + thickness`, with the thickness taken from the front itself: a limb or torso seen from
the front bulges toward the camera by about half its depth, so we measure that bulge against a
membrane stretched over the silhouette and mirror it (exact for any cross-section that is an
ellipse aligned with the view). Concretely:

1. silhouette pixels: valid pixels on the mask's outline, and the near side of every depth jump
   (an arm's outline in front of the torso); the far side of a jump is not an outline (the torso
   goes on behind the arm);
2. membrane depth: harmonic interpolation of the silhouette depths over each connected surface
   region (a sparse Laplace solve, regions separated at depth jumps);
3. thickness = clip(2 * (membrane - depth) * scale, min_thickness * ramp, max_thickness) per
   body part (table below), where `ramp` grows from 0 at the silhouette to 1 at `min_thickness`
   inside, so front and back meet on the silhouette;
4. screened Poisson reconstruction (Open3D) of the front and back points with their normals,
   then low-density trimming: whole components of mostly unsupported surface are dropped, never
   parts of the main one, so the solid stays closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.linalg import spsolve

from engine.geometry.cleanup import clean_mesh, face_components
from engine.geometry.grid_mesh import RTOL_HARD, downsample_maps, valid_pixels
from engine.geometry.labels import class_names
from engine.geometry.normal_integration import pixel_rays

# Per body part: (scale of the mirrored bulge, minimum thickness m, maximum thickness m).
# Minimums: a flat hand is ~2.5 cm thick, a foot ~6 cm, a head ~15 cm, a torso ~18 cm, a limb
# about as thick as it is wide (the mirror already gives that). Maximums stop a wrong depth
# from growing a slab: an adult torso is < 35 cm front to back.
THICKNESS = {
    "Background": (1.0, 0.03, 0.30),
    "Apparel": (1.0, 0.03, 0.35),
    "Eyeglass": (1.0, 0.01, 0.20),
    "Face_Neck": (1.0, 0.12, 0.25),
    "Hair": (1.0, 0.10, 0.25),
    "Left_Foot": (1.0, 0.05, 0.15),
    "Left_Hand": (1.0, 0.025, 0.10),
    "Left_Lower_Arm": (1.0, 0.05, 0.12),
    "Left_Lower_Leg": (1.0, 0.08, 0.16),
    "Left_Shoe": (1.0, 0.06, 0.16),
    "Left_Sock": (1.0, 0.06, 0.16),
    "Left_Upper_Arm": (1.0, 0.06, 0.15),
    "Left_Upper_Leg": (1.0, 0.10, 0.22),
    "Lower_Clothing": (1.0, 0.10, 0.35),
    "Right_Foot": (1.0, 0.05, 0.15),
    "Right_Hand": (1.0, 0.025, 0.10),
    "Right_Lower_Arm": (1.0, 0.05, 0.12),
    "Right_Lower_Leg": (1.0, 0.08, 0.16),
    "Right_Shoe": (1.0, 0.06, 0.16),
    "Right_Sock": (1.0, 0.06, 0.16),
    "Right_Upper_Arm": (1.0, 0.06, 0.15),
    "Right_Upper_Leg": (1.0, 0.10, 0.22),
    "Torso": (1.0, 0.15, 0.35),
    "Upper_Clothing": (1.0, 0.15, 0.35),
    "Lower_Lip": (1.0, 0.12, 0.25),
    "Upper_Lip": (1.0, 0.12, 0.25),
    "Lower_Teeth": (1.0, 0.12, 0.25),
    "Upper_Teeth": (1.0, 0.12, 0.25),
    "Tongue": (1.0, 0.12, 0.25),
}
BACK_MAX_PIXELS = 60_000  # the back is smooth: build it on a grid of at most this many pixels
POISSON_DEPTH = 8  # ~8 mm cells for a 2 m person: 2-4 s here; depth 9 costs ~4x
DENSITY_QUANTILE = 0.02


@dataclass
class Solid:
    vertices: np.ndarray  # V x 3 float32, camera frame
    faces: np.ndarray  # F x 3 int32, outward
    labels: np.ndarray | None  # V uint8
    back_points: np.ndarray  # the back samples given to Poisson (for inspection / tests)
    stats: dict


def _thickness_table() -> np.ndarray:
    names = class_names()
    return np.array([THICKNESS.get(name, THICKNESS["Background"]) for name in names], np.float64)


def _jumps(depth: np.ndarray, valid: np.ndarray, rtol: float):
    """Per axis (right, down): pairs of valid neighbours across a depth jump, and the near side."""
    out = []
    H, W = valid.shape
    for di, dj in ((0, 1), (1, 0)):
        a, b = depth[: H - di, : W - dj], depth[di:, dj:]
        both = valid[: H - di, : W - dj] & valid[di:, dj:]
        with np.errstate(invalid="ignore"):
            jump = both & (np.abs(a - b) > rtol * np.minimum(a, b))
        out.append((both, jump, a < b))
    return out


def membrane_depth(depth: np.ndarray, valid: np.ndarray, rtol: float = RTOL_HARD, contour_offset=None) -> np.ndarray:
    """Harmonic interpolation of the silhouette depths over the valid pixels (H x W, NaN outside).

    contour_offset (H x W, optional) is added to the depth at silhouette pixels: the outermost
    pixel centre is still on the front, short of the true occluding contour.
    """
    H, W = valid.shape
    n = int(valid.sum())
    index = np.full((H, W), -1, np.int64)
    index[valid] = np.arange(n)
    interior = np.zeros((H, W), bool)
    interior[1:-1, 1:-1] = (
        valid[1:-1, 1:-1] & valid[:-2, 1:-1] & valid[2:, 1:-1] & valid[1:-1, :-2] & valid[1:-1, 2:]
    )
    silhouette = valid & ~interior
    rows, cols = [], []
    for axis, (both, jump, first_nearer) in enumerate(_jumps(depth, valid, rtol)):
        di, dj = (0, 1) if axis == 0 else (1, 0)
        near_first = np.zeros((H, W), bool)
        near_second = np.zeros((H, W), bool)
        near_first[: H - di, : W - dj] = jump & first_nearer
        near_second[di:, dj:] = jump & ~first_nearer
        silhouette |= near_first | near_second
        keep = both & ~jump
        rows.append(index[: H - di, : W - dj][keep])
        cols.append(index[di:, dj:][keep])
    i, j = np.concatenate(rows), np.concatenate(cols)
    laplacian = sp.coo_matrix((np.ones(i.size), (i, j)), shape=(n, n))
    laplacian = laplacian + laplacian.T
    degree = np.asarray(laplacian.sum(axis=1)).ravel()
    laplacian = sp.diags(degree) - laplacian
    fixed = silhouette[valid]
    z = depth[valid].astype(np.float64)
    if contour_offset is not None:
        z = z + np.where(fixed, contour_offset[valid], 0.0)
    # A tiny pull toward the front depth keeps regions without silhouette pixels well posed.
    system = (laplacian + sp.diags(np.where(fixed, 1e6, 1e-6))).tocsc()
    rhs = np.where(fixed, 1e6, 1e-6) * z
    solution = spsolve(system, rhs)
    out = np.full((H, W), np.nan)
    out[valid] = solution
    return out


def _contour_offset(normal, rays, footprint):
    """Depth from an outline pixel's centre to the occluding contour half a pixel further out.

    For a round cross-section seen at angle phi between the normal and the view, the surface
    reaches the contour (phi = 90 deg) after a lateral d = r (1 - sin phi) and a depth
    r cos phi, so the depth left is d cos phi / (1 - sin phi) with d = half a pixel; capped at
    four footprints because it is unstable at grazing angles.
    """
    view = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    cos_phi = np.clip(-(normal * view).sum(-1), 0.0, 1.0)
    sin_phi = np.sqrt(1.0 - cos_phi**2)
    offset = 0.5 * footprint * cos_phi / np.maximum(1.0 - sin_phi, 1e-3)
    return np.nan_to_num(np.minimum(offset, 4.0 * footprint))


def back_surface(pointmap, mask, seg, K, normal=None, *, max_pixels=BACK_MAX_PIXELS):
    """Back points and outward normals (N x 3 each) plus their labels, on a coarse grid."""
    valid_full = valid_pixels(pointmap, mask)
    factor = 1
    while valid_full.sum() / factor**2 > max_pixels:
        factor *= 2
    points, m, normal_l, labels, K_l = downsample_maps(factor, pointmap, mask, normal, seg, K)
    valid = valid_pixels(points, m)
    depth = np.where(valid, points[..., 2], np.nan)
    footprint = depth / np.sqrt(K_l[0, 0] * K_l[1, 1])
    rays = pixel_rays(K_l, valid.shape)
    offset = None if normal_l is None else _contour_offset(normal_l, rays, footprint)
    membrane = membrane_depth(depth, valid, contour_offset=offset)
    relief = np.clip(membrane - depth, 0.0, None)

    table = _thickness_table()
    cls = np.zeros(valid.shape, np.int64) if labels is None else labels.astype(np.int64)
    scale, minimum, maximum = table[cls, 0], table[cls, 1], table[cls, 2]
    # Distance to the outline in metres (pixels times the pixel footprint at that depth).
    inside_px = ndimage.distance_transform_edt(np.pad(valid, 1))[1:-1, 1:-1] - 0.5
    ramp = np.clip(inside_px * footprint / np.maximum(minimum, 1e-6), 0.0, 1.0)
    thickness = np.clip(2.0 * relief * scale, minimum * ramp, maximum)

    back = rays * (depth + thickness)[..., None]
    # Normals of the back grid by finite differences, pointing away from the camera.
    du = np.gradient(back, axis=1)
    dv = np.gradient(back, axis=0)
    normals = np.cross(du, dv)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    normals *= np.where(normals[..., 2:3] < 0, -1.0, 1.0)
    ok = valid & np.isfinite(back).all(-1) & np.isfinite(normals).all(-1) & (thickness > 1e-4)
    return back[ok], normals[ok], cls[ok].astype(np.uint8), {"back_factor": factor, "back_points": int(ok.sum())}


def close_surface(
    front_vertices: np.ndarray,
    front_normals: np.ndarray,
    front_labels: np.ndarray | None,
    pointmap: np.ndarray,
    mask: np.ndarray,
    seg: np.ndarray | None,
    K: np.ndarray,
    normal: np.ndarray | None = None,
    *,
    depth: int = POISSON_DEPTH,
    density_quantile: float = DENSITY_QUANTILE,
    progress=None,
) -> Solid:
    """Watertight solid from the front surface (vertices + outward normals) and its maps."""
    import open3d as o3d

    back, back_normals, back_labels, stats = back_surface(pointmap, mask, seg, K, normal)
    if progress is not None:
        progress("watertight", 0.2, f"back surface from {stats['back_points']} samples")
    points = np.concatenate([np.asarray(front_vertices, np.float64), back])
    normals = np.concatenate([np.asarray(front_normals, np.float64), back_normals])
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(points)
    cloud.normals = o3d.utility.Vector3dVector(normals)
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
            cloud, depth=depth, scale=1.1, linear_fit=False
        )
    if progress is not None:
        progress("watertight", 0.8, "screened Poisson done")
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.triangles, np.int64)
    densities = np.asarray(densities)

    # Density trimming by component: a component whose mean density is in the lowest
    # `density_quantile` of the mesh is surface Poisson invented far from any sample. Parts of
    # the main component are never cut, so the solid stays closed.
    threshold = np.quantile(densities, density_quantile) if densities.size else 0.0
    component = face_components(faces, len(vertices))
    n_components = int(component.max()) + 1 if component.size else 0
    if n_components > 1:
        sizes = np.bincount(component, minlength=n_components)
        mean_density = np.bincount(component, densities[faces].mean(axis=1), n_components) / sizes
        drop_component = (mean_density < threshold) & (np.arange(n_components) != np.argmax(sizes))
        faces = faces[~drop_component[component]]
    # Zero-area faces stay: removing them would open the closed surface.
    cleaned = clean_mesh(vertices, faces, min_island_faces=200, min_island_fraction=0.01, area_eps=None)

    labels = None
    if front_labels is not None:
        from engine.geometry.labels import transfer_labels

        source_points = np.concatenate([np.asarray(front_vertices, np.float64), back])
        source_labels = np.concatenate([np.asarray(front_labels, np.uint8), back_labels])
        labels = transfer_labels(source_points, source_labels, cleaned.vertices)
    stats.update(
        poisson_depth=depth,
        poisson_vertices=int(len(vertices)),
        removed=cleaned.removed,
        trimmed_components=int(n_components - 1),
    )
    return Solid(
        vertices=cleaned.vertices.astype(np.float32),
        faces=cleaned.faces.astype(np.int32),
        labels=labels,
        back_points=back.astype(np.float32),
        stats=stats,
    )
