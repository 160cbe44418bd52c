"""2-D keypoints + pointmap + segmentation -> 3-D joint centres (camera frame, metres).

A keypoint lies on the projection of its joint centre, so the centre is on the keypoint's camera
ray; the pointmap gives where that ray meets the visible surface, and the centre lies deeper by
about the limb's radius. The radius comes from the limb's width in the segmentation measured
across the limb axis (a cylinder of radius r at depth z has image half-width f r / z). Joints
that are hidden, off the body part they belong to, or missing are filled in from bone lengths
(the mirrored bone when it was seen, else anthropometric ratios of the body height): the centre
is put where the keypoint ray meets a sphere of that length around the parent joint.
Everything is vectorised over joints and window pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.errors import BundleError
from engine.rig.joints import JointSpec, N_CLASSES, joint_specs, keypoint_index, mirror_name

# status codes per joint (kept as small ints so per-frame arrays stay cheap)
LIFTED, FILLED_RAY, FILLED_GUESS = 0, 1, 2
STATUS_NAMES = {LIFTED: "lifted", FILLED_RAY: "filled_from_ray", FILLED_GUESS: "filled_from_skeleton"}

MIN_SCORE = 0.5          # keypoints below this are treated as hidden (Sapiens scores hidden ones low)
MAX_WALK_PX = 160        # longest half-width searched across a limb, pixels
# limb joints checked against their parent, parents' level first (shoulders and hips come from the torso)
LIMB_LEVELS = (("elbow", "knee"), ("wrist", "ankle"))
BONE_TOLERANCE = 0.15    # relative bone-length error beyond which a lifted depth is not believed
TYPICAL_TOLERANCE = 0.2  # relative difference from the typical bone length still believed
SURFACE_MARGIN = 0.01    # metres a corrected centre may lie in front of the surface (pointmap noise)
CORRECTED_CONFIDENCE = 0.6
PARENT_SEARCH_STEP_M, PARENT_SEARCH_STEPS = 0.005, 100   # how far back a covered elbow/knee is sought
# front-to-back thickness of each segmentation class as a fraction of height (a hidden joint lies
# behind all of it): trunk and head ~0.12, a thigh 0.07, trousers (thigh or shin) 0.06, a shin
# 0.05, an arm 0.04, hands and feet 0.025; background nothing
OCCLUDER_THICKNESS = np.zeros(N_CLASSES + 1)
for _labels, _share in (((1, 3, 4, 22, 23, 24, 25, 26, 27, 28), 0.12), ((12, 21), 0.07), ((13,), 0.06),
                        ((8, 17), 0.05), ((7, 11, 16, 20), 0.04), ((5, 6, 9, 10, 14, 15, 18, 19), 0.025)):
    OCCLUDER_THICKNESS[list(_labels)] = _share
TYPICAL_RADIUS = {       # limb radius at the joint as a fraction of height, for missing widths
    "shoulder": 0.028, "elbow": 0.022, "wrist": 0.017, "hip": 0.045, "knee": 0.03, "ankle": 0.02,
    "big_toe": 0.012, "small_toe": 0.01, "heel": 0.02, "neck": 0.033, "finger": 0.005,
}


@dataclass
class Joints3D:
    names: list[str]
    positions: np.ndarray        # J x 3 float64, camera frame, metres
    confidence: np.ndarray       # J float32 in [0, 1]
    status: np.ndarray           # J int8: LIFTED / FILLED_RAY / FILLED_GUESS
    height: float                # body height the fill-in used, metres
    radius: np.ndarray = field(default_factory=lambda: np.zeros(0))  # J limb radius used, metres

    def index(self, name: str) -> int:
        return self.names.index(name)

    def get(self, name: str) -> np.ndarray:
        return self.positions[self.names.index(name)]

    def as_dict(self) -> dict[str, np.ndarray]:
        return {n: self.positions[i] for i, n in enumerate(self.names)}


def _radius_kind(name: str) -> str:
    base = name[:-2] if name[-2:] in ("_L", "_R") else name
    if base[:-1] in ("thumb", "index", "middle", "ring", "pinky"):
        return "finger"
    return base


def _label_table(specs: tuple[JointSpec, ...]) -> np.ndarray:
    table = np.zeros((len(specs), N_CLASSES + 1), bool)  # last column: "no label" (NaN / off image)
    for i, s in enumerate(specs):
        table[i, list(s.labels)] = True
    return table


def _sample(img: np.ndarray, xy: np.ndarray, fill) -> np.ndarray:
    """Nearest-pixel lookup of img at continuous image coordinates xy (..., 2), fill off-image."""
    h, w = img.shape[:2]
    col = np.floor(xy[..., 0]).astype(np.int64)
    row = np.floor(xy[..., 1]).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    out = img[np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
    out = np.where(inside.reshape(inside.shape + (1,) * (out.ndim - inside.ndim)), out, fill)
    return out


def _window_depth(z: np.ndarray, seg: np.ndarray, allowed: np.ndarray, kp: np.ndarray,
                  radius_px: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median depth of the joint's own body-part pixels in a disc around each keypoint.

    Returns (median z or NaN, share of window pixels that were usable, majority label)."""
    rmax = int(np.ceil(radius_px.max()))
    d = np.arange(-rmax, rmax + 1, dtype=np.float64)
    dx, dy = np.meshgrid(d, d)
    offs = np.stack([dx.ravel(), dy.ravel()], 1)                       # P x 2
    in_disc = (offs ** 2).sum(1)[None, :] <= (radius_px[:, None] ** 2 + 0.5)
    xy = kp[:, None, :] + offs[None]                                     # J x P x 2
    zs = _sample(z, xy, np.nan)
    labels = _sample(seg, xy, N_CLASSES).astype(np.int64)
    own = np.take_along_axis(allowed, labels, axis=1) & in_disc & np.isfinite(zs)
    zs_own = np.where(own, zs, np.nan)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            zmed = np.nanmedian(zs_own, axis=1)
    share = own.sum(1) / np.maximum(in_disc.sum(1), 1)
    # majority label among the person's pixels in the disc (background excluded)
    onehot = np.zeros((len(kp), N_CLASSES + 1), np.int64)
    person = in_disc & (labels > 0) & (labels < N_CLASSES)
    np.add.at(onehot, (np.repeat(np.arange(len(kp)), labels.shape[1])[person.ravel()],
                       labels.ravel()[person.ravel()]), 1)
    majority = np.where(onehot.sum(1) > 0, onehot.argmax(1), 0)
    return zmed, share, majority


