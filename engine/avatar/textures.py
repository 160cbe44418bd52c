"""The avatar's textures: projection UVs, albedo (base colour) and a tangent-space normal map.

The surface is seen from one camera, so its texture is the photo's (or the predicted albedo's)
crop around the person, resampled to the chosen texture size: a vertex's UV is where it
projects in the photo, remapped into that crop. A closed (watertight) mesh also has faces the
camera never saw; they get a second island beside the first (the same crop, with a flat normal
map) so that the hidden side neither shares texels with the front nor gets the front's detail.

Everything is vectorised over texels and triangles (a chunked scan-conversion rasteriser finds
which triangle covers each texel and its barycentric coordinates).

UV convention: glTF's (origin at the image's top-left, v down); engine.formats.scene.uv_opengl
flips v for the formats (OBJ, PLY, USD) whose origin is the bottom-left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


FRONT, HIDDEN = 0, 1  # UV island ids

# texels between the islands, so mipmaps of one do not reach the other
ISLAND_GUTTER = 16
# margin around the person's bounding box in the crop (photo pixels)
CROP_MARGIN_PX = 6
# candidate texels the rasteriser tests at once (bounds its memory to a few hundred MB)
RASTER_CHUNK = 4_000_000


# ---- layout -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AtlasLayout:
    """Where the photo crop lands in the texture.

    crop: (x0, y0, x1, y1) in photo pixel coordinates (pixel edges; may reach past the photo).
    The texture is `width` x `height`; island k occupies columns
    [k * (island_width + gutter), ... + island_width) and all rows.
    """

    crop: tuple[float, float, float, float]
    width: int
    height: int
    island_width: int
    n_islands: int
    gutter: int = ISLAND_GUTTER

    def island_x0(self, island: int | np.ndarray) -> np.ndarray:
        return np.asarray(island) * (self.island_width + self.gutter)

    def photo_to_texel(self, xy: np.ndarray, island: int | np.ndarray = FRONT) -> np.ndarray:
        """Photo pixel coordinates (N x 2) -> continuous texel coordinates (edges at integers)."""
        x0, y0, x1, y1 = self.crop
        tx = (xy[..., 0] - x0) * (self.island_width / (x1 - x0)) + self.island_x0(island)
        ty = (xy[..., 1] - y0) * (self.height / (y1 - y0))
        return np.stack([tx, ty], axis=-1)

    def texel_to_photo(self, txy: np.ndarray, island: int = FRONT) -> np.ndarray:
        x0, y0, x1, y1 = self.crop
        px = (txy[..., 0] - self.island_x0(island)) * ((x1 - x0) / self.island_width) + x0
        py = txy[..., 1] * ((y1 - y0) / self.height) + y0
        return np.stack([px, py], axis=-1)

    def texel_to_uv(self, txy: np.ndarray) -> np.ndarray:
        return txy / np.array([self.width, self.height], np.float64)


def plan_layout(mask: np.ndarray, vertex_photo_xy: np.ndarray, texture_size: int, n_islands: int) -> AtlasLayout:
    """The crop around the person (mask and every vertex) and its texture size.

    The texture's long side is `texture_size`; the other keeps the crop's aspect ratio
    (rounded up to a multiple of 4), so texels are square in photo pixels and none are spent
    outside the person's bounding box.
    """
    if texture_size < 64:
        raise ValueError(f"texture size {texture_size} is too small (at least 64)")
    rows, cols = np.nonzero(mask)
    finite = vertex_photo_xy[np.isfinite(vertex_photo_xy).all(axis=1)]
    xs = np.concatenate([cols.astype(np.float64), cols + 1.0, finite[:, 0]])
    ys = np.concatenate([rows.astype(np.float64), rows + 1.0, finite[:, 1]])
    x0, x1 = np.floor(xs.min()) - CROP_MARGIN_PX, np.ceil(xs.max()) + CROP_MARGIN_PX
    y0, y1 = np.floor(ys.min()) - CROP_MARGIN_PX, np.ceil(ys.max()) + CROP_MARGIN_PX
    crop_w, crop_h = x1 - x0, y1 - y0
    gutter = ISLAND_GUTTER if n_islands > 1 else 0
    if n_islands * crop_w >= crop_h:  # the islands side by side are wider than tall
        island_w = (texture_size - gutter * (n_islands - 1)) // n_islands
        height = int(np.ceil(island_w * crop_h / crop_w / 4) * 4)
    else:
        height = texture_size
        island_w = int(np.ceil(height * crop_w / crop_h / 4) * 4)
    width = n_islands * island_w + gutter * (n_islands - 1)
    return AtlasLayout((x0, y0, x1, y1), int(width), int(height), int(island_w), n_islands, gutter)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] values -> 8-bit sRGB through a 16-bit lookup table (0.4 % of values differ by one
    step from exact rounding; near black, where sRGB is steepest, one 8-bit step spans 20 entries)."""
    from engine.bundle import linear_to_srgb

    table = np.round(linear_to_srgb(np.linspace(0.0, 1.0, 65536)) * 255.0).astype(np.uint8)
    index = np.clip(linear, 0.0, 1.0) * np.float32(65535.0) + np.float32(0.5)
    return table[index.astype(np.uint16)]


