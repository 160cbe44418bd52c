"""Several views of one person: UV islands, base colour and normal map of a fused solid.

The fused solid (engine.geometry.fusion) lives in the first (reference) view's camera frame;
view v's camera sees a reference point x at R_v^T (x - t_v) (its transform T_v = [R_v | t_v]
takes its camera frame to the reference's).

UVs: every face goes to the island of the view that sees it best, the one whose camera it faces
most squarely among those it faces and that see nothing in front of it (unoccluded: its
depth against that view's pointmap); its UVs are where it projects in that view's photo (a view sees a height
field, so a view's faces never overlap in its island). Faces no view sees (armpits, the top of
the head, soles) go to one more island ("unseen"), each face in a cell of its own (in any
projection they would overlap).

Colour and normals are not read per island but per texel, from the 3-D point each texel shows:
every view that sees the point contributes, weighted by cos^2 of the angle between the surface
and its line of sight and by a ramp that fades to nothing over the last BLEND_PX photo pixels
before that view's outline (where depth and colour are least sure). Inside a view's hand or face
crop region its colour is read from the crop's albedo, finer than the photo (ViewMaps.colour_at). Neighbouring texels of two
islands show neighbouring points, so the weights and the blended colour are the same on both
sides of an island border: no seam. With no photo from behind, the back (made as for one
photo) has an island laid out from a camera behind the person and is coloured as a one-photo
closed avatar's hidden side (each body part continued from the reference photo's outline)
where no view sees it. Any other texel no view sees takes the colour of the nearest point a
view sees (hair over the top of the head, the arm's colour into the armpit), and a flat normal.
A point a view's ray passes by at a depth step (in front of the surface its pixel shows: the side
of the face, past the front photo's last skin pixels, against the back of the head's hair seen
behind at the outline) reads the pixel around that lies nearest it on the step's near side
(read_across_step), a colour the unseen fill does not copy on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import ndimage

from engine.avatar import textures as tx
from engine.avatar.appearance import EDGE_TEXELS, Appearance, _source_colour
from engine.avatar.islands import SEEN_DEPTH_TOLERANCE_M, SEEN_DEPTH_TOLERANCE_REL, project, split_islands
from engine.avatar.labels import FRONT_ONLY_CLASSES, class_ids
from engine.avatar.stages import HairView

# photo pixels before a view's outline over which its weight fades to (almost) nothing
BLEND_PX = 6.0
# weight a visible point keeps at the outline itself (a point only one view sees keeps it)
OUTLINE_WEIGHT = 0.01
# the views' summed weight at which their normals are the normal map's whole detail; below it the
# detail fades to the surface's own normal (flat): cos 0.35 of the line of sight at full ramp, as
# a one-photo closed avatar's front fades (engine.avatar.appearance SQUARE_COS). A point one view
# sees edge-on or at its outline would otherwise take that view's normal whole (a lone view's
# weight cancels out of the mean), an outline pixel's normal tilted across the surface: dark
# dashes in the shading along the views' border
FULL_DETAIL_WEIGHT = 0.35 ** 2
# a view whose camera axis is at least this far from the reference's looks from behind
OPPOSITE_DEG = 150.0
# a face counts as seen by a view it faces at least this much (cos of the angle to the line of sight)
MIN_FACING_COS = 0.05
# a point this much in front of the surface its pixel shows lies where the view's ray passed it
# by: at a depth step (the side of the face against the back of the head's hair seen past it at
# the outline, 3-6 cm behind) the pixel's colour belongs to that surface behind, not to the point
LOOKED_PAST_M = 0.01
# ... and it reads the pixel within this many pixels around whose point lies nearest it, on the
# near side of the step (at least STEP_M nearer the camera than the pixel under it) ...
NEAREST_PIXEL_RADIUS = 3
STEP_M = 0.03
# ... when that point lies within the depth tolerance of it and at most this share as far as
# the pixel's own
NEAREST_RATIO = 0.5
# points searched at once (the window's 49 pixels each)
SEARCH_CHUNK = 100_000
# texels sampled at once (bounds the per-view temporaries to some hundred MB)
CHUNK_TEXELS = 1_000_000


@dataclass
class ViewMaps:
    """One view's maps the textures read, and where its camera is."""

    name: str
    T: np.ndarray  # 4 x 4: this view's camera frame -> the reference camera frame
    K: np.ndarray
    pointmap: np.ndarray  # H x W x 3 (NaN off the person)
    mask: np.ndarray
    colour: np.ndarray  # H x W x 3 linear, filled everywhere (push-pull from the valid pixels)
    colour_source: str  # "albedo" or "photo"
    inside_px: np.ndarray  # H x W distance to the outline (0 off the person)
    normal: np.ndarray | None  # H x W x 3 camera frame (NaN where unknown)
    # this view's aligned hand and face crops with an albedo (engine.geometry.detail.AlignedCrop):
    # inside their regions the colour is read from them, finer than the photo
    crops: list = field(default_factory=list)

    @cached_property
    def nearest_depth(self) -> np.ndarray:
        """H x W: the nearest depth within NEAREST_PIXEL_RADIUS of each pixel (inf where none):
        where a point passed by may find a depth step (read_across_step); one filter per view,
        not one per chunk of texels."""
        depth = np.nan_to_num(self.pointmap[..., 2], nan=np.inf)
        return ndimage.minimum_filter(depth, size=2 * NEAREST_PIXEL_RADIUS + 1, mode="nearest")

    def to_view(self, points_ref: np.ndarray) -> np.ndarray:
        R, t = self.T[:3, :3], self.T[:3, 3]
        return (np.asarray(points_ref, np.float64) - t) @ R

    def colour_at(self, xy: np.ndarray) -> np.ndarray:
        """Linear colour (float32) at photo coordinates: the photo's maps, and inside each crop's
        region the crop's albedo (bilinear on its finer grid where all four taps see the person),
        blended in over the region's edge band as a one-photo avatar's texture is
        (engine.avatar.detail.fuse_crop_texture)."""
        colour = _sample(self.colour, xy)
        for a in self.crops:
            from engine.geometry.detail import FEATHER_PX

            c, f = a.crop, int(a.crop.factor)
            rx0, ry0, rx1, ry1 = a.region
            x, y = xy[:, 0], xy[:, 1]
            edge = np.minimum.reduce([x - rx0, rx1 - x, y - ry0, ry1 - y])
            near = np.flatnonzero(edge > 0)
            if not len(near):
                continue
            u, v = (x[near] - c.box[0]) * f - 0.5, (y[near] - c.box[1]) * f - 0.5
            h, w = c.mask.shape
            i0, j0 = np.clip(np.floor(v).astype(np.int64), 0, h - 2), np.clip(np.floor(u).astype(np.int64), 0, w - 2)
            dv, du = np.clip(v - i0, 0, 1)[:, None], np.clip(u - j0, 0, 1)[:, None]
            albedo = np.asarray(c.albedo, np.float32)
            sample = ((1 - dv) * ((1 - du) * albedo[i0, j0] + du * albedo[i0, j0 + 1])
                      + dv * ((1 - du) * albedo[i0 + 1, j0] + du * albedo[i0 + 1, j0 + 1]))
            seen = c.mask[i0, j0] & c.mask[i0, j0 + 1] & c.mask[i0 + 1, j0] & c.mask[i0 + 1, j0 + 1]
            weight = (np.clip(edge[near] / FEATHER_PX, 0.0, 1.0) * seen)[:, None].astype(np.float32)
            colour[near] = weight * sample.astype(np.float32) + (1 - weight) * colour[near]
        return colour