def _half_widths(z: np.ndarray, seg: np.ndarray, allowed: np.ndarray, centre: np.ndarray,
                 axis_dir: np.ndarray, z0: np.ndarray, f: float,
                 mirror_kp: np.ndarray | None = None, own_kp: np.ndarray | None = None) -> np.ndarray:
    """Half-width in pixels of each limb across its axis, walking from centre both ways.

    A walk stops off the joint's labels, off the person, or where the depth steps back further
    than the limb's own surface can (behind a limb lies another body part, not the limb).
    Mirror limbs under one label (trousers, a dress) touch without a depth step, so a walk also
    stops at the bisector between the joint's keypoint and its mirror's (mirror_kp NaN: none)."""
    normal = np.stack([-axis_dir[:, 1], axis_dir[:, 0]], 1)
    steps = np.arange(1, MAX_WALK_PX + 1, dtype=np.float64)
    halves = []
    for sign in (1.0, -1.0):
        xy = centre[:, None, :] + sign * steps[None, :, None] * normal[:, None, :]   # J x S x 2
        zs = _sample(z, xy, np.nan)
        labels = _sample(seg, xy, N_CLASSES).astype(np.int64)
        ok = np.take_along_axis(allowed, labels, axis=1) & np.isfinite(zs)
        # the limb's surface recedes at most by its radius (~ s z / f at s pixels out)
        limit = 1.5 * steps[None, :] * z0[:, None] / f + 0.02
        ok &= np.abs(zs - z0[:, None]) < limit
        if mirror_kp is not None:
            towards = mirror_kp - own_kp                                           # J x 2
            mid = 0.5 * (mirror_kp + own_kp)
            beyond = np.einsum("jsk,jk->js", xy - mid[:, None, :], towards) > 0
            ok &= ~np.where(np.isfinite(towards).all(1)[:, None], beyond, False)
        first_bad = np.where(ok.all(1), MAX_WALK_PX, np.argmin(ok, axis=1))
        halves.append(first_bad.astype(np.float64) + 0.5)
    return 0.5 * (halves[0] + halves[1])