# ---- filling and resampling -----------------------------------------------------------------
def _halve(sums: np.ndarray, weights: np.ndarray):
    """Sum 2 x 2 blocks (odd sizes padded with empty pixels)."""
    ph, pw = sums.shape[0] % 2, sums.shape[1] % 2
    if ph or pw:
        sums = np.pad(sums, ((0, ph), (0, pw), (0, 0)))
        weights = np.pad(weights, ((0, ph), (0, pw)))
    # channel by channel (the same sums in the same order: strided 2 x 2 corners of an H x W x C
    # map run C values per inner loop)
    halved = np.empty((sums.shape[0] // 2, sums.shape[1] // 2) + sums.shape[2:], np.result_type(sums))
    for channel in range(sums.shape[2]):
        plane = sums[..., channel]
        halved[..., channel] = plane[0::2, 0::2] + plane[1::2, 0::2] + plane[0::2, 1::2] + plane[1::2, 1::2]
    weights = weights[0::2, 0::2] + weights[1::2, 0::2] + weights[0::2, 1::2] + weights[1::2, 1::2]
    return halved, weights


def _halve_valid(values: np.ndarray, valid: np.ndarray):
    """_halve(values * valid[..., None], valid.astype(np.float32)): the same products and sums in
    the same order, channel by channel (an H x W x 3 map's strided 2 x 2 corners run 3 values
    per inner loop) and each block's corners multiplied at half size (no full-size product)."""
    if values.shape[0] % 2 or values.shape[1] % 2:
        return _halve(values * valid[..., None], valid.astype(np.float32))
    offsets = ((1, 0), (0, 1), (1, 1))
    sums = np.empty((values.shape[0] // 2, values.shape[1] // 2, values.shape[2]), values.dtype)
    for channel in range(values.shape[2]):
        plane = values[..., channel]
        total = plane[0::2, 0::2] * valid[0::2, 0::2]
        for i, j in offsets:
            total += plane[i::2, j::2] * valid[i::2, j::2]
        sums[..., channel] = total
    weights = valid[0::2, 0::2].astype(np.float32)
    for i, j in offsets:
        weights += valid[i::2, j::2]
    return sums, weights


def _upsample2(a: np.ndarray, axis: int) -> np.ndarray:
    """Double one axis with linear interpolation (samples at 1/4 and 3/4 between coarse centres).

    Each new sample is 0.75 * a + 0.25 * its neighbour (the edge sample its own neighbour), the
    products made once and each sum written straight into its place in the doubled array (no
    shifted copies, no stack); along the columns of an H x W x C map channel by channel (the
    interleaved samples' C-long pieces were C values per inner loop)."""
    three_quarters, quarter = 0.75 * a, 0.25 * a
    shape = list(a.shape)
    shape.insert(axis + 1, 2)
    out = np.empty(shape, three_quarters.dtype)
    if a.ndim == 3 and axis == 1:
        for channel in range(a.shape[2]):
            _interleave(three_quarters[..., channel], quarter[..., channel], out[..., channel], 1)
    else:
        _interleave(three_quarters, quarter, out, axis)
    shape = list(a.shape)
    shape[axis] *= 2
    return out.reshape(shape)


def _interleave(three_quarters: np.ndarray, quarter: np.ndarray, out: np.ndarray, axis: int) -> None:
    """_upsample2's sums into `out` (the input's shape with a 2 inserted after `axis`)."""
    def part(array, start, stop, *side):
        return array[(slice(None),) * axis + (slice(start, stop),) + side]

    n = three_quarters.shape[axis]
    even, odd = part(out, None, None, 0), part(out, None, None, 1)
    # even: 0.75 a[i] + 0.25 a[i - 1] (a[0] at the first); odd: 0.75 a[i] + 0.25 a[i + 1] (a[n - 1] at the last)
    np.add(part(three_quarters, 1, n), part(quarter, 0, n - 1), out=part(even, 1, n))
    np.add(part(three_quarters, 0, 1), part(quarter, 0, 1), out=part(even, 0, 1))
    np.add(part(three_quarters, 0, n - 1), part(quarter, 1, n), out=part(odd, 0, n - 1))
    np.add(part(three_quarters, n - 1, n), part(quarter, n - 1, n), out=part(odd, n - 1, n))


def _upsample(a: np.ndarray, height: int, width: int) -> np.ndarray:
    return _upsample2(_upsample2(a, 0), 1)[:height, :width]


def _upsample_nearest(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Each value repeated over a 2 x 2 block, cropped to height x width: each row's values
    doubled along it once (np.repeat copies whole pixels), that row written twice."""
    rows = np.repeat(a, 2, axis=1)
    out = np.empty((a.shape[0], 2) + rows.shape[1:], a.dtype)
    out[:, 0] = rows
    out[:, 1] = rows
    return out.reshape((2 * a.shape[0],) + rows.shape[1:])[:height, :width]


def push_pull_fill(values: np.ndarray, valid: np.ndarray, *, smooth_finest: bool = True) -> np.ndarray:
    """Fill invalid pixels from valid neighbours at ever coarser scales (push-pull).

    values: H x W x C, valid: H x W bool. Valid pixels are kept exactly; the others take the
    mean of the valid pixels around them at the finest scale that has any, interpolated
    linearly from the coarser scales, so colours run smoothly out of each island instead of
    meeting the background.

    smooth_finest=False repeats the half-resolution fill over 2 x 2 blocks instead of
    interpolating it at full size: for texture padding, where only mipmaps read the filled
    texels (level 1 and coarser see exactly the same values), at a third of the cost.
    """
    values = np.asarray(values, np.float32)
    h, w, c = values.shape
    if not valid.any():
        return np.zeros_like(values)
    # push: block sums of the valid pixels, level 1 (half size) up to 1 x 1
    sums, weights = _halve_valid(values, valid)
    levels = []
    while True:
        has_data = weights > 0
        levels.append((sums / _per_channel(np.maximum(weights, 1e-12), c), has_data))
        if sums.shape[0] == 1 and sums.shape[1] == 1:
            break
        sums, weights = _halve(sums, weights)
    # pull: each level's holes take the next coarser level's value
    filled = levels[-1][0]
    for mean, has_data in reversed(levels[:-1]):
        filled = np.where(_per_channel(has_data, c), mean, _upsample(filled, *mean.shape[:2]))
    out = _upsample(filled, h, w) if smooth_finest else _upsample_nearest(filled, h, w)
    np.copyto(out, values, where=_per_channel(valid, c))
    return out


def _per_channel(a: np.ndarray, c: int) -> np.ndarray:
    """An H x W map repeated over c channels (H x W x c): a[..., None]'s values, but as an array
    of the channels' shape, so that an H x W x c operation with it runs as one contiguous pass
    (broadcast along the channels it ran c values per inner loop, several times slower)."""
    return np.repeat(a.reshape(-1), c).reshape(a.shape + (c,))


def _linear_taps(n_out: int, scale: float, offset: float, n_in: int):
    """1-D linear interpolation at source positions offset + (i + 0.5) * scale: for each output
    sample its two source indices and their weights (float32).

    Positions are in pixel-edge coordinates (centres at +0.5); outside the source the edge
    sample repeats.
    """
    position = offset + (np.arange(n_out) + 0.5) * scale - 0.5  # index space: centres at integers
    position = np.clip(position, 0.0, n_in - 1)
    left = np.minimum(np.floor(position).astype(np.int64), max(n_in - 2, 0))
    frac = position - left
    right = np.minimum(left + 1, n_in - 1)
    return left, right, (1.0 - frac).astype(np.float32), frac.astype(np.float32)


def resample_crop(source: np.ndarray, layout: AtlasLayout, island: int = FRONT, origin: tuple[int, int] = (0, 0),
                  out: np.ndarray | None = None) -> np.ndarray:
    """Bilinearly resample a photo map (H x W x C) onto one island of a texture-sized array.

    `source` may be a window of the photo whose top-left pixel is `origin` = (row, col).
    Texel centres map through the layout to photo coordinates; outside the source the nearest
    edge pixel is used. Columns outside the island are left 0 (given `out`, a texture-sized
    float32 array, only the island's columns are written there, the rest left as they are).
    Separable: two taps along the rows, then two along the columns written straight into the
    island.
    """
    x0, y0, x1, y1 = layout.crop
    h, w, c = source.shape
    source = np.asarray(source, np.float32)
    top, bottom, w_top, w_bottom = _linear_taps(layout.height, (y1 - y0) / layout.height, y0 - origin[0], h)
    left, right, w_left, w_right = _linear_taps(layout.island_width, (x1 - x0) / layout.island_width, x0 - origin[1], w)
    rows = np.take(source, top, axis=0)  # height x w x c
    rows *= w_top[:, None, None]
    rows += np.take(source, bottom, axis=0) * w_bottom[:, None, None]
    if out is None:
        out = np.zeros((layout.height, layout.width, c), np.float32)
    x_start = int(layout.island_x0(island))
    island_texels = out[:, x_start : x_start + layout.island_width]
    # np.take along an axis copies whole records (fancy indexing moves one element at a time);
    # the column weights repeated over the channels (the same values): with the weights broadcast
    # along the channels the products ran c values per inner loop
    w_left, w_right = _per_channel(w_left, c), _per_channel(w_right, c)
    np.multiply(np.take(rows, left, axis=1), w_left, out=island_texels)
    island_texels += np.take(rows, right, axis=1) * w_right
    return out


def dilate(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """scipy.ndimage.binary_dilation(mask, iterations=...) of a 2-D bool mask with its default
    structure (the 4-neighbour cross; outside the image counts as False), as shifted ORs: the
    same booleans at a tenth of the CPU (2.9M texels, 2 iterations: 24 -> 2.4 ms)."""
    out = np.asarray(mask, bool)
    for _ in range(iterations):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def crop_window(layout: AtlasLayout, shape: tuple[int, int], margin: int = 4) -> tuple[slice, slice]:
    """The photo pixels a layout's crop reads (plus a margin), clipped to the photo."""
    x0, y0, x1, y1 = layout.crop
    rows = slice(max(int(np.floor(y0)) - margin, 0), min(int(np.ceil(y1)) + margin, shape[0]))
    cols = slice(max(int(np.floor(x0)) - margin, 0), min(int(np.ceil(x1)) + margin, shape[1]))
    return rows, cols


def gather_rows(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """array[index] for an N x k array, rows copied as opaque records (several times faster
    than numpy's fancy indexing on 2-D arrays, which moves one element at a time)."""
    a = np.ascontiguousarray(array)
    record = np.dtype((np.void, a.dtype.itemsize * a.shape[1]))
    return a.view(record).reshape(-1)[index].view(a.dtype).reshape(*np.shape(index), a.shape[1])


# ---- rasterisation --------------------------------------------------------------------------
@dataclass
class Raster:
    """Which triangle covers each texel centre, and where: face (H x W, -1 for none), bary (H x W x 3)."""

    face: np.ndarray
    bary: np.ndarray

    @property
    def covered(self) -> np.ndarray:
        return self.face >= 0


def rasterize(texel_xy: np.ndarray, faces: np.ndarray, depth: np.ndarray, width: int, height: int) -> Raster:
    """Scan-convert triangles given in texel coordinates; the smallest `depth` wins overlaps.

    texel_xy: V x 2 (edges at integers, texel centres at +0.5), faces: F x 3, depth: V (the
    camera distance, so overlapping projections resolve to what the camera saw).

    Each triangle's barycentrics and depth are planes over the texture, so every candidate
    texel in a triangle's bounding box costs a few multiply-adds of per-triangle coefficients.
    """
    face_buf = np.full(height * width, -1, np.int64)
    depth_buf = np.full(height * width, np.inf, np.float32)
    bary_buf = np.zeros((height * width, 3), np.float32)
    # a texel's three barycentrics written as one 12-byte record (numpy's fancy assignment of
    # N x 3 rows moves one element at a time, several times slower; a repeated texel's last row
    # wins either way)
    row_record = np.dtype((np.void, 3 * bary_buf.itemsize))
    bary_rows = bary_buf.view(row_record).reshape(-1)

    corners = gather_rows(np.asarray(texel_xy, np.float64), faces)  # F x 3 x 2
    lo = np.maximum(np.ceil(np.minimum(np.minimum(corners[:, 0], corners[:, 1]), corners[:, 2]) - 0.5), 0).astype(np.int64)
    hi = np.floor(np.maximum(np.maximum(corners[:, 0], corners[:, 1]), corners[:, 2]) - 0.5)
    hi = np.minimum(hi, [width - 1, height - 1]).astype(np.int64)
    box_w = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    counts = box_w * np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    ab = corners[:, 1] - corners[:, 0]
    ac = corners[:, 2] - corners[:, 0]
    area = ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]
    counts[np.abs(area) < 1e-12] = 0  # degenerate in UV: covers no texel centre
    inv = np.where(counts > 0, 1.0 / np.where(area == 0, 1.0, area), 0.0)
    # w1 = a1 x + b1 y + c1, w2 = a2 x + b2 y + c2 at texel-centre offsets (x, y) from the box
    # corner; z = z0 + dz1 w1 + dz2 w2. Kept as separate 1-D arrays: 1-D gathers are fast.
    ox, oy = lo[:, 0] + 0.5 - corners[:, 0, 0], lo[:, 1] + 0.5 - corners[:, 0, 1]
    a1, b1 = ac[:, 1] * inv, -ac[:, 0] * inv
    a2, b2 = -ab[:, 1] * inv, ab[:, 0] * inv
    c1, c2 = a1 * ox + b1 * oy, a2 * ox + b2 * oy
    a1, a2 = a1.astype(np.float32), a2.astype(np.float32)
    zf = np.asarray(depth, np.float32)[faces]
    z0, dz1, dz2 = zf[:, 0], zf[:, 1] - zf[:, 0], zf[:, 2] - zf[:, 0]

    box_h = np.where(counts > 0, hi[:, 1] - lo[:, 1] + 1, 0)
    todo = np.nonzero(counts)[0]
    ends = np.cumsum(counts[todo])
    starts = np.searchsorted(ends, np.arange(0, ends[-1] if len(ends) else 0, RASTER_CHUNK), side="right")
    bounds = list(starts) + [len(todo)]
    eps = -1e-6
    for first, last in zip(bounds[:-1], bounds[1:]):
        ids = todo[first : max(last, first + 1)]
        # one entry per (triangle, box row), then one per texel of that row: repeats, no division
        row_face = np.repeat(ids, box_h[ids])
        row_dy = np.arange(len(row_face)) - np.repeat(np.cumsum(box_h[ids]) - box_h[ids], box_h[ids])
        row_w = box_w[row_face]
        row_w1 = (b1[row_face] * row_dy + c1[row_face]).astype(np.float32)
        row_w2 = (b2[row_face] * row_dy + c2[row_face]).astype(np.float32)
        row_of = np.repeat(np.arange(len(row_face), dtype=np.int32), row_w)
        dx = (np.arange(len(row_of), dtype=np.int32) - np.repeat((np.cumsum(row_w) - row_w).astype(np.int32), row_w)).astype(np.float32)
        w1 = np.repeat(a1[row_face], row_w) * dx + np.repeat(row_w1, row_w)
        w2 = np.repeat(a2[row_face], row_w) * dx + np.repeat(row_w2, row_w)
        w0 = 1.0 - w1 - w2
        inside = np.nonzero((w0 >= eps) & (w1 >= eps) & (w2 >= eps))[0]
        w0, w1, w2, row = w0[inside], w1[inside], w2[inside], row_of[inside]
        face = row_face[row]
        texel = (lo[face, 1] + row_dy[row]) * width + lo[face, 0] + dx[inside].astype(np.int64)
        z = z0[face] + dz1[face] * w1 + dz2[face] * w2
        # nearest candidate per texel, against this chunk and what earlier chunks found
        np.minimum.at(depth_buf, texel, z)
        win = np.nonzero(z <= depth_buf[texel])[0]
        texel, face = texel[win], face[win]
        face_buf[texel] = face
        bary = np.empty((len(win), 3), np.float32)
        bary[:, 0], bary[:, 1], bary[:, 2] = w0[win], w1[win], w2[win]
        bary_rows[texel] = bary.view(row_record).reshape(-1)  # bary_buf[texel] = bary, rows as records
    return Raster(face_buf.reshape(height, width), bary_buf.reshape(height, width, 3))


# ---- tangents and the normal map --------------------------------------------------------------
def _normalize(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    # the floored lengths repeated over the last axis (the same values as length[..., None]
    # broadcast, which ran the division d values per inner loop)
    length = np.maximum(np.sqrt(np.einsum("...d,...d->...", v, v)), eps)
    return v / _per_channel(length, v.shape[-1])


def _perpendicular(n: np.ndarray) -> np.ndarray:
    """Any unit vector perpendicular to each row of n."""
    helper = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    return _normalize(np.cross(n, helper))


def vertex_tangents(positions: np.ndarray, normals: np.ndarray, uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-vertex tangents V x 4 (xyz unit, w = handedness) in the MikkTSpace manner.

    uv in glTF convention. The tangent follows +u; the bitangent (cross(normal, tangent) * w)
    follows the image's up direction (-v in glTF), which is what glTF viewers and Blender
    expect of an OpenGL-style (+Y up) normal map. Per-face tangents are normalised and
    accumulated with corner-angle weights, then made orthogonal to the vertex normal, as
    MikkTSpace does; vertices are not split further (UV seams were split before this).
    """
    # float32 throughout: the tangents are stored as float32 and feed an 8-bit normal map
    p = np.asarray(positions, np.float32)
    n = _normalize(np.asarray(normals, np.float32))
    st = np.asarray(uv, np.float32) * np.float32([1.0, -1.0])  # OpenGL orientation: t grows upward
    f = np.asarray(faces)
    corner_p = [gather_rows(p, f[:, k]) for k in range(3)]
    corner_st = gather_rows(st, f)
    e1, e2 = corner_p[1] - corner_p[0], corner_p[2] - corner_p[0]
    d1, d2 = corner_st[:, 1] - corner_st[:, 0], corner_st[:, 2] - corner_st[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(det) > 1e-20
    r = np.where(ok, np.float32(1.0) / np.where(ok, det, np.float32(1.0)), np.float32(0.0))[:, None]
    face_t = _normalize((e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r)
    face_b = _normalize((e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r)

    # corner angles as weights (MikkTSpace weights each face by its angle at the vertex)
    u01, u12, u20 = (_normalize(corner_p[(k + 1) % 3] - corner_p[k]) for k in range(3))
    cos = np.stack([-np.einsum("ij,ij->i", u01, u20), -np.einsum("ij,ij->i", u12, u01), -np.einsum("ij,ij->i", u20, u12)], 1)
    angle = np.arccos(np.clip(cos, -1.0, 1.0)) * ok[:, None]  # F x 3, corner k at vertex f[:, k]
    vertex_of_corner = f.reshape(-1)
    angle = angle.reshape(-1)
    # each face's value repeated over its three corners: face_t[:, axis, None] * angle's products
    # (broadcast they ran 3 values per inner loop)
    tangent = np.stack(
        [np.bincount(vertex_of_corner, np.repeat(face_t[:, axis], 3) * angle, minlength=len(p)) for axis in range(3)], 1
    )
    bitangent = np.stack(
        [np.bincount(vertex_of_corner, np.repeat(face_b[:, axis], 3) * angle, minlength=len(p)) for axis in range(3)], 1
    )

    along = np.einsum("ij,ij->i", tangent, n)
    for axis in range(3):  # Gram-Schmidt against the normal (tangent -= n * along[:, None], by column)
        tangent[:, axis] -= n[:, axis] * along
    length = np.linalg.norm(tangent, axis=1)
    floored = np.maximum(length, 1e-12)
    for axis in range(3):
        tangent[:, axis] /= floored
    lost = ~(length > 1e-12)  # no tangent left (no UV area around the vertex): any perpendicular
    if lost.any():
        tangent[lost] = _perpendicular(n[lost])
    handedness = np.where(np.einsum("ij,ij->i", np.cross(n, tangent), bitangent) < 0.0, -1.0, 1.0)
    return np.concatenate([tangent, handedness[:, None]], axis=1).astype(np.float32)


def _blend_corners(w: np.ndarray, values: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """sum_k w[:, k] * values[corners[:, k]] (n x 3 weights and vertex ids, V x d values) as
    three multiply-adds in k's order, each corner's rows gathered on their own (contiguous, so
    the products run over whole rows; an n x 3 x d gather's corner slices were strided)."""
    out = gather_rows(values, corners[:, 0])
    out *= w[:, 0:1]
    for k in (1, 2):
        term = gather_rows(values, corners[:, k])
        term *= w[:, k : k + 1]
        out += term
    return out


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


def interpolated_tbn(raster: Raster, faces: np.ndarray, normals: np.ndarray, tangents: np.ndarray, texels: np.ndarray | None = None):
    """The per-texel tangent frame a glTF renderer builds (covered texels, or the given ones).

    Returns (texel indices into the flattened texture, T, B, N), each frame row-unit: N is the
    interpolated vertex normal, T the interpolated tangent made orthogonal to N, and
    B = cross(N, T) * w.
    """
    flat_face = raster.face.reshape(-1)
    if texels is None:
        texels = np.nonzero(flat_face >= 0)[0]
    corners = gather_rows(faces, flat_face[texels])  # n x 3 vertex ids
    # float32 is ample: the frames feed an 8-bit map
    w = gather_rows(raster.bary.reshape(-1, 3), texels).astype(np.float32, copy=False)
    nrm = _normalize(_blend_corners(w, np.asarray(normals, np.float32), corners))
    tan4 = _blend_corners(w, np.asarray(tangents, np.float32), corners)
    tan = tan4[:, :3]
    along = _dot(tan, nrm)
    for axis in range(3):  # tan -= nrm * along[:, None], column by column (the same products)
        tan[:, axis] -= nrm[:, axis] * along
    tan = _normalize(tan)
    sign = np.where(tan4[:, 3] < 0.0, np.float32(-1.0), np.float32(1.0))
    bit = np.cross(nrm, tan)
    for axis in range(3):
        bit[:, axis] *= sign
    return texels, tan, bit, nrm


def bake_tangent_normals(
    raster: Raster,
    faces: np.ndarray,
    normals: np.ndarray,
    tangents: np.ndarray,
    target_normals: np.ndarray,
    bake_faces: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Express target normals (H x W x 3 per texel, mesh frame, NaN = unknown) in the tangent frame.

    bake_faces: F bool, which faces take the target (others stay flat). Returns the H x W x 3
    tangent-space unit vectors (flat (0, 0, 1) where nothing was baked) and the H x W mask of
    baked texels. Frames are built only for the texels that take a target.
    """
    h, w = raster.face.shape
    flat_face = raster.face.reshape(-1)
    target_all = target_normals.reshape(-1, 3)
    texels = np.nonzero(flat_face >= 0)[0]
    target = gather_rows(target_all, texels)
    finite = np.isfinite(target)
    use = finite[:, 0] & finite[:, 1] & finite[:, 2]  # .all(axis=1): a reduction over 3 is slow
    if bake_faces is not None:
        use &= bake_faces[flat_face[texels]]
    if not use.all():  # (a boolean index of the n x 3 targets moved them value by value)
        kept = np.flatnonzero(use)
        texels, target = texels[kept], gather_rows(target, kept)
    texels, tan, bit, nrm = interpolated_tbn(raster, faces, normals, tangents, texels)
    target = _normalize(target.astype(np.float32, copy=False))
    local = np.stack([_dot(tan, target), _dot(bit, target), _dot(nrm, target)], axis=1)
    # a predicted normal facing away from the surface cannot be shown by a normal map: clamp to the horizon
    local[:, 2] = np.maximum(local[:, 2], 0.02)
    out = np.zeros((h * w, 3), np.float32)
    out[:, 2] = 1.0
    # rows stored as opaque 12-byte records (one move per texel, as gather_rows reads them)
    record = np.dtype((np.void, 12))
    out.view(record).reshape(-1)[texels] = np.ascontiguousarray(_normalize(local), np.float32).view(record).reshape(-1)
    baked = np.zeros(h * w, bool)
    baked[texels] = True
    return out.reshape(h, w, 3), baked.reshape(h, w)


def encode_normal_map(tangent_normals: np.ndarray) -> np.ndarray:
    """Unit tangent-space vectors -> 8-bit RGB (x, y, z in [-1, 1] -> [0, 255])."""
    scaled = tangent_normals * 0.5  # in the input's precision; in place from here (fewer temporaries)
    scaled += 0.5
    scaled *= 255.0
    np.round(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def decode_normal_map(rgb: np.ndarray) -> np.ndarray:
    """8-bit RGB -> unit tangent-space vectors (the inverse of encode_normal_map)."""
    return _normalize(rgb.astype(np.float64) / 255.0 * 2.0 - 1.0)
