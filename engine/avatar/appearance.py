"""The avatar's appearance from a bundle: UVs, base-colour texture and tangent-space normal map.

Inputs are the final mesh (after islands were split) in both frames: camera-frame vertices give
the photo projection (UVs, visibility), avatar-frame vertices and normals give the tangent
frames the normal map is baked against. See textures.py for the pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from engine.avatar import textures as tx
from engine.avatar.islands import SEEN_DEPTH_TOLERANCE_M, SEEN_DEPTH_TOLERANCE_REL, project
from engine.avatar.labels import FRONT_ONLY_CLASSES, class_ids, front_only_to_hair
from engine.geometry.cleanup import same_rows
from engine.geometry.labels import ARM_CLASSES, TRUNK_CLASSES
from engine.geometry.refine_border import LEG_CLOTHING_CLASSES, LEG_SKIN_CLASSES, SHOE_CLASSES
from engine.bundle import srgb_to_linear

# fewer hair pixels than this and the face is refilled from its surroundings instead
MIN_HAIR_PIXELS = 50
# a part's colours are taken this far (px) from its border with other parts when it has enough
# pixels there: a segmentation's edge is a pixel or two off (a rim of cheek labelled hair), and
# one wrong pixel continued along its row streaks the whole back
PART_CORE_PX = 2.0
# the band along the outline whose colours the hidden side continues (share of the person's
# height in pixels: ~3 cm on an adult), and the fewest band pixels a part needs to use it
BACK_BAND_FRACTION = 0.015
MIN_BAND_PIXELS = 20
# texels around the rasterised triangles that keep their own colour (bilinear taps at the edges)
EDGE_TEXELS = 2
# closed meshes: the front's predicted normal detail fades flat toward the hidden island's flat
# normals over the last SEAM_FADE_PX photo pixels before the outline, and where the surface turns
# edge-on to the camera, between these cosines of the view angle (predicted normal against the
# pixel's ray): there one pixel's normal spans centimetres of surface, and the baked detail
# turned into dark streaks beside the islands' border
SEAM_FADE_PX = 4.0
# a seen vertex in front of the surface its pixel shows reads the pixel of the nearest point
# the photo saw, when one lies this close (_onto_its_own_layer)
LAYER_REACH_M = 0.03
# the nearest point is looked for on the vertex's own photo row, and the moves are spread over the
# front's vertices around them, LAYER_SPREAD_ROUNDS rounds of averaging each vertex's move with its
# neighbours' (_spread_over_the_front): a move of 1-5 px beside an unmoved neighbour made each
# triangle between them read across the photo's hair/skin staircase (ragged hair on the demo's
# temple, head_side)
LAYER_SPREAD_ROUNDS = 4
# ... but for the islands' border and this many rings of vertices around it, which look in 3-D and
# keep their moves (moved, the seam's colour step rose)
LAYER_BORDER_RINGS = 2
# ... on the head (Hair and the face classes) this many, the border alone: along the edge-on side of
# the face the rings' 3-D moves (1-5 px along, up to 3 rows off) beside their neighbours' spread
# moves read across the photo's hair strip staircase at the outline (teeth of hair and skin in
# crops-102's head_side)
HEAD_LAYER_BORDER_RINGS = 0
SQUARE_COS = (0.15, 0.35)
# stray slivers of hair beside the face narrower than this along their rows (px) are not hair to
# the closed avatar's colours (_stray_hair)
THIN_HAIR_PX = 3
# the face's pixels this close to the outside (px, distance to the nearest outside pixel's
# centre) along a stray sliver are its sub-pixel rest (_sliver_rim)
SLIVER_RIM_PX = 1.5
# a hidden vertex's front point (_through_the_front) that moves its read farther than the outline
# band is wide must land on a pixel whose depth is within this of its own (metres, share of the
# depth): a slanted surface's pixels pass, a flying outline pixel's point far from where it lands
# does not
THROUGH_DEPTH_TOLERANCE = (0.05, 0.02)
# a hidden vertex whose pixel shows another body part than its own label reads the nearest pixel
# of its own part instead (_onto_its_own_part) when one lies within this share of the person's
# height (px); rows count OWN_PART_ROW_COST times columns in that distance (a stripe or a hem
# runs across the rows: a move along the row keeps it lined up), and the pixel read lies
# OWN_PART_INSIDE_PX inside its part where the part is wide enough (a bilinear tap on its last
# pixel mixes in the neighbour's colour)
OWN_PART_REACH = 0.1
OWN_PART_ROW_COST = 3.0
OWN_PART_INSIDE_PX = 1.5
# a hidden trunk vertex whose pixel shows its own part within this of an arm's pixel (px) reads its
# part's nearest pixel farther from the arm (_onto_its_own_part's edges): the photo's colour at
# the seg's edge mixes the two parts (shared person_101's albedo: 169 of the shirt's 279 pixels
# touching an arm more than 20 sRGB levels off the shirt's stripes, 11 of 134 two pixels in, none
# three in), and the shirt's back behind an arm read those row ends (specks on the shoulder's back)
OWN_PART_EDGE_PX = 3.0
# a hidden vertex labelled an arm's part farther than LIMB_BACK_REACH times the part's width on
# its row from every seen point of that part, plus LIMB_BACK_MARGIN (metres: the depth
# error), is what lies behind the arm, not its back (_off_the_limb); a cylinder's back lies
# within 0.71 of its width from its seen half. It reads the trunk's nearest pixel within
# LIMB_ONTO_REACH of the person's height (the arm lies against the trunk: at OWN_PART_REACH, moves
# of up to 10 % of the height took a degraded random-103's forearm back onto the shirt)
LIMB_BACK_REACH = 0.8
LIMB_BACK_MARGIN = 0.01
LIMB_ONTO_REACH = 0.06
UPPER_ARM_CLASSES = ("Left_Upper_Arm", "Right_Upper_Arm")
# the upper arms the keypoints pose beside the torso keep their reads (_arms_off_the_side)
OFF_THE_LIMB_POSE = True
# a seen vertex (or one on the islands' border) whose read takes in a pixel of another
# class whose point lies more than this nearer or deeper than its own pixel's (metres: an occluding
# edge inside the person) reads a pixel of its own away from that one (_off_the_depth_steps)
STEP_TAP_M = 0.05
# a seen vertex (or one on the islands' border) labelled a trunk part whose pixel shows an arm
# more than this in front of it (metres) lies behind the arm, not on it (_behind_a_limb): an arm
# held toward the camera over the sleeve's underside lies tens of centimetres in front of it
BEHIND_LIMB_M = 0.05
# a hidden vertex labelled a forearm or a hand (FOREARM_AND_HAND_CLASSES) whose pixel shows the
# trunk or a thigh whose point lies more than this behind it (metres) is not on that surface but
# the forearm's back bulging past its outline over the shirt or the trousers it hangs in front of
# (_in_front_of_the_trunk); the trunk's own back beside the forearm, labelled forearm, lies within
# 3.2 cm of that pixel's point on shared person_102
FOREARM_OVER_TRUNK_M = 0.035
FOREARM_AND_HAND_CLASSES = ("Left_Lower_Arm", "Right_Lower_Arm", "Left_Hand", "Right_Hand")
UNDER_THE_FOREARMS = TRUNK_CLASSES + ("Left_Upper_Leg", "Right_Upper_Leg")
# a lock of hair framing the face at the outline (closed meshes, front island): within
# HAIR_LOCK_PX of the outline on rows whose pixel that far in is pure face, its inner edge is
# found from the albedo's hair coverage (pixels under LOCK_PURE from pure: pure), smoothed over
# LOCK_SMOOTH_ROWS rows (_lock_edges), and where it is at most LOCK_THIN_PX wide the texels across
# it ramp from the face's colour to the hair's over one texel (_lock_texels)
HAIR_LOCK_PX = 8
LOCK_THIN_PX = 4.0
LOCK_SMOOTH_ROWS = 2.0
LOCK_PURE = 0.1
# the hems' and the shoes' tops' colour edges in the front island (HEM_EDGES, refine_border's leg
# borders) are redrawn from the seg's border smoothed over HEM_SMOOTH_PX (Gaussian): the photo's
# edge is a staircase of whole pixels, each 2-3 texels, and at a sock top or a hem it showed as
# teeth a pixel high along the edge (_smooth_hem_edges). The texels within HEM_BAND_PX of the
# border ramp from one side's colour to the other's over HEM_RAMP_PX (the bilinear resample's
# ramp across a pixel's edge)
HEM_SMOOTH_PX = 1.5
HEM_BAND_PX = 2
HEM_RAMP_PX = 1.0
HEM_EDGES = ((LEG_SKIN_CLASSES, LEG_CLOTHING_CLASSES), (SHOE_CLASSES, LEG_SKIN_CLASSES + LEG_CLOTHING_CLASSES))


@dataclass
class Appearance:
    uv: np.ndarray  # V x 2 float32, glTF convention
    tangents: np.ndarray  # V x 4 float32, avatar frame
    layout: tx.AtlasLayout
    albedo_linear: np.ndarray  # h x w x 3 float32
    albedo_srgb8: np.ndarray  # h x w x 3 uint8
    normal_rgb8: np.ndarray | None  # h x w x 3 uint8 tangent-space map, None without predicted normals
    albedo_source: str  # "albedo" (predicted, lighting removed) or "photo" (fallback)
    stats: dict = field(default_factory=dict)


def _all_finite(a: np.ndarray) -> np.ndarray:
    """np.isfinite(a).all(axis=-1), channel by channel (ANDs of H x W maps: the 3-long
    reduction ran 3 values per inner loop)."""
    finite = np.isfinite(a[..., 0])
    for channel in range(1, a.shape[-1]):
        finite &= np.isfinite(a[..., channel])
    return finite


def _source_colour(bundle) -> tuple[np.ndarray, np.ndarray, str]:
    """Linear RGB over the photo, where it is trustworthy, and where it came from."""
    if bundle.albedo is not None:
        valid = bundle.mask & _all_finite(bundle.albedo)
        return np.nan_to_num(bundle.albedo).astype(np.float32), valid, "albedo"
    # The photo's own colours at the silhouette mix in the background: trust one pixel less.
    valid = ndimage.binary_erosion(bundle.mask, iterations=1)
    if not valid.any():
        valid = bundle.mask
    return srgb_to_linear(bundle.image.astype(np.float32) / 255.0).astype(np.float32), valid, "photo"


def _window_filled(values, valid, layout: tx.AtlasLayout):
    """The photo window the texture reads, filled outside `valid`; and its origin (row, col)."""
    rows, cols = tx.crop_window(layout, valid.shape)
    return tx.push_pull_fill(values[rows, cols], valid[rows, cols]), valid[rows, cols], (rows.start, cols.start)


def _hidden_side_colour(bundle, window_colour, colour_valid, layout, window_seg=None):
    """Colours for the far side, per body part, from what the photo shows near the silhouette.

    The back of a part is most like its sides: each part's hidden colour is filled (push-pull)
    from its own pixels within a band along the person's outline, so a shirt's print, a face or
    a logo in the middle of the front never reaches the back, while a sleeve, a trouser leg or
    skin continues around. Face, lips, teeth and glasses are filled from the hair on the rows
    where hair reaches the outline (_hair_row_weight: the back of most heads), else from the
    skin near the head's outline. At the outline itself the hidden colour equals the seen one
    (no seam where the islands meet) but for the face beside hair framing it; past the outline
    each part continues its own hidden colour.
    """
    rows, cols = tx.crop_window(layout, colour_valid.shape)
    valid = colour_valid[rows, cols]
    person = bundle.mask[rows, cols]
    band_px, outline_distance = _outline_band(person)
    band = valid & (outline_distance <= band_px)
    if bundle.seg is None:
        return tx.push_pull_fill(window_colour, band) if band.any() else window_colour
    seg = bundle.seg[rows, cols] if window_seg is None else window_seg
    front_only = np.isin(seg, class_ids(FRONT_ONLY_CLASSES))
    hair = valid & np.isin(seg, class_ids(["Hair"]))
    # hair goes round the back of the head on the rows where it reaches the outline (beside the
    # face, down to the shoulders when long), and on the rows between; below, the back of the
    # neck is skin, blended over one band's rows
    hair_rows = _hair_row_weight((band & hair).any(axis=1), band_px)
    hair_ids = class_ids(["Hair"])
    hair = _part_core(hair, person & ~np.isin(seg, hair_ids), MIN_HAIR_PIXELS)
    jobs = []  # (region, its source pixels, weight per row or None for 1)
    for cls in np.unique(seg[person]):
        region = person & (seg == cls)
        if cls in hair_ids:
            source = band & hair
        else:
            # _row_ends over the region's box: outside it the region has no pixel
            region_box = _box(region)
            ends = np.zeros_like(region)
            ends[region_box] = _row_ends(region[region_box], band_px)
            source = (band | (valid & ends)) & region
        if source.sum() < MIN_BAND_PIXELS:
            source = valid & region
        if front_only[region].any() and hair.sum() >= MIN_HAIR_PIXELS:
            jobs.append((region & (hair_rows > 0)[:, None], hair, hair_rows))
            jobs.append((region & (hair_rows < 1)[:, None], source, 1.0 - hair_rows))  # the neck's own skin
        else:
            jobs.append((region, source, None))
    out = window_colour.copy()
    total = np.zeros_like(window_colour)
    weight = np.zeros(window_colour.shape[:2], np.float32)
    for region, source, row_weight in jobs:
        if not region.any() or not source.any():
            continue
        # fill over the part's bounding box (with its sources), not the whole window
        box = _box(region | source)
        filled = _continue_along_rows(window_colour[box], source[box], region[box] | source[box])
        w = np.ones(region[box].shape, np.float32) if row_weight is None else np.broadcast_to(
            row_weight[box[0], None], region[box].shape).astype(np.float32)
        w = np.where(region[box], w, 0.0)
        # channel by channel: w[..., None] * filled's products and sums (broadcast along the
        # channels they ran 3 values per inner loop)
        total_box = total[box]
        for channel in range(total.shape[2]):
            total_box[..., channel] += w * filled[..., channel]
        weight[box] += w
    done = weight > 0
    for channel in range(out.shape[2]):  # total[done] / weight[done][:, None], channel by channel
        np.divide(total[..., channel], weight, out=out[..., channel], where=done)
    # past the outline the hidden side continues its own colours, not the photo's: a hidden
    # triangle reaching beyond the last pixel (or a bilinear tap there) read the photo's fill,
    # the cheek's skin where the face reaches the outline, as light dashes on the hair beside it
    return tx.push_pull_fill(out, person) if person.any() else out


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """The bounding box (rows, columns) of a 2-D bool mask's True pixels (at least one)."""
    r, c = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1)