def view_maps(bundle, K, T, name: str, crops=None) -> ViewMaps:
    """A view's maps for the textures; crops: its aligned crops (engine.avatar.detail.Detail
    .aligned), whose albedo colours their regions when the view's colour is the albedo."""
    colour, valid, source = _source_colour(bundle)
    filled = tx.push_pull_fill(colour, valid)
    inside = ndimage.distance_transform_edt(np.pad(bundle.mask, 1))[1:-1, 1:-1].astype(np.float32)
    normal = None
    if bundle.normal is not None:
        normal = np.where(bundle.mask[..., None], bundle.normal, np.nan).astype(np.float32)
    usable = [a for a in crops or [] if a.crop.albedo is not None] if source == "albedo" else []
    return ViewMaps(name, np.asarray(T, np.float64), np.asarray(K, np.float64), bundle.pointmap, bundle.mask,
                    filled, source, inside, normal, usable)


@dataclass
class Projection:
    """A camera that only lays out UVs (no photo): the one behind the person when no view is."""

    T: np.ndarray
    K: np.ndarray

    def to_view(self, points_ref: np.ndarray) -> np.ndarray:
        return (np.asarray(points_ref, np.float64) - self.T[:3, 3]) @ self.T[:3, :3]


def behind(reference: ViewMaps, vertices_ref: np.ndarray) -> Projection:
    """The reference camera turned half round the person's vertical axis through its centre."""
    centre = vertices_ref.mean(axis=0)
    R = np.diag([-1.0, 1.0, -1.0])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, centre - R @ centre
    return Projection(T, reference.K)


@dataclass
class ViewIslands:
    """The solid's faces split into one island per view (+ behind, + unseen), before the avatar frame."""

    faces: np.ndarray  # F x 3 into the split vertices
    source_vertex: np.ndarray  # split vertex -> solid vertex
    vertex_island: np.ndarray
    face_island: np.ndarray  # F: index into projections, or len(projections) for the unseen cells
    face_share: list  # per island: its share of the faces
    projections: list  # the views, then (with no view from behind) the Projection behind

    @property
    def names(self) -> list[str]:
        n_views = sum(isinstance(p, ViewMaps) for p in self.projections)
        return [f"view {i + 1}" for i in range(n_views)] + ["behind"] * (len(self.projections) - n_views) + ["unseen"]