def lift_joints(keypoints: np.ndarray, pointmap: np.ndarray, seg: np.ndarray | None,
                K: np.ndarray, *, mask: np.ndarray | None = None,
                min_score: float = MIN_SCORE) -> Joints3D:
    """Joint centres in the camera frame from one frame's predictions.

    keypoints: 308 x 3 (x, y, score) in photo pixels (pixel centres at +0.5); pointmap: H x W x 3
    metres, NaN off the person; seg: H x W class ids (None: every person pixel counts for every
    joint); K: 3 x 3 intrinsics."""
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 2 or keypoints.shape[1] < 3:
        raise BundleError(f"keypoints must be N x 3 (x, y, score), got shape {keypoints.shape}")
    if pointmap is None or pointmap.ndim != 3 or pointmap.shape[2] != 3:
        raise BundleError("lifting joints needs a pointmap (H x W x 3); the bundle has none")
    h, w = pointmap.shape[:2]
    z = np.asarray(pointmap[..., 2], np.float64)
    if mask is not None:
        z = np.where(mask, z, np.nan)
    if seg is None:
        seg = np.where(np.isfinite(z), 22, 0).astype(np.uint8)
    if seg.shape != (h, w):
        raise BundleError(f"segmentation is {seg.shape}, pointmap is {(h, w)}: sizes differ")
    K = np.asarray(K, np.float64)
    f = 0.5 * (K[0, 0] + K[1, 1])
    Kinv = np.linalg.inv(K)

    specs = joint_specs()
    names = [s.name for s in specs]
    idx = {n: i for i, n in enumerate(names)}
    kpi = keypoint_index()
    J = len(specs)
    kp = np.array([keypoints[kpi[s.keypoint], :2] for s in specs])
    score = np.array([keypoints[kpi[s.keypoint], 2] for s in specs])
    has_2d = np.isfinite(kp).all(1) & (score > 0) & (kp[:, 0] >= 0) & (kp[:, 0] < w) \
        & (kp[:, 1] >= 0) & (kp[:, 1] < h)
    kp = np.where(has_2d[:, None], kp, 0.0)
    allowed = _label_table(specs)
    rays = (Kinv @ np.c_[kp, np.ones(J)].T).T                    # J x 3, z = 1
    ray_unit = rays / np.linalg.norm(rays, axis=1, keepdims=True)

    # limb axis in the image at each joint, from the keypoints the table names
    a = np.array([idx[s.axis[0]] for s in specs])
    b = np.array([idx[s.axis[1]] for s in specs])
    axis_vec = kp[b] - kp[a]
    axis_ok = has_2d[a] & has_2d[b] & (np.linalg.norm(axis_vec, axis=1) > 1.0)
    axis_dir = np.where(axis_ok[:, None], axis_vec, [0.0, 1.0])
    axis_dir = axis_dir / np.linalg.norm(axis_dir, axis=1, keepdims=True)
    width_at = np.array([s.width_at for s in specs])
    measure_at = np.where(axis_ok[:, None], kp[a] + width_at[:, None] * axis_vec, kp)
    measure_at = np.where((width_at > 0)[:, None], measure_at, kp)

    # pass 1: rough surface depth in a small window, then the limb width, then the final window
    z0, _, _ = _window_depth(z, seg, allowed, kp, np.full(J, 2.0))
    zm0, _, _ = _window_depth(z, seg, allowed, measure_at, np.full(J, 2.0))
    zm0 = np.where(np.isfinite(zm0), zm0, z0)
    mirror = np.array([idx.get(mirror_name(n), -1) for n in names])
    paired = (mirror >= 0) & (mirror != np.arange(J))
    paired[paired] &= has_2d[mirror[paired]] & has_2d[paired]
    mirror_kp = np.where(paired[:, None], kp[np.maximum(mirror, 0)], np.nan)
    half_px = _half_widths(z, seg, allowed, measure_at, axis_dir, np.nan_to_num(zm0, nan=1.0), f,
                           mirror_kp, kp)
    win = np.clip(0.35 * _half_widths(z, seg, allowed, kp, axis_dir, np.nan_to_num(z0, nan=1.0), f,
                                      mirror_kp, kp), 1.0, 8.0)
    zs, share, majority = _window_depth(z, seg, allowed, kp, win)
    visible = has_2d & (score >= min_score) & np.isfinite(zs) & (share >= 0.3) \
        & allowed[np.arange(J), majority]

    surface = rays * zs[:, None]
    zr = np.where(np.isfinite(zm0), zm0, zs)
    radius = half_px * zr / np.maximum(f - half_px, 1.0)         # cylinder radius, metres
    inward = np.array([s.inward if s.depth == "limb" else 0.0 for s in specs])
    positions = surface + ray_unit * (inward * radius)[:, None]
    positions[~visible] = np.nan

    # body height from the bones seen at both ends (each bone / its typical share of height)
    parent = np.array([idx[s.parent] if s.parent else -1 for s in specs])
    typical = np.array([s.typical_length for s in specs])
    seen_bone = visible & (parent >= 0) & (typical >= 0.09)
    seen_bone[seen_bone] &= visible[parent[seen_bone]]
    if seen_bone.any():
        lengths = np.linalg.norm(positions[seen_bone] - positions[parent[seen_bone]], axis=1)
        height = float(np.median(lengths / typical[seen_bone]))
    else:
        height = 1.7
    height = float(np.clip(height, 0.5, 2.5))

    # widths that the walk could not measure (or measured absurdly) fall back to typical ratios
    typical_r = np.array([TYPICAL_RADIUS.get(_radius_kind(n), 0.0) for n in names]) * height
    bad_r = ~np.isfinite(radius) | (radius < 0.4 * typical_r) | (radius > 2.5 * typical_r)
    fix = visible & bad_r & (inward > 0)
    positions[fix] = surface[fix] + ray_unit[fix] * (inward[fix] * typical_r[fix])[:, None]
    radius = np.where(bad_r, typical_r, radius)

    status = np.full(J, LIFTED, np.int8)
    confidence = np.where(visible, np.clip(score, 0, 1) * np.clip(share / 0.6, 0, 1), 0.0)
    _correct_limb_depths(positions, status, confidence, visible, surface, ray_unit, parent, typical,
                         height, idx)
    # what each keypoint's pixel shows first, whatever body part it is (a hidden joint lies behind it)
    first = _sample(pointmap, kp, np.nan).astype(np.float64)
    if mask is not None:
        first[~_sample(np.asarray(mask, bool), kp, False)] = np.nan
    first_t = np.where(has_2d, np.linalg.norm(first, axis=1), np.nan)
    first_label = np.where(has_2d, _sample(seg, kp, 0).astype(np.int64), 0)
    _fill_hidden(positions, status, confidence, visible, has_2d, ray_unit, surface, parent, typical,
                 height, names, idx, score, first_t, first_label, np.where(visible, radius, typical_r),
                 allowed, min_score)
    return Joints3D(names, positions, confidence.astype(np.float32), status, height, radius)