def _row_ends(region: np.ndarray, band_px: float) -> np.ndarray:
    """The pixels of `region` within `band_px` of its first or last pixel on their row: a part's
    sides, also where they meet another part instead of the outline (a torso between the arms
    hanging against it has no outline on those rows; its back took one flat colour there, the
    shirt's stripes stopping at the armpits)."""
    w = region.shape[1]
    cols = np.arange(w)
    first = np.argmax(region, axis=1)[:, None]
    last = (w - 1 - np.argmax(region[:, ::-1], axis=1))[:, None]
    # cols - first <= band_px for whole numbers: cols <= first + floor(band_px) (no H x W
    # differences)
    reach = int(np.floor(band_px))
    return region & ((cols <= first + reach) | (cols >= last - reach))


def _hair_row_weight(at_outline: np.ndarray, band_px: float) -> np.ndarray:
    """Per row, how much the back of the head is hair (0-1, float32): 1 on the rows where hair
    reaches the outline (`at_outline`) and in gaps of up to two bands between them, falling to 0
    over `band_px` rows beyond (the lowest hair seen at the sides is where the back's hair ends
    too: a margin of hair rows below it put hair on the back of a short-haired person's neck)."""
    if not at_outline.any():
        return np.zeros(len(at_outline), np.float32)
    reach = max(1, int(round(band_px)))
    padded = np.pad(at_outline, 2 * reach)
    closed = ndimage.binary_closing(padded, structure=np.ones(2 * reach + 1, bool))[2 * reach: -2 * reach]
    beyond = ndimage.distance_transform_edt(~closed)
    return np.clip(1.0 - beyond / max(band_px, 1.0), 0.0, 1.0).astype(np.float32)


def hidden_hair_labels(vertex_labels, vertex_island, vertices_camera, bundle, K) -> np.ndarray:
    """Vertex classes with the hidden island's face (FRONT_ONLY_CLASSES) turned Hair where its
    colour is the hair's (_hidden_side_colour: the back of the head on the rows where hair
    reaches the outline, at least one half), read at the photo row the vertex takes its colour
    from: the back of the head falls in the glb's hair material slot (matte, selected with the
    hair), not the skin's (with a sheen) beside hair-coloured texels."""
    hidden = np.asarray(vertex_island) == tx.HIDDEN
    if bundle.seg is None or not hidden.any():
        return vertex_labels
    person = bundle.mask
    band_px, outline_distance = _outline_band(person)
    hair = person & np.isin(bundle.seg, class_ids(["Hair"]))
    hair &= ~_stray_hair(bundle.seg, person)  # as _hidden_side_colour's
    if hair.sum() < MIN_HAIR_PIXELS:
        return vertex_labels
    weight = _hair_row_weight((hair & (outline_distance <= band_px)).any(axis=1), band_px)
    xy = project(vertices_camera[hidden], K)
    if bundle.pointmap is not None:
        xy = _through_the_front(vertices_camera[hidden], xy, bundle.pointmap, K)
    row = np.clip(np.nan_to_num(xy[:, 1]).astype(np.int64), 0, len(weight) - 1)
    to_hair = np.zeros(len(hidden), bool)
    to_hair[hidden] = weight[row] >= 0.5
    return front_only_to_hair(vertex_labels, to_hair)


def _band_px(rows: np.ndarray) -> float:
    """The outline band's width in pixels for a person on these photo rows (indices):
    BACK_BAND_FRACTION of the person's height, at least 2."""
    return max(2.0, BACK_BAND_FRACTION * (np.ptp(rows) + 1 if len(rows) else 1))


def _outline_band(person: np.ndarray):
    """The band along the person's outline whose colours the hidden side continues: its width
    in pixels (_band_px) and each pixel's distance inside."""
    band_px = _band_px(np.flatnonzero(person.any(axis=1)))
    return band_px, ndimage.distance_transform_edt(np.pad(person, 1))[1:-1, 1:-1]


def _part_core(source: np.ndarray, others: np.ndarray, fewest: int) -> np.ndarray:
    """`source` without its pixels within PART_CORE_PX of `others` (the person's other parts),
    unless fewer than `fewest` would be left."""
    if not others.any():
        return source
    r, c = np.nonzero(source)
    if len(r) == 0:
        return source
    # the distance only matters near the source: measure it over the source's box (plus a margin)
    m = int(np.ceil(PART_CORE_PX)) + 1
    box = (slice(max(r.min() - m, 0), r.max() + m + 1), slice(max(c.min() - m, 0), c.max() + m + 1))
    core = source.copy()
    core[box] &= ndimage.distance_transform_edt(~others[box]) > PART_CORE_PX
    return core if core.sum() >= fewest else source