def assign_views(vertices_ref: np.ndarray, faces: np.ndarray, views: list[ViewMaps]) -> ViewIslands:
    """Each face to the view that sees it most squarely (module docstring)."""
    corners = vertices_ref[faces].astype(np.float64)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-20)
    centre = corners.mean(axis=1)
    score = np.full((len(views), len(faces)), -np.inf)
    for v, view in enumerate(views):
        c = view.to_view(centre)
        n = normal @ view.T[:3, :3]
        cos = -np.einsum("ij,ij->i", n, c) / np.maximum(np.linalg.norm(c, axis=1), 1e-12)
        score[v] = np.where((cos > MIN_FACING_COS) & unoccluded(c, view), cos, -np.inf)
    best = np.argmax(score, axis=0)
    unseen = ~np.isfinite(score.max(axis=0))
    projections: list = list(views)
    face_island = np.where(unseen, len(views), best).astype(np.int8)
    if not any(v.T[2, 2] <= np.cos(np.radians(OPPOSITE_DEG)) for v in views[1:]):
        # no photo from behind: the back (made as for one photo) gets an island of its own,
        # laid out from a camera behind the person (a height field from there, like a view's)
        back = behind(views[0], vertices_ref)
        c = back.to_view(centre)
        cos = -np.einsum("ij,ij->i", normal @ back.T[:3, :3], c) / np.maximum(np.linalg.norm(c, axis=1), 1e-12)
        from_behind = unseen & (cos > MIN_FACING_COS)
        projections.append(back)
        face_island[unseen] = len(projections)
        face_island[from_behind] = len(views)
        unseen &= ~from_behind
    cells = len(projections)
    # an unseen face is an island of its own: its own three vertices, its own cell (plan_uvs)
    key_island = face_island.astype(np.int64)
    key_island[unseen] = cells + np.arange(int(unseen.sum()))
    split_faces, source_vertex, vertex_key = _split(faces, key_island, cells + max(int(unseen.sum()), 1))
    vertex_island = np.minimum(vertex_key, cells).astype(np.int8)
    share = np.bincount(face_island, minlength=cells + 1) / max(len(faces), 1)
    return ViewIslands(split_faces, source_vertex, vertex_island, face_island, [round(float(s), 4) for s in share],
                       projections)


def _split(faces: np.ndarray, face_key: np.ndarray, n_keys: int):
    """islands.split_islands with more islands than int8 holds: each (vertex, key) its own vertex."""
    corner_key = faces.astype(np.int64) * n_keys + np.repeat(face_key, 3).reshape(-1, 3)
    keys, inverse = np.unique(corner_key.reshape(-1), return_inverse=True)
    return inverse.reshape(-1, 3).astype(np.int64), keys // n_keys, keys % n_keys