def _correct_limb_depths(positions, status, confidence, visible, surface, ray_unit, parent, typical,
                         height, idx) -> None:
    """Put limb joints whose lifted depth breaks their bone length back on the bone-length sphere.

    A limb pointing toward the camera hides its own joint: the elbow's pixel shows the forearm
    (the wrist's the hand, the ankle's the foot), which lies in front of the joint, so the lifted
    centre comes out too close and the bone to the parent too long or too short. Going down each
    limb (elbows and knees from the shoulders and hips, then wrists and ankles), a bone whose
    length is off the expected one by more than BONE_TOLERANCE moves its child along the
    keypoint ray to where the parent's sphere meets it, on the root nearest the lifted depth and
    never in front of the surface seen there (the centre is inside the body). The expected length
    is the mirror bone's when both sides agree or the other side is the plausible one, else the
    typical share of the body height. In place; corrected joints get FILLED_RAY and less confidence."""
    for level in LIMB_LEVELS:
        js = np.array([idx[f"{base}_{side}"] for base in level for side in "LR"])
        ps = parent[js]
        mirror = np.arange(len(js)) ^ 1                   # L, R alternate within a level
        ok = visible[js] & visible[ps]
        length = np.linalg.norm(positions[js] - positions[ps], axis=1)
        length = np.where(ok, length, np.nan)
        typical_len = typical[js] * height
        other = length[mirror]
        # the expected length: both sides when they agree, else the side nearer the typical length,
        # unless that too is far from typical (people differ from the table by ~10%, not 20%)
        agree = np.abs(length - other) <= BONE_TOLERANCE * typical_len
        own_closer = np.abs(np.log(length / typical_len)) <= np.abs(np.log(other / typical_len))
        expected = np.where(agree, 0.5 * (length + other), np.where(own_closer, length, other))
        plausible = np.abs(expected / typical_len - 1.0) <= TYPICAL_TOLERANCE
        expected = np.where(np.isfinite(expected) & plausible, expected, typical_len)
        wrong = ok & (np.abs(length / expected - 1.0) > BONE_TOLERANCE)
        for k in np.flatnonzero(wrong):   # at most four joints: tiny scalar work
            j, p = js[k], ps[k]
            if _move_parent_back(j, p, positions, status, confidence, ray_unit, parent, typical, height,
                                 expected[k]):
                continue
            d, P = ray_unit[j], positions[p]
            t_surface = float(np.linalg.norm(surface[j]))
            t_lift = float(d @ positions[j])
            dp = float(d @ P)
            disc = dp * dp - (float(P @ P) - expected[k] ** 2)
            if disc < 0:             # the bone cannot reach the ray: the ray's point nearest the parent
                t = max(dp, t_surface)
            else:
                roots = np.array([dp - np.sqrt(disc), dp + np.sqrt(disc)])
                roots = roots[roots >= t_surface - SURFACE_MARGIN]
                if len(roots) == 0:
                    continue
                t = float(roots[np.argmin(np.abs(roots - t_lift))])
            positions[j] = d * t
            status[j] = FILLED_RAY
            confidence[j] *= CORRECTED_CONFIDENCE