def _continue_along_rows(colour: np.ndarray, source: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Fill from `source` pixels: along each row between the nearest source on the left and on
    the right (linear in between) where both lie in the same run of `allowed` pixels, so a
    stripe or a hem seen at both sides runs on around the back; push-pull elsewhere."""
    h, w = source.shape
    # column indices as int32 (the same whole numbers; the quotient below is float64 either way)
    cols = np.broadcast_to(np.arange(w, dtype=np.int32), (h, w))
    left = np.maximum.accumulate(np.where(source, cols, np.int32(-1)), axis=1)
    right = np.minimum.accumulate(np.where(source, cols, np.int32(w))[:, ::-1], axis=1)[:, ::-1]
    breaks = np.cumsum(~allowed, axis=1, dtype=np.int32)
    both = (left >= 0) & (right < w)
    left_c, right_c = np.clip(left, 0, w - 1), np.clip(right, 0, w - 1)
    both &= np.take_along_axis(breaks, left_c, axis=1) == np.take_along_axis(breaks, right_c, axis=1)
    out = tx.push_pull_fill(colour, source)
    if both.any():
        # only the pixels between two sources, gathered and written as whole pixels (the same
        # products and sums, per channel, as the full-map form's broadcast)
        r, c = np.nonzero(both)
        at_left, at_right = left_c[r, c], right_c[r, c]
        span = np.maximum(at_right - at_left, 1).astype(np.float32)
        towards_right = ((c.astype(np.int32) - at_left) / span).astype(np.float32)
        flat = np.ascontiguousarray(colour).reshape(h * w, -1)
        from_left, from_right = tx.gather_rows(flat, r * w + at_left), tx.gather_rows(flat, r * w + at_right)
        across = np.empty_like(from_left)
        for channel in range(across.shape[1]):
            across[:, channel] = (1.0 - towards_right) * from_left[:, channel] + towards_right * from_right[:, channel]
        out[r, c] = across
    return out


@dataclass
class PhotoMaps:
    """The photo's maps resampled onto the texture (they need the layout, not the raster)."""

    normal: Future | None  # texture-sized predicted normals (_normal_target); None without normals
    colour: Future  # (base colour on its island(s), unpadded; its source) (_albedo_islands)


def start_photo_maps(pool: Executor, bundle, layout: tx.AtlasLayout) -> PhotoMaps:
    """Resample the predicted normals and the base colour in `pool` (normals first: the bake
    wants them as soon as the raster is done)."""
    normal = None if bundle.normal is None else pool.submit(_normal_target, bundle, layout)
    return PhotoMaps(normal, pool.submit(_albedo_islands, bundle, layout))


def _through_the_front(vertices_camera, photo_xy, pointmap, K) -> np.ndarray:
    """Where a hidden vertex reads the photo: at the front point with its own x and y.

    Projecting a back vertex straight into the photo reads the front at a point up to several
    centimetres higher or lower (the ray slants through the body's depth), which shears a
    stripe or a hem between the front and the back; the front point at the same height and
    side, (X, Y, Z_front), lines them up. Z_front is the pointmap's depth where the vertex
    projects; vertices projecting onto no person pixel keep their projection, and so do those
    whose front point moves them farther than the outline band is wide (_outline_band) onto a
    pixel that does not show it (off the person, or the pointmap's depth there more than
    THROUGH_DEPTH_TOLERANCE off Z_front): a flying pixel at the outline, its depth pulled a metre
    toward the camera, sent the front point 100 px away, and the back of the neck and the sleeves
    took specks of hair and shoe colour from there. A short move stays even onto another surface
    (the back of a hand beside the thigh that hides part of it reads the hand's pixels, not the
    trousers its plain projection falls on).
    """
    h, w = pointmap.shape[:2]

    def pixel(xy):
        return (np.clip(np.nan_to_num(xy[:, 1]).astype(np.int64), 0, h - 1),
                np.clip(np.nan_to_num(xy[:, 0]).astype(np.int64), 0, w - 1))

    front_depth = pointmap[pixel(photo_xy) + (2,)].astype(np.float64)
    ok = np.isfinite(front_depth) & (front_depth > 0)
    moved = np.asarray(vertices_camera, np.float64)[ok].copy()
    moved[:, 2] = front_depth[ok]
    moved_xy = project(moved, K)
    there = pointmap[pixel(moved_xy) + (2,)].astype(np.float64)
    with np.errstate(invalid="ignore"):
        shown = np.abs(there - front_depth[ok]) <= np.maximum(THROUGH_DEPTH_TOLERANCE[0], THROUGH_DEPTH_TOLERANCE[1] * front_depth[ok])
    band_px = _band_px(np.flatnonzero(np.isfinite(pointmap[..., 2]).any(axis=1)))
    shown |= np.linalg.norm(moved_xy - photo_xy[ok], axis=1) <= band_px
    ok[ok] = shown
    out = photo_xy.copy()
    out[ok] = moved_xy[shown]
    return out


def _onto_the_person(photo_xy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A closed solid reaches a little past the photo's outline (the contour lies beyond the
    last pixel centre); a vertex projecting off the person would read the padding around it (a
    blur of the nearby colours: light specks along the side seam). Such vertices read the
    nearest person pixel instead."""
    h, w = mask.shape
    row, col = _photo_pixels(photo_xy, (h, w))
    off = ~mask[row, col]
    if not off.any():
        return photo_xy
    r0, r1 = max(0, row[off].min() - 2), min(h, row[off].max() + 3)
    c0, c1 = max(0, col[off].min() - 2), min(w, col[off].max() + 3)
    window = mask[r0:r1, c0:c1]
    if not window.any():
        return photo_xy
    _, (near_r, near_c) = ndimage.distance_transform_edt(~window, return_indices=True)
    out = photo_xy.copy()
    out[off, 0] = near_c[row[off] - r0, col[off] - c0] + c0 + 0.5
    out[off, 1] = near_r[row[off] - r0, col[off] - c0] + r0 + 0.5
    return out


def _onto_its_own_layer(vertices_camera, photo_xy, pointmap, along_row=None) -> np.ndarray:
    """A seen vertex beside an occluding edge (the side of a face, edge-on, in front of the hair
    behind it at the outline) projects onto a pixel that shows a surface centimetres behind it,
    and took that surface's colour: the hair strip's brown in teeth along the cheek. Such
    vertices (more than islands.SEEN_DEPTH_TOLERANCE in front of their pixel's point) read the
    pixel whose point is nearest to them instead (none within LAYER_REACH_M: they stay). Those
    `along_row` marks (bool per vertex) look on their own photo row only and keep their row
    coordinate: the nearest point in 3-D lay up to 3 rows above or below (the demo's temple, half
    its moves a row or more), and neighbouring vertices read across the rows' hair/skin staircase."""
    h, w = pointmap.shape[:2]
    row, col = _photo_pixels(photo_xy, (h, w))
    z = np.asarray(vertices_camera, np.float64)[:, 2]
    tolerance = np.maximum(SEEN_DEPTH_TOLERANCE_M, SEEN_DEPTH_TOLERANCE_REL * z)
    with np.errstate(invalid="ignore"):
        behind = pointmap[row, col, 2] - z > tolerance
    if not behind.any():
        return photo_xy
    margin = 32
    r0, r1 = max(0, row[behind].min() - margin), min(h, row[behind].max() + margin + 1)
    c0, c1 = max(0, col[behind].min() - margin), min(w, col[behind].max() + margin + 1)
    window = pointmap[r0:r1, c0:c1]
    valid = _all_finite(window)
    if not valid.any():
        return photo_xy
    pixel_r, pixel_c = np.nonzero(valid)
    points = window[valid].astype(np.float64)
    targets = np.asarray(vertices_camera, np.float64)[behind]
    rowwise = np.zeros(len(targets), bool) if along_row is None else np.asarray(along_row)[behind]
    distance, nearest = np.full(len(targets), np.inf), np.zeros(len(targets), np.int64)
    if not rowwise.all():
        distance[~rowwise], nearest[~rowwise] = cKDTree(points).query(targets[~rowwise])
    if rowwise.any():
        # the row as a fourth coordinate, its pixels a kilometre apart: the nearest point on it
        apart = 1e3
        row_y = np.floor(np.nan_to_num(photo_xy[behind, 1][rowwise])) + 0.5
        _, on_row = cKDTree(np.column_stack([points, apart * (pixel_r + r0 + 0.5)])).query(
            np.column_stack([targets[rowwise], apart * row_y]))
        nearest[rowwise] = on_row
        distance[rowwise] = np.linalg.norm(points[on_row] - targets[rowwise], axis=1)
    near = distance < LAYER_REACH_M
    moved = np.nonzero(behind)[0][near]
    out = photo_xy.copy()
    out[moved, 0] = pixel_c[nearest[near]] + c0 + 0.5
    across = ~rowwise[near]
    out[moved[across], 1] = pixel_r[nearest[near][across]] + r0 + 0.5
    return out


def _spread_over_the_front(move: np.ndarray, faces: np.ndarray, front: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """`move` (V x 2, the reads' moves onto their own layer) averaged LAYER_SPREAD_ROUNDS times
    over each `front` vertex and its front neighbours (the mesh's edges), but for the `fixed`
    vertices, which keep theirs (near the islands' border: moved, the seam's colour step rose)."""
    from scipy import sparse

    n = len(move)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = edges[front[edges[:, 0]] & front[edges[:, 1]]]
    rows = np.concatenate([edges[:, 0], edges[:, 1], np.arange(n)])
    cols = np.concatenate([edges[:, 1], edges[:, 0], np.arange(n)])
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    adjacency.data[:] = 1.0  # an edge shared by two faces counts once
    mean = sparse.diags(1.0 / np.asarray(adjacency.sum(axis=1)).ravel()) @ adjacency
    update = front & ~fixed
    out = move.astype(np.float64)
    for _ in range(LAYER_SPREAD_ROUNDS):
        out[update] = (mean @ out)[update]
    return out


def _on_the_border(vertices_camera: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """The vertices of either island at a position a vertex of the other island has too (the
    islands were split apart along their border, each keeping a copy of its vertices)."""
    same = same_rows(vertices_camera, as_numbers=False)
    if same is not None:  # equal bytes, as np.isin over the rows' bytes below (without its sorts)
        group = same[0]
        in_hidden, in_front = (np.bincount(group[side], minlength=len(same[1])) > 0 for side in (hidden, ~hidden))
        return np.where(hidden, in_front[group], in_hidden[group])
    rows = np.ascontiguousarray(np.asarray(vertices_camera)).view(
        np.dtype((np.void, vertices_camera.dtype.itemsize * vertices_camera.shape[1])))[:, 0]
    return np.where(hidden, np.isin(rows, rows[~hidden]), np.isin(rows, rows[hidden]))


def _photo_pixels(photo_xy: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) int64 of the pixels photo coordinates (V x 2, NaN read as 0) fall in, clipped
    to an image of `shape`."""
    h, w = shape[:2]
    col = np.clip(np.nan_to_num(photo_xy[:, 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.nan_to_num(photo_xy[:, 1]).astype(np.int64), 0, h - 1)
    return row, col


def _onto_its_own_part(photo_xy: np.ndarray, vertex_labels: np.ndarray, seg: np.ndarray, mask: np.ndarray,
                       parts=TRUNK_CLASSES, off=ARM_CLASSES, edges: bool = False,
                       reach_share: float = OWN_PART_REACH) -> np.ndarray:
    """A hidden vertex reads the hidden side's colour of the part its pixel shows
    (_hidden_side_colour); where another part lies in front of its own (an arm hanging against
    the torso, a hand over the thigh), the back of the shirt behind the arm read the arm's
    colour, skin patches on the shirt's back. A vertex labelled one of `parts` whose pixel
    shows one of `off` reads the nearest pixel of its own class (OWN_PART_REACH,
    OWN_PART_ROW_COST, OWN_PART_INSIDE_PX): the end of its part's row beside the arm, whose
    hidden colour is the part's own; a label with no pixels within reach stays. Only the trunk
    behind a limb by default: with the limbs' backs moved off the trunk's pixels too, or every
    part off every other, the back's error rose (bench_back_colour 5.61 -> 6.20 sRGB levels,
    cause not traced); hair reading a face's pixel must stay (the face's hidden colour is the hair's on the rows hidden_hair_labels turns Hair).
    With `edges`, a vertex of `parts` whose pixel shows its own part within OWN_PART_EDGE_PX of
    an `off` pixel moves too, and every mover reads a pixel farther than that from `off`: the
    photo's colour there mixes the two parts (_off_edge). reach_share: how far a vertex looks, a
    share of the person's height."""
    row, col = _photo_pixels(photo_xy, seg.shape)
    labels = np.asarray(vertex_labels)
    shown = seg[row, col]
    ours = np.isin(labels, class_ids(parts))
    other = (labels != shown) & ours & np.isin(shown, class_ids(off))
    near_off = _off_edge(seg, class_ids(off)) if edges and ours.any() else None
    if near_off is not None:
        other |= (labels == shown) & ours & near_off[row, col]
    if not other.any():
        return photo_xy
    reach = _own_part_reach(mask) * reach_share / OWN_PART_REACH
    out = photo_xy.copy()
    for cls in np.unique(labels[other]):
        own = mask & (seg == cls)
        _onto_nearest(out, np.flatnonzero(other & (labels == cls)), row, col,
                      own if near_off is None else own & ~near_off, reach)
    return out


def _off_edge(seg: np.ndarray, off_ids) -> np.ndarray | None:
    """H x W bool: the pixels within OWN_PART_EDGE_PX of an `off_ids` pixel (those pixels
    included); None where there is none."""
    off = np.isin(seg, off_ids)
    if not off.any():
        return None
    r, c = _box(off)
    m = int(np.ceil(OWN_PART_EDGE_PX)) + 1
    box = (slice(max(r.start - m, 0), r.stop + m), slice(max(c.start - m, 0), c.stop + m))
    out = np.zeros(seg.shape, bool)
    out[box] = ndimage.distance_transform_edt(~off[box]) <= OWN_PART_EDGE_PX
    return out


def _behind_a_limb(photo_xy: np.ndarray, vertices_camera: np.ndarray, vertex_labels: np.ndarray, seg: np.ndarray,
                   mask: np.ndarray, pointmap: np.ndarray) -> np.ndarray:
    """_onto_its_own_part for the vertices whose pixel's point lies more than BEHIND_LIMB_M in
    front of them: the seen island's and the islands' border's (which keep the front's pixel
    otherwise). A forearm held toward the camera hides the sleeve's underside; the front island's
    smoothed weight keeps the hidden strip's vertices beside the outline, and the border's copies
    read the forearm's skin (crops-102, seam_left: a skin smear across the sleeve's white stripe
    under the raised arm). Both copies of a border vertex share its position and label and so
    move alike: the islands still meet on the same pixel."""
    row, col = _photo_pixels(photo_xy, seg.shape)
    with np.errstate(invalid="ignore"):
        behind = np.asarray(vertices_camera, np.float64)[:, 2] - pointmap[row, col, 2] > BEHIND_LIMB_M
    if not behind.any():
        return photo_xy
    out = photo_xy.copy()
    out[behind] = _onto_its_own_part(photo_xy[behind], np.asarray(vertex_labels)[behind], seg, mask)
    return out


def _in_front_of_the_trunk(photo_xy: np.ndarray, vertices_camera: np.ndarray, vertex_labels: np.ndarray,
                           seg: np.ndarray, mask: np.ndarray, pointmap: np.ndarray) -> np.ndarray:
    """A hidden vertex labelled a forearm or a hand whose pixel shows the trunk or a thigh whose
    point lies more than FOREARM_OVER_TRUNK_M behind it reads the nearest pixel of its own part within
    LIMB_ONTO_REACH of the person's height (as _onto_its_own_part). The back of a forearm hanging
    in front of the torso's side is wider than its outline in the photo, and its vertices past
    the outline read the shirt or the trousers behind it (shared person_102's right forearm: 47 of
    its 1035 hidden vertices, 2-7 cm in front of the trousers' pixel, grey and blue specks on the
    skin). The depth test keeps the trunk's back beside the forearm, which the solid labels
    forearm but lies on the trunk's surface, reading the trunk. Not a hand or forearm behind the
    trunk's pixel (a hand hanging behind the hip, the trousers in front of it): moved too, the
    degraded posed people's back colour rose (bench_hands_before_trunk --colour 6.86 -> 6.89)."""
    row, col = _photo_pixels(photo_xy, seg.shape)
    with np.errstate(invalid="ignore"):
        in_front = pointmap[row, col, 2] - np.asarray(vertices_camera, np.float64)[:, 2] > FOREARM_OVER_TRUNK_M
    if not in_front.any():
        return photo_xy
    out = photo_xy.copy()
    out[in_front] = _onto_its_own_part(photo_xy[in_front], np.asarray(vertex_labels)[in_front], seg, mask,
                                       parts=FOREARM_AND_HAND_CLASSES, off=UNDER_THE_FOREARMS,
                                       reach_share=LIMB_ONTO_REACH)
    return out


def _off_the_depth_steps(photo_xy: np.ndarray, seg: np.ndarray, mask: np.ndarray, pointmap: np.ndarray) -> np.ndarray:
    """A vertex whose read takes in a pixel of another class across a depth step (STEP_TAP_M)
    reads the centre of its own pixel's neighbour away from that pixel (its own pixel's centre
    where that neighbour is not its own surface). Along an occluding edge inside
    the person (the hip in front of a hand hanging 25 cm behind it, shared person_102) the
    solid's faces turn away from the camera in slivers a pixel wide whose corners sit on the
    edge: their texels mixed the hand's skin into the trousers, and the slivers, broad seen from
    the side, showed it as a skin zipper down the side seam. A read on its own pixel's centre
    still takes a fifth of the neighbour one texel on; a pixel farther in it takes none. On one
    surface (same class, or a slope's steep depths) the reads stay: a move there reads the
    staircase of a class border."""
    h, w = seg.shape
    row, col = _photo_pixels(photo_xy, (h, w))
    own_z = pointmap[row, col, 2]
    own_class = seg[row, col]
    # the pixels whose colour the texels around the read take in: the texture resamples the photo
    # bilinearly at about 2.5 texels per pixel, so the texels within half a pixel of the read reach
    # the pixels whose centre (at +0.5) lies within a pixel of it, on either side; and the mean
    # way back from those across a step to the vertex's own pixel
    x, y = np.nan_to_num(photo_xy[:, 0]), np.nan_to_num(photo_xy[:, 1])
    count = np.zeros(len(photo_xy), np.int64)
    away = np.zeros((len(photo_xy), 2))   # (columns, rows)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            r, c = np.clip(row + dr, 0, h - 1), np.clip(col + dc, 0, w - 1)
            with np.errstate(invalid="ignore"):
                step = (np.abs(c + 0.5 - x) <= 1.0) & (np.abs(r + 0.5 - y) <= 1.0) & mask[r, c] & \
                    (seg[r, c] != own_class) & (np.abs(pointmap[r, c, 2] - own_z) > STEP_TAP_M)
            count += step
            away[step, 0] -= dc
            away[step, 1] -= dr
    stepped = count > 0
    if not stepped.any():
        return photo_xy
    # a pixel on, away from the step where the mean way back points along that axis
    way = away[stepped] / count[stepped, None]
    r, c = row[stepped], col[stepped]
    r_in = np.clip(r + np.where(np.abs(way[:, 1]) > 0.5, np.sign(way[:, 1]), 0).astype(np.int64), 0, h - 1)
    c_in = np.clip(c + np.where(np.abs(way[:, 0]) > 0.5, np.sign(way[:, 0]), 0).astype(np.int64), 0, w - 1)
    with np.errstate(invalid="ignore"):
        inside = mask[r_in, c_in] & (seg[r_in, c_in] == own_class[stepped]) & \
            (np.abs(pointmap[r_in, c_in, 2] - own_z[stepped]) <= STEP_TAP_M)
    out = photo_xy.copy()
    out[stepped, 0] = np.where(inside, c_in, c) + 0.5
    out[stepped, 1] = np.where(inside, r_in, r) + 0.5
    return out


def _own_part_reach(mask: np.ndarray) -> float:
    """OWN_PART_REACH of the person's height in pixels."""
    person_rows = np.nonzero(mask.any(axis=1))[0]
    return OWN_PART_REACH * (np.ptp(person_rows) + 1 if len(person_rows) else 1)


def _onto_nearest(out: np.ndarray, movers: np.ndarray, row: np.ndarray, col: np.ndarray, region: np.ndarray,
                  reach: float) -> None:
    """The `movers` (indices; their pixels `row`, `col`) read the nearest pixel of `region` within
    `reach` px, rows counting OWN_PART_ROW_COST times columns, OWN_PART_INSIDE_PX inside it where
    it is wide enough; written into `out` (V x 2 photo coordinates) in place."""
    if len(movers) == 0 or not region.any():
        return
    h, w = region.shape
    # over the movers' box plus the reach: the distance only matters within it
    m = int(np.ceil(reach)) + 1
    r0, r1 = max(0, row[movers].min() - m), min(h, row[movers].max() + m + 1)
    c0, c1 = max(0, col[movers].min() - m), min(w, col[movers].max() + m + 1)
    part = region[r0:r1, c0:c1]
    if not part.any():
        return
    inside = ndimage.distance_transform_edt(np.pad(part, 1))[1:-1, 1:-1] > OWN_PART_INSIDE_PX
    target = inside if inside.any() else part
    distance, (near_r, near_c) = ndimage.distance_transform_edt(
        ~target, sampling=(OWN_PART_ROW_COST, 1.0), return_indices=True)
    at = (row[movers] - r0, col[movers] - c0)
    near = distance[at] <= reach
    moved = movers[near]
    out[moved, 0] = near_c[at][near] + c0 + 0.5
    out[moved, 1] = near_r[at][near] + r0 + 0.5


def _off_the_limb(photo_xy: np.ndarray, vertices_camera: np.ndarray, vertex_labels: np.ndarray, seg: np.ndarray,
                  mask: np.ndarray, pointmap: np.ndarray, K: np.ndarray, limbs=UPPER_ARM_CLASSES,
                  onto=TRUNK_CLASSES) -> np.ndarray:
    """A hidden vertex labelled a limb's part (`limbs`) that lies farther from every seen point of
    that part than LIMB_BACK_REACH times the part's width on the vertex's photo row, plus
    LIMB_BACK_MARGIN, is not the part's back but what lies behind it: it reads the nearest pixel
    of `onto` (as _onto_its_own_part) when it lies behind that pixel's point and no background
    parts the two on its row. The closed solid's back behind an arm lying against the shoulder
    or the torso's side took the arm's class from the photo's pixels in front of it, and the
    shirt's back there the arm's skin (shared person_101, seam_left: a skin blob over the back
    of the shoulder, the arm-labelled back up to 16 cm behind an arm 8 cm wide). A forearm held
    toward the camera lies in front of the torso's pixel, an arm hanging apart from the torso
    has background between them on its rows: both keep their own colour. Only the upper arms by
    default: forearms and hands gave nothing on bench_back_colour, and a hand lying on the thigh
    (shared person_102) took specks of the trousers on its back. An upper arm the keypoints pose
    beside the torso is left out by the caller (_arms_off_the_side): the shared people's far
    "backs" behind such arms are the arm's own (docs/avatar.md, fifteenth session)."""
    h, w = seg.shape
    labels = np.asarray(vertex_labels)
    present = np.unique(labels[np.isin(labels, class_ids(limbs))])
    if len(present) == 0:
        return photo_xy
    vertices = np.asarray(vertices_camera, np.float64)
    row, col = _photo_pixels(photo_xy, (h, w))
    focal = 0.5 * (float(K[0, 0]) + float(K[1, 1]))
    reach = _own_part_reach(mask) * LIMB_ONTO_REACH / OWN_PART_REACH
    # everything within a window: the limbs' pixels and their vertices' reads, grown by the reach
    in_limbs = np.isin(seg, present)
    movable = np.isin(labels, present)
    rows = np.concatenate([np.flatnonzero(in_limbs.any(axis=1)), row[movable]])
    cols = np.concatenate([np.flatnonzero(in_limbs.any(axis=0)), col[movable]])
    m = int(np.ceil(reach)) + 2
    r0, r1 = max(0, rows.min() - m), min(h, rows.max() + m + 1)
    c0, c1 = max(0, cols.min() - m), min(w, cols.max() + m + 1)
    seg_w, mask_w, point_w = seg[r0:r1, c0:c1], mask[r0:r1, c0:c1], pointmap[r0:r1, c0:c1]
    seen_w = mask_w & np.isfinite(point_w[..., 2])
    behind_ones = mask_w & np.isin(seg_w, class_ids(onto))
    row_w, col_w = row - r0, col - c0
    # where each would read (the nearest pixel of `onto`), whether it lies behind that pixel's point
    # and no background lies between on its row: found first, the distances only for those
    movers = np.flatnonzero(movable)
    moved = np.full((len(labels), 2), np.nan)
    _onto_nearest(moved, movers, row_w, col_w, behind_ones, reach)
    movers = movers[np.isfinite(moved[movers, 0])]
    mr, mc = moved[movers, 1].astype(np.int64), moved[movers, 0].astype(np.int64)  # window pixels
    with np.errstate(invalid="ignore"):
        keep = vertices[movers, 2] > point_w[mr, mc, 2]
    gaps = np.cumsum(~mask_w, axis=1, dtype=np.int32)  # background pixels up to each column, per row
    r, c = row_w[movers], col_w[movers]
    keep &= gaps[r, np.maximum(c, mc)] == gaps[r, np.minimum(c, mc)]
    movers = movers[keep]
    out = photo_xy.copy()
    for cls in present:
        own = movers[labels[movers] == cls]
        seen = seen_w & (seg_w == cls)
        if len(own) == 0 or seen.sum() < MIN_BAND_PIXELS:
            continue
        points = point_w[seen].astype(np.float64)
        # (a sliding-midpoint tree with larger leaves: the pixels' points lie on a grid, and the
        # balanced tree's queries from centimetres off that surface ran 8 times longer)
        distance, _ = cKDTree(points, leafsize=32, balanced_tree=False, compact_nodes=False).query(vertices[own])
        # the part's width on the vertex's row, in metres at the part's median depth
        width_m = seen.sum(axis=1)[row_w[own]] * float(np.median(points[:, 2])) / focal
        far = own[distance > LIMB_BACK_REACH * width_m + LIMB_BACK_MARGIN]
        out[far] = moved[far] + np.array([c0, r0], np.float64)
    return out


def _arms_off_the_side(bundle, K, limbs=UPPER_ARM_CLASSES) -> tuple[str, ...]:
    """`limbs` less the upper arms the bundle's keypoints pose beside the torso
    (engine.geometry.arm_pose): their hidden side is their own back, not the trunk behind them, and
    reads their own skin, as the closed solid labels it (watertight._behind_the_limbs)."""
    if not OFF_THE_LIMB_POSE or getattr(bundle, "keypoints", None) is None:
        return limbs
    from engine.geometry.arm_pose import arms_beside_the_torso, upper_arm_axes

    depth = np.asarray(bundle.pointmap, np.float64)[..., 2]
    valid = np.asarray(bundle.mask, bool) & np.isfinite(depth)
    beside = arms_beside_the_torso(upper_arm_axes(bundle.keypoints, K), depth, valid, K)
    return tuple(name for name in limbs if int(class_ids([name])[0]) not in beside)


@dataclass
class UvPlan:
    """The texture layout and where every vertex lands in it: all the mesh files need of the
    textures (UVs, tangents), known before any texel is baked; and, when planned with a pool,
    the photo maps already being resampled there."""

    layout: tx.AtlasLayout
    texel_xy: np.ndarray  # V x 2 continuous texel coordinates
    uv: np.ndarray  # V x 2 float32, glTF convention
    tangents: np.ndarray  # V x 4 float32, avatar frame
    photo_maps: PhotoMaps | None = None


def _rings_around(border: np.ndarray, first_ring: np.ndarray, faces: np.ndarray, rings: int) -> np.ndarray:
    """V bool: the `border` vertices and `rings` rings of vertices around them (`first_ring`: the
    border and its first ring, the vertices of the faces with a border corner)."""
    if rings <= 0:
        return border.copy()
    out = first_ring.copy()
    for _ in range(rings - 1):
        out[faces[out[faces].any(axis=1)].ravel()] = True
    return out


def _reading_pixels(vertices_camera, photo_xy, hidden, mask, pointmap, K, faces=None, near_border=None) -> np.ndarray:
    """Where each vertex of a two-island mesh reads the photo: hidden ones through the front,
    then every vertex onto the person, then onto its own layer. The layer comes after the move
    onto the person, not before: a forearm bulging a pixel past its outline lands on the nearest
    person pixel, which can be the sleeve 20 cm behind it (a speck of sleeve colour on the
    wrist); its own layer then finds the forearm's pixel. Given the mesh's `faces`, the layer's
    nearest point is looked for on the vertex's own row and the moves are spread over the
    front's vertices around them (_spread_over_the_front), but for the vertices `near_border`
    (bool: the islands' border and LAYER_BORDER_RINGS rings around it, HEAD_LAYER_BORDER_RINGS on
    the head), which look in 3-D and keep their move."""
    photo_xy = photo_xy.copy()
    photo_xy[hidden] = _through_the_front(vertices_camera[hidden], photo_xy[hidden], pointmap, K)
    photo_xy = _onto_the_person(photo_xy, mask)
    if faces is None:
        return _onto_its_own_layer(vertices_camera, photo_xy, pointmap)
    fixed = np.zeros(len(photo_xy), bool) if near_border is None else np.asarray(near_border, bool)
    layered = _onto_its_own_layer(vertices_camera, photo_xy, pointmap, ~fixed)
    moved = (layered != photo_xy).any(axis=1)
    if not moved.any():
        return layered
    return photo_xy + _spread_over_the_front(layered - photo_xy, faces, ~hidden, fixed)


def plan_uvs(
    mask: np.ndarray,
    *,
    vertices_camera: np.ndarray,
    vertices_avatar: np.ndarray,
    normals_avatar: np.ndarray,
    faces: np.ndarray,
    vertex_island: np.ndarray,
    K: np.ndarray,
    texture_size: int,
    bundle=None,
    pool: Executor | None = None,
    vertex_labels: np.ndarray | None = None,
) -> UvPlan:
    """With `bundle` and `pool`, the photo maps start resampling in `pool` as soon as the
    layout is known (while the tangents are computed here). With `vertex_labels` (the mesh's
    classes) and the bundle's segmentation, hidden vertices read their own part's pixels
    (_onto_its_own_part)."""
    n_islands = int(vertex_island.max()) + 1 if len(vertex_island) else 1
    photo_xy = project(vertices_camera, K)
    if n_islands > 1 and bundle is not None and bundle.pointmap is not None:
        hidden = vertex_island == tx.HIDDEN
        border = _on_the_border(vertices_camera, hidden)
        near_border = np.zeros(len(hidden), bool)
        near_border[faces[border[faces].any(axis=1)].ravel()] = True
        by_the_border = _rings_around(border, near_border, faces, LAYER_BORDER_RINGS)
        if vertex_labels is not None:
            head = np.isin(vertex_labels, class_ids(("Hair",) + FRONT_ONLY_CLASSES))
            by_the_border = np.where(head, _rings_around(border, near_border, faces, HEAD_LAYER_BORDER_RINGS),
                                     by_the_border)
        photo_xy = _reading_pixels(vertices_camera, photo_xy, hidden, mask, bundle.pointmap, K, faces, by_the_border)
        if vertex_labels is not None and bundle.seg is not None:
            # the seen island's and the border's trunk vertices behind an arm read their own part
            # (_behind_a_limb), the border's two copies alike
            outer = ~hidden | near_border
            # and read no colour across an occluding edge inside the person (_off_the_depth_steps),
            # but on the head, whose edge-on sides over the hair behind have their own reads
            # (_onto_its_own_layer, the locks): moved there too, bench_hairline's seen band's
            # colour error rose 5.65 -> 6.15 levels
            stepping = outer & ~np.isin(vertex_labels, class_ids(("Hair",) + FRONT_ONLY_CLASSES))
            photo_xy[stepping] = _off_the_depth_steps(photo_xy[stepping], bundle.seg, mask, bundle.pointmap)
            photo_xy[outer] = _behind_a_limb(photo_xy[outer], vertices_camera[outer], np.asarray(vertex_labels)[outer],
                                             bundle.seg, mask, bundle.pointmap)
            # the hidden island's border vertices and their neighbours read what the front reads
            # there (moved, the triangles along the border took the part's colour from a row end
            # beside the seam: a step where the islands meet)
            inner = hidden & ~near_border
            photo_xy[inner] = _onto_its_own_part(photo_xy[inner], np.asarray(vertex_labels)[inner], bundle.seg, mask,
                                                 edges=OWN_PART_EDGE_PX > 0)
            # and the shirt's back behind an arm lying against it reads the shirt (_off_the_limb)
            photo_xy[inner] = _off_the_limb(photo_xy[inner], vertices_camera[inner], np.asarray(vertex_labels)[inner],
                                            bundle.seg, mask, bundle.pointmap, K, limbs=_arms_off_the_side(bundle, K))
            # and a forearm's or hand's back over the trunk or a thigh reads its own part (_in_front_of_the_trunk)
            photo_xy[inner] = _in_front_of_the_trunk(photo_xy[inner], vertices_camera[inner],
                                                     np.asarray(vertex_labels)[inner], bundle.seg, mask, bundle.pointmap)
    # every vertex, hidden ones included (a closed surface may bulge past the silhouette), must
    # land inside its island
    layout = tx.plan_layout(mask, photo_xy, texture_size, n_islands)
    photo_maps = None if pool is None or bundle is None else start_photo_maps(pool, bundle, layout)
    texel_xy = layout.photo_to_texel(photo_xy, vertex_island)
    uv = layout.texel_to_uv(texel_xy).astype(np.float32)
    tangents = tx.vertex_tangents(vertices_avatar, normals_avatar, uv, faces)
    return UvPlan(layout, texel_xy, uv, tangents, photo_maps)


@contextmanager
def _colour_thread():
    """One worker thread; on the way out it waits for the running job and drops a queued one."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatar-albedo")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _normal_target(bundle, layout: tx.AtlasLayout) -> np.ndarray:
    """The predicted normals per texel of the front island, avatar axes; NaN where unknown."""
    normal_valid = bundle.mask & _all_finite(bundle.normal)
    filled_normal, window_valid, origin = _window_filled(np.nan_to_num(bundle.normal), normal_valid, layout)
    target = tx.resample_crop(filled_normal, layout, tx.FRONT, origin)
    target_valid = tx.resample_crop(window_valid[..., None].astype(np.float32), layout, tx.FRONT, origin)[..., 0] > 0.5
    # camera -> avatar axes: (x, -y, -z), channel by channel (a 2-long inner loop over 1:)
    target[..., 1] *= -1.0
    target[..., 2] *= -1.0
    np.copyto(target, np.nan, where=tx._per_channel(~target_valid, target.shape[2]))
    return target


def _albedo_islands(bundle, layout: tx.AtlasLayout):
    """The base colour resampled onto its island(s), before padding; and its source."""
    colour, colour_valid, source = _source_colour(bundle)
    colour, _, origin = _window_filled(colour, colour_valid, layout)
    if layout.n_islands == 1:
        return tx.resample_crop(colour, layout, tx.FRONT, origin), source
    window_seg = None
    if bundle.seg is not None:
        # both islands: the front without the slivers, the hidden side continuing the face there
        colour, window_seg = _without_stray_hair(bundle, colour, colour_valid, layout)
    hidden = _hidden_side_colour(bundle, colour, colour_valid, layout, window_seg)
    albedo = _both_islands(colour, hidden, layout, origin)
    if window_seg is not None:
        rows, cols = tx.crop_window(layout, colour_valid.shape)
        _lock_texels(albedo, colour, window_seg, bundle.mask[rows, cols], layout, origin)
        _smooth_hem_edges(albedo, colour, window_seg, bundle.mask[rows, cols], layout, origin)
    return albedo, source


def _lock_edges(head: np.ndarray, face: np.ndarray, cover: np.ndarray, person: np.ndarray):
    """Along the right-hand outline (flip the maps for the left): per row its last head pixel R;
    where the hair at the outline begins (a column in pixel-edge coordinates: R + 1 less the
    row's hair coverage within HAIR_LOCK_PX, smoothed over LOCK_SMOOTH_ROWS rows but kept within
    a pixel of the row's own; NaN off a thin lock's rows); and the column the lock's texels start
    at (a pixel before that edge, the row's own and its first pixel with any hair)."""
    h, w = head.shape
    last = w - 1 - np.argmax(head[:, ::-1], axis=1)
    rows = np.arange(h)
    outside = ~person[rows, np.minimum(last + 1, w - 1)] | (last + 1 >= w)
    cols = last[:, None] - np.arange(HAIR_LOCK_PX)[None, :]
    within = cols >= 0
    cols_c = np.clip(cols, 0, w - 1)
    cover_row = np.where(within & head[rows[:, None], cols_c], cover[rows[:, None], cols_c], 0.0)
    inner = cols_c[:, -1]
    valid = head.any(axis=1) & outside & face[rows, inner] & (cover[rows, inner] <= LOCK_PURE)
    edge = np.where(valid, last + 1 - cover_row.sum(axis=1), 0.0)
    hair_at = valid & (cover[rows, last] > 0.5)
    lock = ndimage.binary_dilation(hair_at, iterations=int(3 * LOCK_SMOOTH_ROWS)) & valid
    total = ndimage.gaussian_filter1d(edge, LOCK_SMOOTH_ROWS, mode="constant")
    count = ndimage.gaussian_filter1d(valid.astype(np.float64), LOCK_SMOOTH_ROWS, mode="constant")
    # a staircase's step is a pixel at most: farther from the row's own edge is a corner (the
    # fringe meeting the hair beside the face), kept within a pixel of where the row has it
    smooth = np.clip(total / np.maximum(count, 1e-9), edge - 1.0, edge + 1.0)
    # only where the lock is thin: a wider one's pixels show its edge (and the rows' real changes
    # of its width, which smoothed moved the synthetic people's face pixels into the hair)
    smooth = np.where(lock & (last + 1 - smooth <= LOCK_THIN_PX), smooth, np.nan)
    first_mixed = np.where(within & (cover_row > LOCK_PURE), cols, w).min(axis=1)
    start = np.fmin(np.fmin(smooth, np.where(valid, edge, np.nan)), np.minimum(first_mixed, last + 1)) - 1.0
    return last, smooth, start


def _lock_row_colours(pure: np.ndarray, colour: np.ndarray) -> np.ndarray | None:
    """Per row the mean colour of its `pure` pixels (h x 3); a row without one takes the nearest
    row's; None without any."""
    count = pure.sum(axis=1)
    if not count.any():
        return None
    total = np.stack([np.where(pure, colour[..., k], 0.0).sum(axis=1) for k in range(colour.shape[-1])], axis=1)
    _, (nearest,) = ndimage.distance_transform_edt(count == 0, return_indices=True)
    return total[nearest] / count[nearest][:, None]


def _lock_texels(albedo: np.ndarray, colour: np.ndarray, seg: np.ndarray, person: np.ndarray,
                 layout: tx.AtlasLayout, origin) -> None:
    """The front island's texels across a lock of hair framing the face at the outline, in place:
    from the lock's inner edge (_lock_edges: sub-pixel, smooth over the rows) a ramp one texel wide
    from the face's colour on its row to the hair's. The photo's lock is a staircase a pixel or
    less wide whose edge steps a pixel every few rows; on the edge-on side of the face one pixel
    spans 1-2 cm, and each step was a tooth a row high and a centimetre or two long (shared
    person_101's jaw, head_side). Bilinear taps of a linear ramp put its middle exactly on the
    edge, so the triangles across it show the edge where it lies between the rows too.
    `colour`, `seg` and `person` are the photo window (top-left pixel `origin`)."""
    hair = np.isin(seg, class_ids(["Hair"])) & person
    face = np.isin(seg, class_ids(FRONT_ONLY_CLASSES)) & person
    if hair.sum() < MIN_HAIR_PIXELS or not face.any():
        return
    # the head's box, HAIR_LOCK_PX wider: the lock lies within it
    m = HAIR_LOCK_PX + 2
    r, c = _box(hair | face)
    box = (slice(max(r.start - m, 0), r.stop + m), slice(max(c.start - m, 0), c.stop + m))
    hair, face, person, colour = hair[box], face[box], person[box], colour[box]
    luminance = colour.mean(axis=-1)
    face_core = face & ndimage.binary_erosion(face, iterations=3)
    hair_core = hair & ndimage.binary_erosion(hair, iterations=2)
    if not face_core.any() or not hair_core.any():
        return
    lf, lh = float(np.median(luminance[face_core])), float(np.median(luminance[hair_core]))
    if abs(lf - lh) < 0.05:  # hair and face alike: no edge to find
        return
    head = hair | face
    cover = np.where(head, np.clip((lf - luminance) / (lf - lh), 0.0, 1.0), 0.0)
    h, w = head.shape
    x0, y0, x1, y1 = layout.crop
    sx, sy = (x1 - x0) / layout.island_width, (y1 - y0) / layout.height
    row0, col0 = origin[0] + box[0].start, origin[1] + box[1].start  # the box's top-left photo pixel
    texel_rows = np.arange(layout.height)
    y = (texel_rows + 0.5) * sy + y0 - row0  # texel centres' rows in the box, pixel-edge coordinates
    inside = (y >= 0) & (y < h)
    texel_rows, y = texel_rows[inside], y[inside]
    if not len(y):
        return
    below = np.clip(np.floor(y - 0.5).astype(np.int64), 0, max(h - 2, 0))
    t = np.clip(y - 0.5 - below, 0.0, 1.0)
    above = np.minimum(below + 1, h - 1)
    span = int(np.ceil((HAIR_LOCK_PX + 2) / sx)) + 2
    x_start = int(layout.island_x0(tx.FRONT))
    for flip in (False, True):
        view = (lambda a: a[:, ::-1]) if flip else (lambda a: a)
        last, edge, start = _lock_edges(view(head), view(face), view(cover), view(person))
        near_last = np.abs(np.arange(w)[None, :] - last[:, None]) <= HAIR_LOCK_PX
        hair_colour = _lock_row_colours(view(hair & (cover >= 1 - LOCK_PURE)) & near_last, view(colour))
        face_colour = _lock_row_colours(view(face & (cover <= LOCK_PURE)) & near_last, view(colour))
        if hair_colour is None or face_colour is None:
            continue
        e_below, e_above = edge[below], edge[above]
        e = np.where(np.isnan(e_below), e_above, np.where(np.isnan(e_above), e_below, (1 - t) * e_below + t * e_above))
        use = np.isfinite(e)
        if not use.any():
            continue
        e, tu, b, a = e[use], t[use, None], below[use], above[use]
        outline = last[np.clip(np.floor(y[use]).astype(np.int64), 0, h - 1)] + 1.0
        hair_c = (1 - tu) * hair_colour[b] + tu * hair_colour[a]
        face_c = (1 - tu) * face_colour[b] + tu * face_colour[a]
        zone_start = np.fmin(start[b], start[a])
        # the texel columns from the zone's start toward the outline (leftwards when flipped)
        start_photo = (w - zone_start if flip else zone_start) + col0
        first = np.floor((start_photo - x0) / sx - 0.5).astype(np.int64) - (span - 1 if flip else 0)
        texel_cols = first[:, None] + np.arange(span)[None, :]
        x = (texel_cols + 0.5) * sx + x0 - col0
        x = w - x if flip else x
        ramp = np.clip((x - e[:, None]) / sx + 0.5, 0.0, 1.0)
        zone = (x >= zone_start[:, None]) & (x < outline[:, None])
        zone &= (texel_cols >= 0) & (texel_cols < layout.island_width)
        if not zone.any():
            continue
        at = np.nonzero(zone)
        ramp_at = ramp[at][:, None]
        values = face_c[at[0]] * (1.0 - ramp_at) + hair_c[at[0]] * ramp_at
        albedo[texel_rows[use][at[0]], texel_cols[at] + x_start] = values.astype(albedo.dtype)


def _smooth_hem_edges(albedo: np.ndarray, colour: np.ndarray, seg: np.ndarray, person: np.ndarray,
                      layout: tx.AtlasLayout, origin) -> None:
    """The front island's texels across each of HEM_EDGES' borders, in place: a ramp from one
    side's colour to the other's along the seg's border smoothed over HEM_SMOOTH_PX (its staircase
    of whole pixels, each 2-3 texels, were teeth at the sock tops and hems in the feet views). A
    side's colour is its pixels' mean near the texel (Gaussian, the pixels touching the other side
    left out: a predicted albedo mixes the two there). `colour`, `seg` and `person` are the photo
    window (top-left pixel `origin`)."""
    x0, y0, x1, y1 = layout.crop
    sx, sy = (x1 - x0) / layout.island_width, (y1 - y0) / layout.height
    x_start = int(layout.island_x0(tx.FRONT))
    margin = int(np.ceil(3 * HEM_SMOOTH_PX)) + HEM_BAND_PX + 2
    for one_names, other_names in HEM_EDGES:
        one = np.isin(seg, class_ids(one_names)) & person
        other = np.isin(seg, class_ids(other_names)) & person
        zone = ndimage.binary_dilation(one, iterations=HEM_BAND_PX) & ndimage.binary_dilation(other, iterations=HEM_BAND_PX)
        if not zone.any():
            continue
        r, c = _box(zone)
        box = (slice(max(r.start - margin, 0), r.stop + margin), slice(max(c.start - margin, 0), c.stop + margin))
        one_b, other_b = one[box].astype(np.float64), other[box].astype(np.float64)
        near_one, near_other = (ndimage.gaussian_filter(a, HEM_SMOOTH_PX) for a in (one_b, other_b))
        side = near_one / np.maximum(near_one + near_other, 1e-9)  # 1 on one's side, 0 on the other's
        side_colours = [_near_colour(colour[box], core, HEM_SMOOTH_PX)
                        for core in (one[box] & ~ndimage.binary_dilation(other[box]),
                                     other[box] & ~ndimage.binary_dilation(one[box]))]
        # the texels whose centres lie in the box (photo pixel-centre coordinates within it)
        row0, col0 = origin[0] + box[0].start, origin[1] + box[1].start
        h, w = side.shape
        t_rows = np.arange(max(int((row0 - y0) / sy) - 1, 0), min(int(np.ceil((row0 + h - y0) / sy)) + 1, layout.height))
        t_cols = np.arange(max(int((col0 - x0) / sx) - 1, 0), min(int(np.ceil((col0 + w - x0) / sx)) + 1, layout.island_width))
        y = (t_rows + 0.5) * sy + y0 - row0 - 0.5
        x = (t_cols + 0.5) * sx + x0 - col0 - 0.5
        yy, xx = np.meshgrid(y, x, indexing="ij")
        inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
        nearest = (np.clip(np.rint(yy), 0, h - 1).astype(np.int64), np.clip(np.rint(xx), 0, w - 1).astype(np.int64))
        # not along the outline: the hidden island's texels meet the front's there, and they keep
        # the photo's border (redrawn there, the seam's colour step rose)
        inner = ndimage.binary_erosion(person[box], iterations=HEM_BAND_PX, border_value=1)
        redraw = inside & zone[box][nearest] & (one[box] | other[box])[nearest] & inner[nearest]
        redraw &= side_colours[0][1][nearest] & side_colours[1][1][nearest]
        if not redraw.any():
            continue
        at = np.nonzero(redraw)
        coords = np.stack([yy[at], xx[at]])
        s = ndimage.map_coordinates(side, coords, order=1, mode="nearest")
        # side = Phi(d / sigma) across a straight border: its slope there 1 / (sigma sqrt(2 pi)) per px
        ramp = np.clip((s - 0.5) * HEM_SMOOTH_PX * np.sqrt(2 * np.pi) / HEM_RAMP_PX + 0.5, 0.0, 1.0)[:, None]
        one_c, other_c = (np.stack([ndimage.map_coordinates(c_[..., k], coords, order=1, mode="nearest")
                                    for k in range(c_.shape[-1])], axis=1) for c_, _ in side_colours)
        albedo[t_rows[at[0]], t_cols[at[1]] + x_start] = (ramp * one_c + (1.0 - ramp) * other_c).astype(albedo.dtype)


def _near_colour(colour: np.ndarray, core: np.ndarray, sigma: float):
    """(the Gaussian mean of `colour` over the `core` pixels around each pixel, where one lies
    near: bool)."""
    weight = ndimage.gaussian_filter(core.astype(np.float64), sigma)
    total = np.stack([ndimage.gaussian_filter(np.where(core, colour[..., k], 0.0), sigma)
                      for k in range(colour.shape[-1])], axis=-1)
    return total / np.maximum(weight, 1e-12)[..., None], weight > 1e-3


def _both_islands(front: np.ndarray, hidden: np.ndarray, layout: tx.AtlasLayout, origin) -> np.ndarray:
    """resample_crop(front, FRONT) + resample_crop(hidden, HIDDEN), the same bytes: the hidden
    island written into the front's texture-sized map, then each island's texels + 0.0 (x + 0.0
    == 0.0 + x; -0.0 turns 0.0 as in the sum), without a second map and the whole texture's sum."""
    albedo = tx.resample_crop(front, layout, tx.FRONT, origin)
    tx.resample_crop(hidden, layout, tx.HIDDEN, origin, out=albedo)
    for island in (tx.FRONT, tx.HIDDEN):
        x_start = int(layout.island_x0(island))
        texels = albedo[:, x_start : x_start + layout.island_width]
        texels += 0.0
    return albedo


def _stray_hair(seg: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The stray slivers of hair along the face (bool, as `seg`): hair pixels beside the face in
    runs of under THIN_HAIR_PX along their row, in pieces of fewer than MIN_HAIR_PIXELS apart
    from the rest of the hair. A rim of hair peeking past the neck's outline in every other row
    was stretched over the edge-on side of the neck into comb teeth, and made the back of the
    neck hair down to its lowest row (_hair_row_weight)."""
    hair = np.isin(seg, class_ids(["Hair"])) & valid
    if not hair.any():
        return hair
    face = np.isin(seg, class_ids(FRONT_ONLY_CLASSES)) & valid
    thin = hair & ~ndimage.binary_opening(hair, structure=np.ones((1, THIN_HAIR_PX), bool))
    thin &= ndimage.binary_dilation(face, structure=np.ones((1, 2 * THIN_HAIR_PX - 1), bool))
    pieces, _ = ndimage.label(hair, structure=np.ones((3, 3), bool))
    return thin & (np.bincount(pieces.ravel())[pieces] < MIN_HAIR_PIXELS)


def _sliver_rim(stray: np.ndarray, face: np.ndarray, band_px: float, inside: np.ndarray):
    """The face pixels on the outline along the stray slivers (bool, as `stray`): within `band_px`
    rows and two columns of a sliver pixel, and `inside` (_outline_band's distance) under
    SLIVER_RIM_PX. A lock thinning to under a pixel along the cheek's outline leaves only every
    few rows a pixel labelled hair (the sliver); the outline pixels between them are the face's,
    darkened by the part of the lock inside them (0.19-0.69 against 0.8 linear on person_101).
    Read by the edge-on surface there (one pixel spans 1-2 cm of it), each dark one was a tick a
    row high up the cheek."""
    reach = int(round(band_px))
    near = ndimage.binary_dilation(stray, structure=np.ones((2 * reach + 1, 5), bool))
    return near & face & (inside < SLIVER_RIM_PX)


def _without_stray_hair(bundle, window_colour, colour_valid, layout):
    """The window's colours with the stray slivers of hair (_stray_hair) refilled from the pixels
    around them, and its classes with each sliver pixel made its nearest face pixel's. The face's
    outline pixels along the slivers (_sliver_rim) first take the colour of the nearest face
    pixel farther inside (SLIVER_RIM_PX or more from the outside): the sliver's sub-pixel rest
    is not hair either."""
    rows, cols = tx.crop_window(layout, colour_valid.shape)
    seg = bundle.seg[rows, cols]
    valid = colour_valid[rows, cols]
    stray = _stray_hair(seg, valid)
    if not stray.any():
        return window_colour, seg
    out = window_colour.copy()
    face = np.isin(seg, class_ids(FRONT_ONLY_CLASSES)) & valid
    person = bundle.mask[rows, cols]
    band_px = _band_px(np.flatnonzero(person.any(axis=1)))
    # the rim and its nearest inner face pixels lie within the slivers' box grown by a band's rows
    # (and 4 px more: the box's edge, counted as outside by the padding, is never the rim's)
    r, c = np.nonzero(stray)
    m = int(round(band_px)) + 4
    box = (slice(max(r.min() - m, 0), r.max() + m + 1), slice(max(c.min() - m, 0), c.max() + m + 1))
    inside = ndimage.distance_transform_edt(np.pad(person[box], 1))[1:-1, 1:-1]
    rim = np.zeros_like(stray)
    rim[box] = _sliver_rim(stray[box], face[box], band_px, inside)
    inner = face[box] & (inside >= SLIVER_RIM_PX)
    if rim.any() and inner.any():
        _, (in_r, in_c) = ndimage.distance_transform_edt(~inner, return_indices=True)
        box_colour, box_rim = window_colour[box], rim[box]
        out[box][box_rim] = box_colour[in_r[box_rim], in_c[box_rim]]
        rim &= (out != window_colour).any(axis=-1)
    else:
        rim[:] = False
    # the sliver and, beside the rim's changed pixels, the fill outside the person (bilinear taps
    # there read the lock's darkened pixels) are filled again from the pixels around them
    again = stray | (~valid & tx.dilate(rim, 2))
    out[again] = tx.push_pull_fill(out, valid & ~stray)[again]
    _, (near_r, near_c) = ndimage.distance_transform_edt(~face, return_indices=True)
    seg = seg.copy()
    seg[stray] = seg[near_r[stray], near_c[stray]]
    return out, seg


def _albedo_padded(islands_job, keep: np.ndarray, crops=None, layout: tx.AtlasLayout | None = None):
    """The base colour padded past the texels `keep` marks, with the crops' albedo blended in
    (crops: engine.avatar.detail.CropTexture, for a predicted albedo): linear float, 8-bit sRGB
    (encoded once, after the crops), its source and the number of texels the crops changed."""
    albedo, source = islands_job.result()
    albedo = tx.push_pull_fill(albedo, keep, smooth_finest=False)  # padding: the islands' colours run into the gaps
    np.clip(albedo, 0.0, 1.0, out=albedo)
    crop_texels = crops.fuse_colour(albedo, layout) if crops is not None and source == "albedo" else 0
    return albedo, tx.linear_to_srgb8(albedo), source, crop_texels


def _normal_detail_weight(mask, rows: slice, cols: slice, normal=None, pointmap=None) -> np.ndarray:
    """How much of the predicted normal detail the front island keeps per pixel of the window
    (0-1, float32): fading to 0 over the last SEAM_FADE_PX pixels before the outline and, given
    the predicted normals and the pointmap, where the surface turns edge-on (SQUARE_COS, the
    normal against the pixel's ray: the pointmap's direction)."""
    inside = ndimage.distance_transform_edt(np.pad(mask[rows, cols], 1))[1:-1, 1:-1]
    weight = np.clip((inside - 0.5) / SEAM_FADE_PX, 0.0, 1.0).astype(np.float32)
    if normal is not None and pointmap is not None:
        ray = pointmap[rows, cols].astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = -np.einsum("ijk,ijk->ij", normal[rows, cols].astype(np.float32), ray) / np.linalg.norm(ray, axis=-1)
            square = np.clip((cos - SQUARE_COS[0]) / (SQUARE_COS[1] - SQUARE_COS[0]), 0.0, 1.0)
        weight *= np.where(np.isfinite(square), square, 1.0).astype(np.float32)
    return weight


def _fade_to_flat_at_the_outline(tangent_normals: np.ndarray, mask: np.ndarray, layout: tx.AtlasLayout, normal=None,
                                 pointmap=None) -> None:
    """On a closed mesh the hidden island's normal map is flat: the front's predicted detail
    fades to flat toward the outline (_normal_detail_weight), so the shading does not step
    where the islands meet (in place, front island only)."""
    _fade_band(tangent_normals, _outline_fade(mask, layout, normal, pointmap))


def _outline_fade(mask: np.ndarray, layout: tx.AtlasLayout, normal=None, pointmap=None):
    """_fade_to_flat_at_the_outline's band, found before any texel is baked: the front island's
    texels whose weight is under 1 (rows, columns) and their weights (n x 1)."""
    rows, cols = tx.crop_window(layout, mask.shape)
    weight = _normal_detail_weight(mask, rows, cols, normal, pointmap)[..., None]
    weight = tx.resample_crop(weight, layout, tx.FRONT, (rows.start, cols.start))[..., 0]
    # only the band along the outline changes: the blend there, the rest of the texture untouched
    band_rows, band_cols = np.nonzero(weight[:, : layout.island_width] < 1.0)
    return band_rows, band_cols, weight[band_rows, band_cols][:, None]


def _lengths(vectors: np.ndarray) -> np.ndarray:
    """np.maximum(np.linalg.norm(vectors, axis=-1), 1e-12) of an H x W x 3 float32 map, the squares
    summed channel by channel in numpy's order for the 3-long axis ((x0 + x1) + x2): the same
    bytes without the H x W x 3 temporaries and the 3-long inner loops."""
    x, y, z = (vectors[..., channel] for channel in range(3))
    sums = x * x
    sums += y * y
    sums += z * z
    return np.maximum(np.sqrt(sums, out=sums), 1e-12)


def _fade_band(tangent_normals: np.ndarray, fade) -> None:
    """The band (_outline_fade) blended toward flat, in place."""
    band_rows, band_cols, w = fade
    if not tangent_normals.flags.c_contiguous:  # (the build's maps are; a view is faded through a copy)
        contiguous = np.ascontiguousarray(tangent_normals)
        _fade_band(contiguous, fade)
        tangent_normals[...] = contiguous
        return
    # the band's texels gathered and written back as whole 3-float records, the blend channel by
    # channel (the same products and sums as w * band with w broadcast along the channels)
    texels = tangent_normals.reshape(-1, 3)
    index = band_rows * tangent_normals.shape[1] + band_cols
    band = tx.gather_rows(texels, index)
    # texels with no baked normal are zero and stay zero (the padding fills them)
    baked = (band[:, 0] != 0) | (band[:, 1] != 0) | (band[:, 2] != 0)
    if baked.all():  # (boolean indexing of the N x 3 band moved it value by value)
        w = w[:, 0]
    else:
        kept = np.flatnonzero(baked)
        index, band, w = index[kept], tx.gather_rows(band, kept), w[kept, 0]
    faded = np.empty_like(band)
    for channel in range(3):
        np.multiply(w, band[:, channel], out=faded[:, channel])
    faded[:, 2] += 1.0 - w  # toward flat (0, 0, 1)
    record = np.dtype((np.void, 3 * texels.itemsize))
    texels.view(record).reshape(-1)[index] = faded.view(record).reshape(-1)


def make_appearance(
    bundle,
    uv_plan: UvPlan,
    *,
    vertices_camera: np.ndarray,
    normals_avatar: np.ndarray,
    faces: np.ndarray,
    face_island: np.ndarray,
    progress: Callable[[str, float, str], None] | None = None,
    crops=None,
) -> Appearance:
    """Bake the textures of the mesh `uv_plan` (plan_uvs) was made for; with `crops`
    (engine.avatar.detail.crop_texture), the hand and face crops' albedo and normals fused in
    (as engine.avatar.detail.fuse_crop_texture does afterwards)."""

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress("textures", fraction, message)

    layout, texel_xy, uv, tangents = uv_plan.layout, uv_plan.texel_xy, uv_plan.uv, uv_plan.tangents
    n_islands = layout.n_islands
    report(0.1, f"{layout.width} x {layout.height} texture, {n_islands} UV island(s)")

    # The photo maps need no raster: the predicted normals and the base colour are resampled
    # onto the texture in other threads (started by plan_uvs when it had a pool; the colour
    # is padded in a second thread once the raster is known) while this one rasterises and
    # bakes the normal map (numpy, scipy's sparse
    # products and ndimage release the GIL in their loops). Progress is reported from this
    # thread only, so a cancel raised by the callback stops here; leaving the pool waits for
    # the colour thread, which writes nothing. The outline's fade weights and the crops' normals
    # in the texels' tangent frames (they need no baked texel) are found in the colour thread
    # too, first, and applied once the map is baked (the crops' once it is encoded); the crops'
    # albedo is blended into the padded colour there.
    with _colour_thread() as pool:
        photo_maps = uv_plan.photo_maps or start_photo_maps(pool, bundle, layout)
        # the closed mesh's fade toward the outline needs no baked texel either
        fade = None
        if bundle.normal is not None and n_islands > 1:
            fade = pool.submit(_outline_fade, bundle.mask, layout, bundle.normal, bundle.pointmap)
        crop_normals = None
        if crops is not None and crops.has_normals and bundle.normal is not None:
            crop_normals = pool.submit(crops.normal_targets, layout, uv, tangents)
        raster = tx.rasterize(texel_xy, faces, vertices_camera[:, 2].astype(np.float64), layout.width, layout.height)
        covered = raster.covered
        keep = tx.dilate(covered, EDGE_TEXELS)
        report(0.35, f"rasterised {len(faces)} triangles over {int(covered.sum())} texels")
        albedo_job = pool.submit(_albedo_padded, photo_maps.colour, keep, crops, layout)

        normal_rgb8 = None
        baked_fraction = 0.0
        if bundle.normal is not None:
            target = photo_maps.normal.result()
            tangent_normals, baked = tx.bake_tangent_normals(
                raster, faces, normals_avatar, tangents, target, bake_faces=face_island == tx.FRONT
            )
            if fade is not None:
                _fade_band(tangent_normals, fade.result())
            tangent_normals = tx.push_pull_fill(tangent_normals, keep, smooth_finest=False)
            tangent_normals /= tx._per_channel(_lengths(tangent_normals), 3)
            normal_rgb8 = tx.encode_normal_map(tangent_normals)
            front_covered = covered & (face_island[np.maximum(raster.face, 0)] == tx.FRONT)
            baked_fraction = float(baked.sum() / max(front_covered.sum(), 1))
            report(0.9, f"normal map baked on {baked_fraction:.1%} of the seen texels")
        crop_normal_texels = 0 if crop_normals is None else crops.fuse_normals(normal_rgb8, crop_normals.result())
        albedo, albedo_srgb8, source, crop_texels = albedo_job.result()
    report(0.95, f"base colour from the {'predicted albedo' if source == 'albedo' else 'photo (no albedo in the bundle)'}")

    stats = {
        "covered_texels": int(covered.sum()),
        "texture_fill": float(covered.mean()),
        "normal_baked_fraction": baked_fraction,
    }
    # the keys in fuse_crop_texture's order
    if crop_normal_texels:
        stats["detail_crop_normal_texels"] = crop_normal_texels
    if crop_texels:
        stats["detail_crop_texels"] = crop_texels
    report(1.0, "textures ready")
    return Appearance(uv, tangents, layout, albedo, albedo_srgb8, normal_rgb8, source, stats)