def view_pixels(points_view: np.ndarray, view: ViewMaps):
    """Where points (N x 3, the view's camera frame) fall in the view's photo: (xy N x 2, inside
    the photo N bool, row, col (clipped into it), the view's own depth there (NaN off the person),
    the islands' depth tolerance at each point)."""
    xy = project(points_view, view.K)
    h, w = view.mask.shape
    inside = np.isfinite(xy).all(axis=1) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    col = np.clip(np.nan_to_num(xy[:, 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.nan_to_num(xy[:, 1]).astype(np.int64), 0, h - 1)
    seen_depth = view.pointmap[row, col, 2].astype(np.float64)
    tolerance = np.maximum(SEEN_DEPTH_TOLERANCE_M, SEEN_DEPTH_TOLERANCE_REL * points_view[:, 2])
    return xy, inside, row, col, seen_depth, tolerance


def unoccluded(points_view: np.ndarray, view: ViewMaps) -> np.ndarray:
    """N bool: nothing the view saw lies in front of the point (it projects off the person, or
    not farther than the view's depth there plus the islands' tolerance). Unlike seen_faces, a
    point the fused solid puts a little in front of this view's own surface (the other view's
    samples, the sides at grazing angles) counts as seen."""
    _, inside, _, _, seen_depth, tolerance = view_pixels(points_view, view)
    with np.errstate(invalid="ignore"):
        behind = np.isfinite(seen_depth) & (points_view[:, 2] > seen_depth + tolerance)
    return inside & (points_view[:, 2] > 0) & ~behind


def head_labels_seen(labels: np.ndarray, vertices_ref: np.ndarray, islands: ViewIslands, views: list[ViewMaps],
                     bundles: list) -> np.ndarray:
    """Per split vertex: a head vertex (Hair or a face class) in a view's island takes the class
    that view's segmentation gives the pixel it projects to, when that view sees it there (its
    depth within the islands' tolerance of the view's pointmap): the view that colours it says
    whether it is hair. The solid's own labels are those of its nearest samples, and without a
    photo from behind the invented back's (the front's classes copied onto the back of the
    head) crowd in among a side photo's samples at the back of the head: a ragged patch of the
    face's class over hair-coloured texels. vertices_ref: per solid vertex, reference frame."""
    head_ids = np.append(class_ids(FRONT_ONLY_CLASSES), class_ids(["Hair"]))
    out = np.asarray(labels, np.uint8).copy()
    head = np.isin(out, head_ids)
    for v, (view, bundle) in enumerate(zip(views, bundles)):
        chosen = np.flatnonzero(head & (islands.vertex_island == v))
        if not len(chosen) or bundle.seg is None:
            continue
        p = view.to_view(vertices_ref[islands.source_vertex[chosen]])
        _, inside, row, col, seen_depth, tolerance = view_pixels(p, view)
        with np.errstate(invalid="ignore"):
            seen = inside & view.mask[row, col] & (np.abs(p[:, 2] - seen_depth) <= tolerance)
        seen_class = np.asarray(bundle.seg)[row, col]
        take = seen & np.isin(seen_class, head_ids)
        out[chosen[take]] = seen_class[take]
    return out


def hair_views(vertices_ref: np.ndarray, solid_normals: np.ndarray, islands: ViewIslands, views: list[ViewMaps],
               bundles: list) -> list:
    """Which photo decides whether each hidden vertex of the head is hair (engine.avatar.stages
    .HairView, for stages.place): a vertex no photo shows (the island behind, the unseen cells)
    goes to the photo it turns farthest away from, the one for which it is the back of the head
    as the hidden side is for one photo (its hair reaching its outline at the vertex's height
    says the back is hair there). vertices_ref / solid_normals: per solid vertex, reference frame."""
    split_points = vertices_ref[islands.source_vertex]
    split_normals = solid_normals[islands.source_vertex]
    hidden = islands.vertex_island >= len(views)
    away = np.full((len(views), len(split_points)), -np.inf)
    for v, view in enumerate(views):
        p = view.to_view(split_points[hidden])
        n = split_normals[hidden] @ view.T[:3, :3]
        away[v, hidden] = np.einsum("ij,ij->i", n, p) / np.maximum(np.linalg.norm(p, axis=1), 1e-12)
    farthest = np.argmax(away, axis=0)
    return [HairView(bundle, view.K, view.to_view(split_points), hidden & (farthest == v) & (away[v] > 0))
            for v, (view, bundle) in enumerate(zip(views, bundles))]


def plan_uvs(vertices_ref: np.ndarray, islands: ViewIslands, views: list[ViewMaps], texture_size: int):
    """The atlas layout (one island per view, the one behind when there is one, then the unseen
    island) and each split vertex's continuous texel position. A view's vertices land where they
    project in its photo (all islands share one crop of the photo frame); the unseen faces are
    packed one per cell of a grid over the last island, each its own right triangle (they
    overlap in every projection)."""
    cells = len(islands.projections)
    seen = islands.vertex_island < cells
    xy = np.zeros((len(vertices_ref), 2))
    for island, camera in enumerate(islands.projections):
        chosen = islands.vertex_island == island
        xy[chosen] = project(camera.to_view(vertices_ref[chosen]), camera.K)
    layout = tx.plan_layout(union_mask(views), xy[seen], texture_size, cells + 1)
    texel_xy = np.zeros((len(vertices_ref), 2))
    texel_xy[seen] = layout.photo_to_texel(xy[seen], islands.vertex_island[seen])
    unseen_faces = islands.faces[islands.face_island == cells]
    if len(unseen_faces):
        cell = np.sqrt(layout.island_width * layout.height / len(unseen_faces))
        columns = max(int(layout.island_width // cell), 1)
        while columns * int(layout.height // (layout.island_width / columns)) < len(unseen_faces):
            columns += 1
        cell = layout.island_width / columns
        unseen_faces = unseen_faces[cell_order(vertices_ref[unseen_faces].mean(axis=1), columns)]
        index = np.arange(len(unseen_faces))
        x0 = layout.island_x0(cells) + (index % columns) * cell
        y0 = (index // columns) * cell
        margin = min(EDGE_TEXELS + 0.5, cell / 4)
        corners = np.stack([np.column_stack([x0 + margin, y0 + margin]), np.column_stack([x0 + cell - margin, y0 + margin]),
                            np.column_stack([x0 + margin, y0 + cell - margin])], axis=1)
        texel_xy[unseen_faces.reshape(-1)] = corners.reshape(-1, 2)
    return layout, texel_xy


def cell_order(centres: np.ndarray, columns: int) -> np.ndarray:
    """The order in which the unseen faces (their centres, reference camera frame) fill the rows
    of `columns` cells: rows by height, each row round the body (azimuth about the vertical
    through the centres' mean), so that cells beside each other in the atlas hold faces near
    each other on the body. A texture sampled at a few texels per cell (mipmaps, bilinear taps)
    then bleeds a neighbour's like colour, not a face from elsewhere (skin-coloured specks on the
    trousers from a hand's cell next door)."""
    by_height = np.argsort(centres[:, 1], kind="stable")
    row = np.empty(len(centres), np.int64)
    row[by_height] = np.arange(len(centres)) // max(int(columns), 1)
    offset = centres - centres.mean(axis=0)
    azimuth = np.arctan2(offset[:, 0], offset[:, 2])
    return np.lexsort((azimuth, row))


def island_depth(vertices_ref: np.ndarray, islands: ViewIslands) -> np.ndarray:
    """Each split vertex's depth in its island's camera (the rasteriser resolves overlaps by it;
    the unseen faces' cells do not overlap)."""
    depth = np.zeros(len(vertices_ref))
    for island, camera in enumerate(islands.projections):
        chosen = islands.vertex_island == island
        depth[chosen] = camera.to_view(vertices_ref[chosen])[:, 2]
    return depth


def union_mask(views: list[ViewMaps]) -> np.ndarray:
    """The views' person masks on one canvas (photos of different sizes share the top-left)."""
    h = max(v.mask.shape[0] for v in views)
    w = max(v.mask.shape[1] for v in views)
    out = np.zeros((h, w), bool)
    for v in views:
        out[: v.mask.shape[0], : v.mask.shape[1]] |= v.mask
    return out


def _sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples (float32) of an H x W x C image at photo coordinates (centres at +0.5),
    edges clamped. The four taps are gathered as whole pixels (tx.gather_rows)."""
    h, w = image.shape[:2]
    flat = np.asarray(image, np.float32).reshape(h * w, -1)
    x = np.clip(xy[:, 0] - 0.5, 0, w - 1)
    y = np.clip(xy[:, 1] - 0.5, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), max(w - 2, 0))
    y0 = np.minimum(np.floor(y).astype(np.int64), max(h - 2, 0))
    fx, fy = (x - x0).astype(np.float32)[:, None], (y - y0).astype(np.float32)[:, None]
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    top = tx.gather_rows(flat, y0 * w + x0) * (1 - fx) + tx.gather_rows(flat, y0 * w + x1) * fx
    bottom = tx.gather_rows(flat, y1 * w + x0) * (1 - fx) + tx.gather_rows(flat, y1 * w + x1) * fx
    return top * (1 - fy) + bottom * fy


def nearest_pixel_in_3d(points_view: np.ndarray, row: np.ndarray, col: np.ndarray, view: ViewMaps,
                        nearer_than: np.ndarray, radius: int = NEAREST_PIXEL_RADIUS):
    """Per point (the view's camera frame) the pixel within `radius` pixels of (row, col), among
    those whose depth is under `nearer_than` (per point), whose pointmap point lies nearest it:
    (row, col, distance in metres; inf where there is none)."""
    h, w = view.mask.shape
    step = np.arange(-radius, radius + 1)
    dr, dc = (a.reshape(-1) for a in np.meshgrid(step, step, indexing="ij"))
    rows = np.clip(row[:, None] + dr, 0, h - 1)
    cols = np.clip(col[:, None] + dc, 0, w - 1)
    around = view.pointmap[rows, cols].astype(np.float64)
    offset = around - points_view[:, None, :]
    distance2 = np.einsum("nkd,nkd->nk", offset, offset)
    with np.errstate(invalid="ignore"):
        candidate = np.isfinite(distance2) & (around[..., 2] < nearer_than[:, None])
    distance2 = np.where(candidate, distance2, np.inf)
    pick = np.argmin(distance2, axis=1)
    at = np.arange(len(points_view))
    return rows[at, pick], cols[at, pick], np.sqrt(distance2[at, pick])


def view_weights(points_ref: np.ndarray, normals_ref: np.ndarray, view: ViewMaps):
    """How much `view` should colour each point: (weight with the occlusion test, weight without
    it, the point's photo coordinates in this view, whether those are a pixel read across a depth
    step: read_across_step)."""
    p = view.to_view(points_ref)
    n = normals_ref @ view.T[:3, :3]
    distance = np.maximum(np.linalg.norm(p, axis=1), 1e-12)
    cos = -np.einsum("ij,ij->i", n, p) / distance
    facing = np.maximum(cos, 0.0) ** 2
    xy, inside, row, col, seen_depth, tolerance = view_pixels(p, view)
    ok = inside & (p[:, 2] > 0)
    with np.errstate(invalid="ignore"):
        visible = ok & (np.abs(p[:, 2] - seen_depth) <= tolerance)  # NaN (off the person) -> False
    # only where the point faces the view: elsewhere its weight is nothing (a point no view sees
    # keeps its own pixel)
    across = read_across_step(p, ok & (cos > 0), row, col, seen_depth, tolerance, view)
    moved = np.flatnonzero(across >= 0)
    row[moved], col[moved] = np.divmod(across[moved], view.mask.shape[1])
    xy[moved] = np.column_stack([col[moved] + 0.5, row[moved] + 0.5])
    visible[moved] = True
    ramp = np.clip((view.inside_px[row, col] - 0.5) / BLEND_PX, OUTLINE_WEIGHT, 1.0)
    return np.where(visible, facing * ramp, 0.0), np.where(ok, facing + 1e-9, 0.0), xy, across >= 0


def read_across_step(points_view: np.ndarray, ok: np.ndarray, row: np.ndarray, col: np.ndarray, seen_depth: np.ndarray,
                     tolerance: np.ndarray, view: ViewMaps) -> np.ndarray:
    """Per point (the view's camera frame), the flat index of the pixel whose colour it takes
    instead of its own (-1: its own): where the view's ray passed the point by (LOOKED_PAST_M in
    front of the surface its pixel shows, or nothing there), the pixel around on the near side of
    the depth step whose point lies nearest it (nearest_pixel_in_3d), within `tolerance` and at
    most NEAREST_RATIO as far as the point under it. The fused
    solid's side of the face lies 1-3 pixels past the front photo's last skin pixels, where the
    outline shows the back of the head's hair 3-6 cm behind: read through the pixel under it the
    side of the face took that hair (within the depth tolerance) or was left to the unseen fill,
    which copied the hair on."""
    out = np.full(len(points_view), -1, np.int64)
    with np.errstate(invalid="ignore"):
        passed = ok & ~(points_view[:, 2] > seen_depth - LOOKED_PAST_M)  # NaN too: the ray met nothing there
    chosen = np.flatnonzero(passed)
    if not len(chosen):
        return out
    own_depth = seen_depth[chosen]
    nearer_than = np.where(np.isfinite(own_depth), own_depth - STEP_M, np.inf)
    # the window's nearest depth first (view.nearest_depth): most points passed by on a noisy
    # surface have no step around them and skip the 3-D search
    stepped = view.nearest_depth[row[chosen], col[chosen]] < nearer_than
    chosen, nearer_than = chosen[stepped], nearer_than[stepped]
    if not len(chosen):
        return out
    r, c, distance = (np.empty(len(chosen), np.int64), np.empty(len(chosen), np.int64), np.empty(len(chosen)))
    for start in range(0, len(chosen), SEARCH_CHUNK):  # bounds the window's temporaries (~120 MB)
        part = slice(start, start + SEARCH_CHUNK)
        at = chosen[part]
        r[part], c[part], distance[part] = nearest_pixel_in_3d(points_view[at], row[at], col[at], view, nearer_than[part])
    with np.errstate(invalid="ignore"):
        own = np.linalg.norm(view.pointmap[row[chosen], col[chosen]] - points_view[chosen], axis=1)
    own = np.where(np.isfinite(own), own, np.inf)
    near = (distance <= tolerance[chosen]) & (distance < NEAREST_RATIO * own)
    out[chosen[near]] = r[near] * view.mask.shape[1] + c[near]
    return out


def blend_views(points_ref: np.ndarray, normals_ref: np.ndarray, views: list[ViewMaps]):
    """Blended linear colour (N x 3), blended normal in the reference camera frame (N x 3, NaN
    where no view sees the point; faded toward normals_ref where the views see it edge-on or at
    their outlines, FULL_DETAIL_WEIGHT), the index of the view with the largest weight (-1: none)
    and whether every view that sees the point read it across a depth step (read_across_step: a
    colour taken from beside the point, which the unseen fill does not copy on).
    Each view's maps are sampled only where it counts: where it sees the point, or (for points
    no view sees) where the point faces it."""
    n_points = len(points_ref)
    per_view = [view_weights(points_ref, normals_ref, view) for view in views]
    weights = np.stack([w for w, _, _, _ in per_view])  # V x N
    seen_directly = np.any([(w > 0) & ~across for w, _, _, across in per_view], axis=0)
    unseen = weights.sum(axis=0) <= 0
    colour_sum = np.zeros((n_points, 3), np.float32)
    weight_sum = np.zeros(n_points, np.float32)
    normal_sum = np.zeros((n_points, 3), np.float32)
    normal_weight = np.zeros(n_points, np.float32)
    for view, (weight, loose, xy, _) in zip(views, per_view):
        effective = np.where(unseen, loose, weight).astype(np.float32)
        chosen = np.flatnonzero(effective > 0)
        colour_sum[chosen] += effective[chosen, None] * view.colour_at(xy[chosen])
        weight_sum[chosen] += effective[chosen]
        if view.normal is not None:
            seen = np.flatnonzero(weight > 0)
            n = _sample(view.normal, xy[seen])
            good = np.isfinite(n).all(axis=1)
            seen, n = seen[good], n[good] @ view.T[:3, :3].T.astype(np.float32)  # into the reference frame
            normal_sum[seen] += weight[seen, None].astype(np.float32) * n
            normal_weight[seen] += weight[seen].astype(np.float32)
    colour = colour_sum / np.maximum(weight_sum, 1e-30)[:, None]
    best = np.where(unseen, -1, np.argmax(weights, axis=0))
    normal = np.full((n_points, 3), np.nan, np.float32)
    has_normal = normal_weight > 0
    weight = normal_weight[has_normal, None]
    detail = np.minimum(weight / FULL_DETAIL_WEIGHT, 1.0)
    mixed = detail * (normal_sum[has_normal] / weight) + (1.0 - detail) * normals_ref[has_normal].astype(np.float32)
    length = np.linalg.norm(mixed, axis=1, keepdims=True)
    normal[has_normal] = mixed / np.maximum(length, 1e-12)
    return colour, normal, best, ~unseen & ~seen_directly


def edge_texels(raster: tx.Raster, texel_xy: np.ndarray, faces: np.ndarray, keep: np.ndarray):
    """Per texel (flattened): a face and barycentric weights (float64). Covered texels keep the
    raster's; the texels of `keep` just outside the triangles take a covered neighbour's face
    (grown one texel at a time), with the weights of their own centre on that face's plane (a little outside it): the
    bilinear taps at an island's edge then read the colour of the surface just past it, not the
    padding."""
    h, w = raster.face.shape
    covered = raster.covered
    face_of = raster.face.reshape(-1).copy()
    bary_of = raster.bary.reshape(-1, 3).astype(np.float64)
    ring = np.flatnonzero((keep & ~covered).reshape(-1))
    if not len(ring) or not covered.any():
        return face_of, bary_of
    grown = raster.face
    for _ in range(EDGE_TEXELS):
        grown = np.where(grown >= 0, grown, ndimage.grey_dilation(grown, size=(3, 3)))
    face = grown.reshape(-1)[ring]
    inside = face >= 0  # keep is the covered texels dilated EDGE_TEXELS times: all reached
    ring, face = ring[inside], face[inside]
    corners = texel_xy[faces[face]]  # n x 3 x 2
    centre = np.column_stack([ring % w + 0.5, ring // w + 0.5])
    ab, ac, ap = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], centre - corners[:, 0]
    det = ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]
    ok = np.abs(det) > 1e-12
    det = np.where(ok, det, 1.0)
    b1 = np.where(ok, (ap[:, 0] * ac[:, 1] - ap[:, 1] * ac[:, 0]) / det, 1 / 3)
    b2 = np.where(ok, (ab[:, 0] * ap[:, 1] - ab[:, 1] * ap[:, 0]) / det, 1 / 3)
    face_of[ring] = face
    bary_of[ring] = np.column_stack([1.0 - b1 - b2, b1, b2])
    return face_of, bary_of


def _colour_unseen_from_nearest_seen(albedo, texels, points, seen, source=None, max_sources: int = 200_000) -> None:
    """Texels whose point no view sees take the colour of the nearest point some view sees (in
    place): the sides' colours run on over an invented back, hair over the top of the head,
    instead of the front's print read through the body by a projection. source: the seen texels
    copied from (default all): not those whose colour was read across a depth step, a guess at the
    outline (on degraded maps, whose depth is least sure there, copied on it took the face's skin
    round the head's side onto the front photo's rim of hair)."""
    from scipy.spatial import cKDTree

    source = seen if source is None else source & seen
    if seen.all() or not source.any():
        return
    sources = np.flatnonzero(source)
    if len(sources) > max_sources:
        sources = sources[:: int(np.ceil(len(sources) / max_sources))]
    unseen = np.flatnonzero(~seen)
    _, nearest = cKDTree(points[sources]).query(points[unseen])
    albedo[texels[unseen]] = albedo[texels[sources[nearest]]]


def hidden_side_image(bundle, view: ViewMaps) -> np.ndarray:
    """The reference photo's hidden-side colours (appearance._hidden_side_colour: each body part
    continued from the band along the outline, the face replaced by hair) over the whole photo."""
    from engine.avatar.appearance import _hidden_side_colour, _source_colour

    h, w = view.mask.shape
    whole = tx.AtlasLayout((0.0, 0.0, float(w), float(h)), w, h, w, 1)
    _, valid, _ = _source_colour(bundle)
    return _hidden_side_colour(bundle, view.colour, valid, whole)


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    from engine.geometry.surface import vertex_normals

    n = np.asarray(vertex_normals(np.asarray(vertices, np.float64), faces), np.float64)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def bake_views(
    views: list[ViewMaps],
    *,
    vertices_ref: np.ndarray,
    solid_normals: np.ndarray,
    islands: ViewIslands,
    layout: tx.AtlasLayout,
    texel_xy: np.ndarray,
    uv: np.ndarray,
    tangents: np.ndarray,
    normals_avatar: np.ndarray,
    camera_to_avatar: np.ndarray,
    bundles: list | None = None,
    progress=None,
) -> Appearance:
    """The base colour and the tangent-space normal map of the fused solid (module docstring).

    vertices_ref / solid_normals: the solid's vertices and smooth normals (before the split:
    both sides of an island border read the same), reference camera frame; texel_xy, uv,
    tangents, normals_avatar: per split vertex."""

    def report(fraction, message):
        if progress is not None:
            progress("textures", fraction, message)

    faces = islands.faces
    depth = island_depth(vertices_ref[islands.source_vertex], islands)
    raster = tx.rasterize(texel_xy, faces, depth, layout.width, layout.height)
    covered = raster.covered
    report(0.3, f"rasterised {len(faces)} triangles over {int(covered.sum())} texels, {layout.n_islands} islands")
    keep = ndimage.binary_dilation(covered, iterations=EDGE_TEXELS)
    face_of, bary_of = edge_texels(raster, texel_xy, faces, keep)
    texels = np.flatnonzero(keep.reshape(-1))
    albedo = np.zeros((layout.height * layout.width, 3), np.float32)
    target = np.full((layout.height * layout.width, 3), np.nan, np.float32)
    chosen = np.zeros(len(views) + 1, np.int64)  # texels led by each view, then by none
    to_avatar = np.asarray(camera_to_avatar, np.float64)[:3, :3]
    # a back no photo showed: the reference's colours continued per body part from its outline
    # (the one-photo closed avatar's hidden side, engine.avatar.appearance)
    behind_colour = hidden_side_image(bundles[0], views[0]) if len(islands.projections) > len(views) and bundles else None
    texel_points = np.zeros((len(texels), 3), np.float32)
    texel_seen = np.zeros(len(texels), bool)
    texel_source = np.zeros(len(texels), bool)  # seen, not only read across a depth step: the fill copies these
    for start in range(0, len(texels), CHUNK_TEXELS):
        chunk = texels[start : start + CHUNK_TEXELS]
        corners = islands.source_vertex[faces[face_of[chunk]]]  # n x 3 solid vertices
        w = bary_of[chunk]
        points = np.einsum("nk,nkd->nd", w, vertices_ref[corners])
        normals = np.einsum("nk,nkd->nd", w, solid_normals[corners])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        colour, normal, best, read_across = blend_views(points, normals, views)
        if behind_colour is not None:
            from_behind = (best < 0) & (islands.face_island[face_of[chunk]] == len(views))
            xy = project(views[0].to_view(points[from_behind]), views[0].K)
            colour[from_behind] = _sample(behind_colour, xy)
            best[from_behind] = len(views) + 1  # counted as led by none, kept from the nearest-seen fill
        albedo[chunk] = colour
        target[chunk] = normal @ to_avatar.T
        texel_points[start : start + len(chunk)] = points
        texel_seen[start : start + len(chunk)] = best >= 0
        texel_source[start : start + len(chunk)] = (best >= 0) & ~read_across
        best[best > len(views)] = -1
        # counted over the covered texels only (the share's denominator), not the edge ring
        # around every triangle, which the unseen island's one-face cells made larger than them
        led = best[covered.reshape(-1)[chunk]]
        chosen += np.bincount(led + 1, minlength=len(views) + 1)[np.r_[1 : len(views) + 1, 0]]
        report(0.3 + 0.4 * min(1.0, (start + len(chunk)) / max(len(texels), 1)), "colour and normals blended from the views")
    _colour_unseen_from_nearest_seen(albedo, texels, texel_points, texel_seen, texel_source)
    albedo = albedo.reshape(layout.height, layout.width, 3)
    normal_rgb8, baked_fraction = None, 0.0
    if any(v.normal is not None for v in views):
        tangent_normals, baked = tx.bake_tangent_normals(raster, faces, normals_avatar, tangents,
                                                         target.reshape(layout.height, layout.width, 3))
        tangent_normals = tx.push_pull_fill(tangent_normals, keep, smooth_finest=False)
        tangent_normals /= np.maximum(np.linalg.norm(tangent_normals, axis=-1, keepdims=True), 1e-12)
        normal_rgb8 = tx.encode_normal_map(tangent_normals)
        baked_fraction = float(baked.sum() / max(covered.sum(), 1))
    albedo = tx.push_pull_fill(albedo, keep, smooth_finest=False)
    np.clip(albedo, 0.0, 1.0, out=albedo)
    sources = {v.colour_source for v in views}
    source = "albedo" if sources == {"albedo"} else "photo"
    stats = {
        "covered_texels": int(covered.sum()),
        "texture_fill": float(covered.mean()),
        "normal_baked_fraction": baked_fraction,
        # per view (then "none"): share of the covered texels whose colour it weighs most in
        "texels_led_by_view": [round(float(c) / max(int(covered.sum()), 1), 4) for c in chosen],
    }
    report(0.95, "textures ready")
    return Appearance(uv, tangents, layout, albedo, tx.linear_to_srgb8(albedo), normal_rgb8, source, stats)