def _move_parent_back(j, p, positions, status, confidence, ray_unit, parent, typical, height,
                      expected_child) -> bool:
    """A wrist or ankle seen well in front of its elbow or knee, with the bone between them broken:
    the limb points toward the camera and its own surface covered the parent, which was lifted
    onto that surface, too close. If a depth further back along the parent's ray mends the child's
    bone while the parent's own bone stays plausible (within TYPICAL_TOLERANCE of typical: the
    height estimate is rough), move the parent there (in place) and say so."""
    g = parent[p]
    if g < 0:
        return False
    d = ray_unit[p]
    t = float(d @ positions[p]) + PARENT_SEARCH_STEP_M * np.arange(1, PARENT_SEARCH_STEPS + 1)
    candidates = d * t[:, None]                                           # further back only
    own = np.linalg.norm(candidates - positions[g], axis=1) / (typical[p] * height) - 1.0
    child = np.linalg.norm(positions[j] - candidates, axis=1) / expected_child - 1.0
    fits = (np.abs(own) <= TYPICAL_TOLERANCE) & (positions[j, 2] < candidates[:, 2])
    if not fits.any():
        return False
    best = int(np.argmin(np.where(fits, np.abs(child), np.inf)))
    if abs(child[best]) > BONE_TOLERANCE:
        return False
    positions[p] = candidates[best]
    status[p] = FILLED_RAY
    confidence[p] *= CORRECTED_CONFIDENCE
    return True


def _occluder_thickness(labels: np.ndarray, height: float) -> np.ndarray:
    """Front-to-back thickness (metres) of the body part with each label: what a hidden joint
    must lie behind when its pixel shows that part."""
    return OCCLUDER_THICKNESS[np.clip(labels, 0, N_CLASSES)] * height


def _fill_hidden(positions, status, confidence, visible, has_2d, ray_unit, surface, parent, typical,
                 height, names, idx, score, first_t, first_label, radius, allowed, min_score) -> None:
    """Fill every joint that was not lifted, parents before children (in place).

    A joint whose keypoint scores as hidden lies behind the surface its pixel shows, inside its own
    limb (its radius deeper); when that surface is another body part, behind all of that part
    (its thickness from its label) too.
    Of the two points where the bone-length sphere around the parent meets the keypoint ray, the
    one that satisfies this is taken; when neither does, the deeper one (the bone keeps its
    length). Both hips hidden: each hip on its ray at the depth the shoulders and knees imply."""
    known = visible.copy()
    J = len(names)
    hidden = has_2d & ~visible & (score < min_score)
    # a limb joint seen through its own limb counts as seen, so a hidden one's pixel shows another
    # part; shoulders and hips sit inside the trunk, which may hide them itself (a turned pelvis)
    trunk = np.array([n.startswith(("hip_", "shoulder_")) for n in names])
    own_part = trunk & allowed[np.arange(J), first_label]
    occluder = np.where(own_part, 0.0, _occluder_thickness(first_label, height))
    t_min = np.where(hidden & np.isfinite(first_t), first_t + occluder + radius, -np.inf)
    _fill_hip_pair(positions, status, confidence, known, has_2d, ray_unit, t_min, height, idx, score)
    for _ in range(J):
        todo = np.flatnonzero(~known & ((parent < 0) | known[np.maximum(parent, 0)]))
        if len(todo) == 0:
            break
        for j in todo:   # a handful of joints per frame: the per-joint work is tiny and branchy
            p = parent[j]
            if p < 0:    # the root (neck): midway between the shoulders when they are known
                sh = [idx["shoulder_L"], idx["shoulder_R"]]
                if known[sh].all():
                    positions[j] = positions[sh].mean(0)
                elif has_2d[j] and np.isfinite(surface[j]).all():
                    positions[j] = surface[j] + ray_unit[j] * TYPICAL_RADIUS["neck"] * height
                else:
                    positions[j] = np.array([0.0, 0.0, 3.0])
                status[j], confidence[j], known[j] = FILLED_GUESS, 0.05, True
                continue
            length = _bone_length(j, p, positions, visible, typical, height, names, idx)
            P = positions[p]
            if has_2d[j]:
                d = ray_unit[j]
                dp = float(d @ P)
                disc = dp * dp - (float(P @ P) - length * length)
                if disc >= 0:
                    roots = np.array([dp - np.sqrt(disc), dp + np.sqrt(disc)])
                    surf_t = float(np.linalg.norm(surface[j])) if np.isfinite(surface[j]).all() else np.nan
                    if hidden[j] and np.isfinite(t_min[j]):
                        behind = roots >= t_min[j]
                        # behind the occluder: the root nearest it; neither: the deeper one
                        t = roots[int(np.argmax(behind))] if behind.any() else t_min[j]
                    elif np.isfinite(surf_t) and roots[0] < surf_t - 0.01:
                        t = roots[1]          # hidden behind the surface seen along the ray
                    else:
                        t = roots[0] if abs(roots[0] - dp) <= abs(roots[1] - dp) else roots[1]
                else:
                    t = dp                    # ray passes beyond reach: nearest point on the ray
                positions[j] = d * t
                if disc < 0:
                    positions[j] = P + (positions[j] - P) * (length / max(np.linalg.norm(positions[j] - P), 1e-6))
                status[j] = FILLED_RAY
                confidence[j] = 0.5 * float(np.clip(score[j], 0, 1))
            else:
                gp = parent[p]
                direction = positions[p] - positions[gp] if gp >= 0 else np.array([0.0, 1.0, 0.0])
                n = np.linalg.norm(direction)
                direction = direction / n if n > 1e-9 else np.array([0.0, 1.0, 0.0])
                positions[j] = P + direction * length
                status[j] = FILLED_GUESS
                confidence[j] = 0.05
            known[j] = True
    # nothing leaves the lifter non-finite: whatever could not be placed sits on its parent
    for j in np.flatnonzero(~known | ~np.isfinite(positions).all(1)):
        p = parent[j]
        anchor = positions[p] if p >= 0 and np.isfinite(positions[p]).all() else positions[idx["neck"]]
        positions[j] = anchor if np.isfinite(anchor).all() else np.array([0.0, 0.0, 3.0])
        status[j], confidence[j] = FILLED_GUESS, 0.0


def _fill_hip_pair(positions, status, confidence, known, has_2d, ray_unit, t_min, height, idx, score) -> None:
    """Both hips unseen: each is the other's parent, so the bone-length fill cannot start. Put each
    hip on its keypoint ray at the depth between its shoulder's and knee's (the hip is ~55% of
    the way down from shoulder to knee), never in front of the occluder; without a ray or any
    depth, below the shoulders (an upright person). In place; marks them known."""
    hips = [idx["hip_L"], idx["hip_R"]]
    if known[hips].any():
        return
    for side, j in zip("LR", hips):
        depths = []
        for name, share in ((f"shoulder_{side}", 0.45), (f"knee_{side}", 0.55)):
            k = idx[name]
            if known[k] and np.isfinite(positions[k]).all():
                depths.append((positions[k, 2], share))
        if not depths:   # the other side's joints stand in for this side's
            for name, share in ((f"shoulder_{'R' if side == 'L' else 'L'}", 0.45),
                                (f"knee_{'R' if side == 'L' else 'L'}", 0.55)):
                k = idx[name]
                if known[k] and np.isfinite(positions[k]).all():
                    depths.append((positions[k, 2], share))
        if has_2d[j] and depths:
            z = sum(d * w for d, w in depths) / sum(w for _, w in depths)
            t = max(z / max(ray_unit[j, 2], 1e-6), t_min[j])
            positions[j] = ray_unit[j] * t
            status[j], confidence[j] = FILLED_RAY, 0.5 * float(np.clip(score[j], 0, 1))
        else:
            sh = idx[f"shoulder_{side}"]
            top = positions[sh] if known[sh] else positions[idx["neck"]] if known[idx["neck"]] else None
            if top is None or not np.isfinite(top).all():
                continue     # nothing to hang the hip from: the final sweep places it
            positions[j] = top + np.array([0.0, 0.3 * height, 0.0])   # camera y points down
            status[j], confidence[j] = FILLED_GUESS, 0.05
        known[j] = True


def _bone_length(j, p, positions, visible, typical, height, names, idx) -> float:
    """Length of the bone p->j: its mirror image when seen, else the typical share of height."""
    mj = idx.get(mirror_name(names[j]), -1)
    mp = idx.get(mirror_name(names[p]), -1)
    if names[j].startswith("hip_") and visible[idx["hip_L"]] + visible[idx["hip_R"]] < 2:
        return typical[j] * height
    if mj >= 0 and mp >= 0 and mj != j and visible[mj] and visible[mp]:
        return float(np.linalg.norm(positions[mj] - positions[mp]))
    return float(typical[j] * height)
