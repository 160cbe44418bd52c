"""The arms parted from what they touch in the closed one-photo solid, for a rig that raises them.

Why: an arm lying against the trunk in the photo (or a hand on the hip) is one solid with it: no
depth step parts them, and the Poisson solid closes any gap under its cells. A rig that raises
that arm then opens a fan of skin between the arm's and the trunk's contact lines, which no skin
weights can end (docs/rig.md, fourteenth and fifteenth sessions): shared person_102's raised arms
spread 4200 cm2 of sheet.

What: each arm that touches something (ArmTube.touches) gets a tube round it: tapered capsules
over the upper arm and the forearm, whose axes and radii are fitted to the arm's seen surface
(_fitted_axis; the lifted joints where too little is seen), and the convex hull of its hand's
vertices. A shell `GAP_M` thick round the tube, past the plane across the upper arm at `ROOT` of
its length from the shoulder, is cut from the solid (manifold3d): the arm keeps what lies inside
its tube and parts from everything else but through its root, the shoulder. An arm is left
whole when its cut would part a piece of more than `CHIP_MAX_M3` from the rest (the tube crossing
another part); smaller chips (the arm's own surface bulging past its tube) are dropped. The
walls are then moved together to a crack `CRACK_M` wide (a slit shows dark at rest).

The rig keeps the two sides apart (arm_sides, engine.rig.weights.keep_parted_sides): a vertex on
an arm's side follows that arm's bones only, one on the other side loses them past the root,
BLEND_M and FADE_M. docs/rig.md, "The arms parted", has the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# the part of the upper arm from the shoulder that stays joined to the trunk (the shoulder bends
# there). The raised arm turns about the shoulder, so the nearer this hinge, the less the root
# stretches: posed sheet cm2 on shared person_101 / 102 / 103 at 0.45: 1248 / 1417 / 687, 0.35:
# 883 / 1244 / 531, 0.25: 501 / 962 / 395, 0.2: 441 / 725 / 390, but from 0.2 the demo's free
# arms count as touching their flanks (52 -> 823 cm2) and crops-102's sheet rises 308 -> 450
ROOT = 0.25
# a bone's axis fitted to the arm's seen surface (_fitted_axis): cross-sections this long, each of
# at least FIT_MIN_POINTS seen vertices, a circle's radius within FIT_RADIUS_M to count
FIT_SLICE_M = 0.03
FIT_MIN_POINTS = 12
FIT_RADIUS_M = (0.015, 0.12)
# the fitted tube's radius over the fitted circles', and then grown until the arm's seen vertices
# lie FIT_MARGIN_M inside it (FIT_HOLD_PCT % of them), by at most FIT_GROW_MAX_M
FIT_SCALE = 1.1
FIT_HOLD_PCT = 97
FIT_MARGIN_M = 0.003
FIT_GROW_MAX_M = 0.02
# without a fit (too little of the arm seen): the tube round the lifted bones, its radius this
# times the arm's own measured on the side away from the body (the one-photo arm is deeper than
# wide; shared person_101 / 102 / 103's posed sheets were smaller at 1.3 than at 1.15)
TUBE_SCALE = 1.3
# the shell's thickness: the gap the parted sides keep, a crease at rest (2 mm showed as dark
# lines in 500 px renders of shared person_102; 1 mm is a third of its photo pixel)
GAP_M = 0.001
# the walls are then moved together, to this crack (_close_the_gap)
CRACK_M = 0.0001
# a face with every corner this near a tube's middle is a wall (wall_faces)
WALL_TOLERANCE_M = 0.0003
# the capsules' facets lie within radius x (1 - cos(pi / SEGMENTS)) of the true surface: 0.17 mm
# at 8 cm (the walls are moved onto the true surfaces anyway, _close_the_gap)
SEGMENTS = 48
# the tube's frusta are made of rings this far apart (_frustum): one facet the frustum's length,
# cut into the body, left slivers up to 14 cm long whose corners followed different bones
WALL_EDGE_M = 0.02
# the upper arm's capsule starts this share of its length before the shoulder (it ends past the
# root anyway: a round end there would notch the shell's edge)
BEFORE_SHOULDER = 0.2
# a piece the cut parts off of at most this much is a chip and dropped (the arm's own surface past
# its tube); a larger one means the tube crossed another part: that arm is left whole
CHIP_MAX_M3 = 60e-6
# the hand's vertices farther than this from the wrist are not the hand's (labels astray)
HAND_REACH_M = 0.25
HAND_MIN_VERTICES = 10
# the hand's hull is made of at most this many of its vertices (evenly taken: the hull is a box
# for the cut, its facets are tested per vertex)
HAND_HULL_POINTS = 400
# past the root plane by more than this the shell's end lies behind (arm_sides)
ROOT_CLEAR_M = 0.001
# the trunk's side of the cut keeps its computed arm weights this far past the root plane (the
# shoulder's bend blends there; engine.rig.weights.keep_parted_sides takes them away beyond)
BLEND_M = 0.03
# and loses them over this far beyond (a step there stretched the faces across it)
FADE_M = 0.05
# an arm touches something when this many of the solid's vertices lie within CONTACT_BAND_M
# outside its tube past the root, the blend and the fade (ArmTube.touches; the shared people 76-227,
# the demo's free arms 0-1): a free arm is not parted (its shoulder would only lose its blend)
CONTACT_BAND_M = 0.01
CONTACT_MIN = 40
ARMS = (("L", "Left"), ("R", "Right"))


@dataclass
class ArmTube:
    """One arm's tube, in the frame of the solid it was measured on."""

    side: str                  # "L" or "R"
    classes: tuple             # the arm's class ids (upper arm, lower arm, hand)
    shoulder: np.ndarray       # 3
    elbow: np.ndarray          # 3
    wrist: np.ndarray          # 3
    radii: np.ndarray          # 3: the tube's radius at the shoulder, elbow and wrist
    hand_planes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # P x 4: n . x + d <= 0 inside,
    # the wrist strictly inside (the hull holds a ball round it)

    @property
    def capsules(self):
        start = self.shoulder - BEFORE_SHOULDER * (self.elbow - self.shoulder)
        return ((start, self.elbow, self.radii[0], self.radii[1]), (self.elbow, self.wrist, self.radii[1], self.radii[2]))

    def past_root(self, points: np.ndarray, beyond: float = 0.0) -> np.ndarray:
        return self.along(points) > beyond

    def along(self, points: np.ndarray) -> np.ndarray:
        """How far past the root plane each point lies, along the upper arm (m)."""
        axis = self.elbow - self.shoulder
        unit = axis / np.linalg.norm(axis)
        return (np.asarray(points, np.float64) - (self.shoulder + ROOT * axis)) @ unit

    def touches(self, vertices: np.ndarray) -> int:
        """How many of the solid's vertices lie just outside the tube (within CONTACT_BAND_M) past
        the root and the blend: the surface of what the arm touches. A free arm's tube holds the
        arm with nothing close by."""
        far = self.past_root(vertices, BLEND_M + FADE_M)
        level, _ = self.level(vertices[far], within=CONTACT_BAND_M)
        return int(((level > GAP_M) & (level < CONTACT_BAND_M)).sum())

    def inside(self, points: np.ndarray, grow: float = 0.0) -> np.ndarray:
        """Inside the tube grown by `grow` (the capsules' true surfaces, not their facets)."""
        return self.level(points, within=grow)[0] < grow

    def level(self, points: np.ndarray, within: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(how far each point lies outside the tube, the direction that distance grows in): the
        least over its parts (the union), a capsule's by its radius at the nearest axis point, the
        hand's by its farthest plane; the tube grown by g is where it is under g. Given `within`,
        only points in the box round the tube grown by it are looked at (the hand's planes are
        hundreds), the others left at infinity. A point more than 5 cm (or `within`) outside the
        hand's box gets the capsules' level alone: every comparison with a level under that holds."""
        points = np.asarray(points, np.float64)
        value = np.full(len(points), np.inf)
        direction = np.zeros((len(points), 3))
        if within is not None:
            lo, hi = self.bounds(within)
            near = np.flatnonzero(((points >= lo) & (points <= hi)).all(1))
            value[near], direction[near] = self.level(points[near])
            return value, direction
        for a, b, ra, rb in self.capsules:
            ab = b - a
            t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
            offset = points - (a + t[:, None] * ab)
            distance = np.linalg.norm(offset, axis=1)
            v = distance - (ra + t * (rb - ra))
            less = v < value
            value[less] = v[less]
            direction[less] = offset[less] / np.maximum(distance[less], 1e-12)[:, None]
        if len(self.hand_planes):
            # the hand's level is under `within` (or the capsules') only in its box grown by it
            reach = max(within if within is not None else 0.0, 0.0) + 0.05
            lo, hi = self.hand_box
            near = np.flatnonzero(((points >= lo - reach) & (points <= hi + reach)).all(1))
            heights = points[near] @ self.hand_planes[:, :3].T + self.hand_planes[:, 3]
            k = heights.argmax(1)
            v = heights[np.arange(len(near)), k]
            less = v < value[near]
            value[near[less]] = v[less]
            direction[near[less]] = self.hand_planes[k[less], :3]
        return value, direction

    def bounds(self, grow: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """A box round the tube grown by `grow` (the capsules' spheres, the hand's corners: a
        plane moved out by g moves a corner by at most g / sin of the angle between its planes,
        so the hand's box is padded by twice that and a centimetre)."""
        corners = [c - r - grow for a, b, ra, rb in self.capsules for c, r in ((a, ra), (b, rb))]
        tops = [c + r + grow for a, b, ra, rb in self.capsules for c, r in ((a, ra), (b, rb))]
        if len(self.hand_planes):
            lo, hi = self.hand_box
            corners.append(lo - 2 * grow - 0.01)
            tops.append(hi + 2 * grow + 0.01)
        return np.min(corners, axis=0), np.max(tops, axis=0)

    @property
    def hand_box(self) -> tuple[np.ndarray, np.ndarray]:
        """The hand's hull's box (its corners found once: a linear program and a halfspace
        intersection per call cost milliseconds)."""
        key = self.hand_planes.tobytes()
        if getattr(self, "_hand_box_key", None) != key:
            corners = _polytope(self.hand_planes, 0.0, self.wrist)
            self._hand_box, self._hand_box_key = (corners.min(0), corners.max(0)), key
        return self._hand_box

    def solid(self, grow: float):
        """The tube grown by `grow` as a manifold3d solid."""
        import manifold3d as m3

        parts = []
        for a, b, ra, rb in self.capsules:
            parts += [_frustum(a, b, ra + grow, rb + grow), m3.Manifold.sphere(ra + grow, SEGMENTS).translate(tuple(a)),
                      m3.Manifold.sphere(rb + grow, SEGMENTS).translate(tuple(b))]
        if len(self.hand_planes):
            parts.append(m3.Manifold.hull_points(np.ascontiguousarray(_polytope(self.hand_planes, grow, self.wrist), np.float32)))
        return m3.Manifold.batch_boolean(parts, m3.OpType.Add)

    def record(self) -> dict:
        return {"side": self.side, "radii_m": [round(float(r), 4) for r in self.radii],
                "hand_planes": int(len(self.hand_planes))}


def arm_tubes(vertices: np.ndarray, labels: np.ndarray, joints: dict, seen: np.ndarray | None = None
              ) -> tuple[list[ArmTube], list[str]]:
    """The arms' tubes from the solid (vertices, per-vertex class ids, which vertices the camera
    saw) and the lifted joints ({"shoulder_L": xyz, "elbow_L", "wrist_L", and _R}, the solid's
    frame); notes for the arms left out (no joints, too few labelled vertices).

    Each bone's axis and radius are fitted to the arm's seen surface where it shows enough of it
    (_fitted_axis: circles through its cross-sections, a line through their centres): the lifted
    joints lie a guessed radius behind the front and miss the solid's arm by centimetres (bench
    person bent-101's left forearm: three quarters of its seen surface outside a tube round the
    lifted bones). Then every seen vertex of the arm must lie in its tube (the radii grow to hold
    them, by up to FIT_GROW_MAX_M)."""
    from engine.geometry.labels import class_ids

    vertices = np.asarray(vertices, np.float64)
    labels = np.asarray(labels)
    seen = np.ones(len(vertices), bool) if seen is None else np.asarray(seen, bool)
    tubes, notes = [], []
    if not all(f"shoulder_{s}" in joints for s, _ in ARMS):
        return [], ["no shoulders among the lifted joints"]
    middle = 0.5 * (np.asarray(joints["shoulder_L"], np.float64) + np.asarray(joints["shoulder_R"], np.float64))
    for side, name in ARMS:
        ends = [joints.get(f"{joint}_{side}") for joint in ("shoulder", "elbow", "wrist")]
        if any(e is None or not np.isfinite(e).all() for e in ends):
            notes.append(f"{side}: no lifted shoulder, elbow and wrist")
            continue
        shoulder, elbow, wrist = (np.asarray(e, np.float64) for e in ends)
        classes = tuple(int(c) for c in class_ids([f"{name}_Upper_Arm", f"{name}_Lower_Arm", f"{name}_Hand"]))
        on_arm = np.isin(labels, classes)
        outward = shoulder - middle
        radii = [_radius_at(vertices, on_arm, shoulder, elbow, 0.7, outward),
                 _radius_at(vertices, on_arm, elbow, wrist, 0.1, outward),
                 _radius_at(vertices, on_arm, elbow, wrist, 0.9, outward)]
        if radii[0] is None or radii[2] is None:
            notes.append(f"{side}: too few vertices labelled the arm")
            continue
        radii[1] = radii[0] if radii[1] is None else radii[1]
        radii = TUBE_SCALE * np.asarray(radii, np.float64)
        upper = _fitted_axis(vertices[seen & (labels == classes[0])], shoulder, elbow, ROOT)
        fore = _fitted_axis(vertices[seen & (labels == classes[1])], elbow, wrist, 0.0)
        if upper is not None and fore is not None:
            shoulder, elbow = upper[0], 0.5 * (upper[1] + fore[0])
            wrist = fore[1]
            radii = FIT_SCALE * np.array([upper[2], 0.5 * (upper[2] + fore[2]), fore[2]])
        hand = vertices[labels == classes[2]]
        hand = hand[np.linalg.norm(hand - wrist, axis=1) < HAND_REACH_M]
        hand = hand[::max(1, -(-len(hand) // HAND_HULL_POINTS))]
        planes = _hull_planes(np.concatenate([hand, _sphere_points(wrist, radii[2])])) if len(hand) >= HAND_MIN_VERTICES \
            else np.zeros((0, 4))
        tube = ArmTube(side, classes, shoulder, elbow, wrist, radii, planes)
        # the arm's seen surface past the root all inside: the radii grow by what sticks out
        own = seen & on_arm & tube.past_root(vertices, 0.0)
        if own.any():
            level, _ = tube.level(vertices[own])
            grow = float(np.clip(np.percentile(level, FIT_HOLD_PCT) + FIT_MARGIN_M, 0.0, FIT_GROW_MAX_M))
            tube.radii = tube.radii + grow
            if len(planes):
                tube.hand_planes = _hull_planes(np.concatenate([hand, _sphere_points(wrist, tube.radii[2])]))
        if len(tube.hand_planes):
            # the hand's own surface lies on its hull: the hull is grown clear of it
            tube.hand_planes[:, 3] -= FIT_MARGIN_M
        tubes.append(tube)
    return tubes, notes


def _fitted_axis(points: np.ndarray, a: np.ndarray, b: np.ndarray, start: float):
    """(a', b', radius): the bone a-b's axis fitted to its seen surface `points` past `start` of
    its length: a circle through each FIT_SLICE_M cross-section (least squares, in the plane
    across the bone; the seen front is half of it), a line through the circles' centres, a and
    b moved onto it, the circles' median radius. None when fewer than two cross-sections fit."""
    length = float(np.linalg.norm(b - a))
    if length < 1e-6 or len(points) < FIT_MIN_POINTS:
        return None
    unit = (b - a) / length
    e1 = np.cross(unit, [1.0, 0.0, 0.0] if abs(unit[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(unit, e1)
    rel = points - a
    along = rel @ unit
    keep = (along >= start * length) & (along <= length)
    rel, along = rel[keep], along[keep]
    x, y = rel @ e1, rel @ e2
    centres, radii = [], []
    slices = np.floor(along / FIT_SLICE_M).astype(np.int64)
    for k in np.unique(slices):
        at = slices == k
        if at.sum() < FIT_MIN_POINTS:
            continue
        A = np.c_[x[at], y[at], np.ones(int(at.sum()))]
        (D, E, F), *_ = np.linalg.lstsq(A, -(x[at] ** 2 + y[at] ** 2), rcond=None)
        cx, cy = -D / 2, -E / 2
        r2 = cx * cx + cy * cy - F
        if not 0 < r2 or not FIT_RADIUS_M[0] < np.sqrt(r2) < FIT_RADIUS_M[1]:
            continue
        centres.append(a + along[at].mean() * unit + cx * e1 + cy * e2)
        radii.append(np.sqrt(r2))
    if len(centres) < 2:
        return None
    centres = np.asarray(centres)
    mean = centres.mean(0)
    direction = np.linalg.svd(centres - mean)[2][0]
    direction *= np.sign(direction @ unit)
    onto = lambda p: mean + ((p - mean) @ direction) * direction  # noqa: E731
    return onto(a), onto(b), float(np.median(radii))


def part_arms(vertices: np.ndarray, faces: np.ndarray, tubes: list[ArmTube]):
    """The closed solid with each arm parted along its tube: (vertices, faces, source, parted,
    record). `source`: each new vertex's old index, -1 for a vertex the cut made; `parted`: the
    tubes whose arm was parted; record: per arm what was done (avatar.json)."""
    import manifold3d as m3

    from engine.geometry.near_boolean import mesh_solid

    vertices = np.asarray(vertices, np.float32)
    solid = mesh_solid(vertices, faces)
    if solid.status() != m3.Error.NoError:
        return vertices, np.asarray(faces), np.arange(len(vertices)), [], {"arms": [], "note": f"not a solid: {solid.status()}"}
    free = [tube for tube in tubes if tube.touches(vertices) < CONTACT_MIN]
    arms = [{**tube.record(), "parted": False, "why": "it touches nothing past its shoulder"} for tube in free]
    tubes = [tube for tube in tubes if tube not in free]
    if not tubes:
        return vertices, np.asarray(faces), np.arange(len(vertices)), [], {"arms": arms}
    volume = solid.volume()
    # the closed solid may hold separate overlapping parts (an arm solved apart): each is kept
    whole = sum(p.volume() > CHIP_MAX_M3 for p in solid.decompose())
    shells = [_shell(tube) for tube in tubes]
    # both arms in one boolean; only when that cuts a part off is each tried alone
    cut, dropped, parts = _cut(solid, shells)
    if parts == whole or len(tubes) < 2:
        chosen = [parts == whole] * len(tubes)
        drops = [dropped] * len(tubes)
    else:
        alone = [_cut(solid, [shell]) for shell in shells]
        chosen = [n == whole for _, _, n in alone]
        drops = [d for _, d, _ in alone]
        if any(chosen):
            cut, _, _ = _cut(solid, [shell for shell, keep in zip(shells, chosen) if keep])
    parted = []
    for tube, keep, drop in zip(tubes, chosen, drops):
        entry = {**tube.record(), "parted": bool(keep), "dropped_cm3": round(1e6 * drop, 2)}
        if keep:
            parted.append(tube)
        else:
            entry["why"] = "its cut would part a piece of the solid from the rest (its tube crosses another part)"
        arms.append(entry)
    if not parted:
        return vertices, np.asarray(faces), np.arange(len(vertices)), [], {"arms": arms}
    solid = cut
    mesh = solid.to_mesh()
    new_vertices = np.asarray(mesh.vert_properties)[:, :3].astype(np.float64)
    new_faces = np.asarray(mesh.tri_verts).astype(np.int64)
    source = _same_vertices(vertices, new_vertices)
    made = source < 0
    new_vertices = _close_the_gap(new_vertices, made, parted)
    record = {"arms": arms, "volume_change": round(float(solid.volume() / volume - 1.0), 5),
              "made_vertices": int(made.sum())}
    return new_vertices.astype(np.float32), new_faces.astype(np.int32), source, parted, record


def _close_the_gap(vertices: np.ndarray, made: np.ndarray, tubes: list[ArmTube]) -> np.ndarray:
    """The cut's walls moved to within CRACK_M / 2 of the shell's middle, each on its own side:
    a GAP_M slit still shows as a dark line at rest, the walls' shading; closed to a crack far
    under a pixel it does not, and arm_sides still tells the sides apart by the middle."""
    vertices = np.asarray(vertices, np.float64).copy()
    at = np.flatnonzero(made)
    points = vertices[at]
    best = np.full(len(at), np.inf)
    value = np.zeros(len(at))
    direction = np.zeros((len(at), 3))
    for tube in tubes:
        v, d = tube.level(points)
        closer = np.abs(v - 0.5 * GAP_M) < best
        best[closer] = np.abs(v[closer] - 0.5 * GAP_M)
        value[closer], direction[closer] = v[closer], d[closer]
    on_wall = best < GAP_M
    target = np.where(value < 0.5 * GAP_M, 0.5 * (GAP_M - CRACK_M), 0.5 * (GAP_M + CRACK_M))
    vertices[at[on_wall]] += ((target - value) * on_wall)[on_wall, None] * direction[on_wall]
    return vertices


def _shell(tube: ArmTube):
    """The GAP_M shell round the tube past its root plane (manifold3d)."""
    import manifold3d as m3

    root = _past_plane(tube.shoulder + ROOT * (tube.elbow - tube.shoulder), tube.elbow - tube.shoulder)
    return m3.Manifold.batch_boolean([tube.solid(GAP_M), tube.solid(0.0)], m3.OpType.Subtract) ^ root


def _cut(solid, shells) -> tuple[object, float, int]:
    """(the solid less the shells, its chips dropped: pieces of CHIP_MAX_M3 or less, their volume,
    how many pieces are left)."""
    import manifold3d as m3

    pieces = m3.Manifold.batch_boolean([solid, *shells], m3.OpType.Subtract).decompose()
    kept = [p for p in pieces if p.volume() > CHIP_MAX_M3]
    dropped = float(sum(p.volume() for p in pieces if p.volume() <= CHIP_MAX_M3))
    return m3.Manifold.compose(kept), dropped, len(kept)


def arm_sides(vertices: np.ndarray, faces: np.ndarray, tubes: list[ArmTube], beyond: float) -> tuple[np.ndarray, np.ndarray]:
    """(inside, barred): V x len(tubes) for a mesh made from the parted solid. inside (bool): on
    that arm's side of the cut, past its root; barred (0-1): on the other side, how much of that
    arm's weight is taken away, none up to `beyond` past the root (the shoulder's weights blend
    there), all from `beyond` + FADE_M on.

    Past the root plane (by more than the shell's end, ROOT_CLEAR_M) the two sides share no edge:
    the cut parts them. So each piece of the mesh there (vertices welded by position: UV seams
    split them) is one side's, the side most of its vertices lie on by the tube's middle. Later
    steps may split the walls' long edges, and a long chord's middle sags through the middle
    (0.2 mm for 1 cm of a 6 cm tube); a piece's majority holds."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    from engine.geometry.cleanup import weld_by_position

    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    weld, first = weld_by_position(vertices)  # np.unique(axis=0) alone sorts whole rows: 4x the time
    at = vertices[first]
    welded_faces = weld[faces]
    edges = np.concatenate([welded_faces[:, [0, 1]], welded_faces[:, [1, 2]], welded_faces[:, [2, 0]]])
    inside = np.zeros((len(vertices), len(tubes)), bool)
    barred = np.zeros((len(vertices), len(tubes)))
    for k, tube in enumerate(tubes):
        past = tube.past_root(at, ROOT_CLEAR_M)
        by_middle = past & tube.inside(at, 0.5 * GAP_M)
        kept = edges[past[edges[:, 0]] & past[edges[:, 1]]]
        graph = sparse.coo_matrix((np.ones(len(kept), np.int8), (kept[:, 0], kept[:, 1])), shape=(len(at), len(at)))
        _, piece = connected_components(graph, directed=False)
        count = np.bincount(piece[past], minlength=piece.max() + 1)
        share = np.bincount(piece[past], by_middle[past].astype(np.float64), minlength=piece.max() + 1) / np.maximum(count, 1)
        arm_side = past & (share[piece] > 0.5)
        inside[:, k] = arm_side[weld]
        fade = np.clip((tube.along(at) - beyond) / FADE_M, 0.0, 1.0)
        barred[:, k] = np.where(past & ~arm_side, fade, 0.0)[weld]
    return inside, barred


def wall_faces(vertices: np.ndarray, faces: np.ndarray, tubes: list[ArmTube]) -> np.ndarray:
    """The faces of the cut's walls in a mesh made from the parted solid: all three corners within
    WALL_TOLERANCE_M of a tube's middle (the walls lie CRACK_M / 2 either side of it; a later
    split's midpoint sags less than that on a 2 cm ring), past its root plane. Their vertex normals
    must not reach the skin beside them (stages.seamless_normals)."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    on_wall = np.zeros(len(vertices), bool)
    for tube in tubes:
        level, _ = tube.level(vertices, within=GAP_M)
        on_wall |= (np.abs(level - 0.5 * GAP_M) < WALL_TOLERANCE_M) & tube.past_root(vertices, -ROOT_CLEAR_M)
    return on_wall[faces].all(1)


def relabel_parted(vertices: np.ndarray, faces: np.ndarray, source: np.ndarray, old_vertices: np.ndarray,
                   old_labels: np.ndarray, tubes: list[ArmTube]) -> np.ndarray:
    """Labels of the parted solid: a kept vertex keeps its own; a vertex the cut made takes its
    side's: inside an arm's tube the nearest old vertex of that arm's classes, outside the nearest
    old vertex of another class; and a kept vertex of an arm's class left outside its tube past
    the root (the solid's deep back behind the arm, now the trunk's) the nearest other class."""
    from scipy.spatial import cKDTree

    labels_new = np.zeros(len(vertices), np.asarray(old_labels).dtype)
    kept = source >= 0
    labels_new[kept] = old_labels[source[kept]]
    old_vertices = np.asarray(old_vertices, np.float64)
    inside, barred = arm_sides(vertices, faces, tubes, beyond=0.01)
    in_any = inside.any(1)
    todo = ~kept & ~in_any
    for k, tube in enumerate(tubes):
        own = np.isin(old_labels, tube.classes)
        take = ~kept & inside[:, k]
        if take.any() and own.any():
            labels_new[take] = old_labels[own][cKDTree(old_vertices[own]).query(vertices[take])[1]]
        todo |= (barred[:, k] > 0) & ~in_any & np.isin(labels_new, tube.classes)
    other = ~np.isin(old_labels, [c for tube in tubes for c in tube.classes])
    if todo.any() and other.any():
        labels_new[todo] = old_labels[other][cKDTree(old_vertices[other]).query(vertices[todo])[1]]
    return labels_new


def _radius_at(vertices, on_arm, a, b, t: float, outward) -> float | None:
    """The arm's radius at fraction t of bone a-b: the median distance from the bone of its
    vertices within 15 % of t on the side `outward` points to (away from the body)."""
    axis = b - a
    length = float(np.linalg.norm(axis))
    if length < 1e-6:
        return None
    unit = axis / length
    away = np.asarray(outward, np.float64) - unit * float(np.asarray(outward) @ unit)
    if np.linalg.norm(away) < 1e-9:
        return None
    away /= np.linalg.norm(away)
    rel = vertices[on_arm] - a
    along = rel @ unit / length
    radial = rel - np.outer(rel @ unit, unit)
    distance = np.linalg.norm(radial, axis=1)
    near = (np.abs(along - t) < 0.15) & (distance < 0.12) & (radial @ away > 0.3 * distance)
    return float(np.median(distance[near])) if near.sum() > 5 else None


def _sphere_points(centre, radius: float, n: int = 64) -> np.ndarray:
    """n points spread over a sphere (a Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azimuth = np.pi * (1 + 5 ** 0.5) * i
    return centre + radius * np.c_[np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)]


def _hull_planes(points: np.ndarray) -> np.ndarray:
    """The convex hull's facet planes (unit normal, offset: n . x + d <= 0 inside), merged."""
    from scipy.spatial import ConvexHull

    equations = ConvexHull(points).equations
    return np.unique(np.round(equations, 9), axis=0)


def _polytope(planes: np.ndarray, grow: float, inside: np.ndarray) -> np.ndarray:
    """The corners of the polytope n . x + d <= grow; `inside` a point strictly inside it (the
    wrist: the hand's hull holds a ball round it)."""
    from scipy.spatial import HalfspaceIntersection

    shifted = planes.copy()
    shifted[:, 3] -= grow
    return HalfspaceIntersection(shifted, np.asarray(inside, np.float64)).intersections


def _frustum(a, b, ra: float, rb: float):
    """A truncated cone from a (radius ra) to b (radius rb) as a manifold3d solid."""
    import manifold3d as m3

    axis = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    length = float(np.linalg.norm(axis))
    rings = max(int(np.ceil(length / WALL_EDGE_M)) - 1, 0)
    cone = m3.Manifold.extrude(m3.CrossSection.circle(ra, SEGMENTS), length, rings, 0.0, (rb / ra, rb / ra))
    return cone.transform(np.c_[_rotation_to(axis / length), a].astype(np.float32))


def _past_plane(point, direction):
    """The half-space past the plane through `point` across `direction` (a 4 m cube)."""
    import manifold3d as m3

    unit = np.asarray(direction, np.float64) / np.linalg.norm(direction)
    return m3.Manifold.cube((4.0, 4.0, 4.0), True).translate((0.0, 0.0, 2.0)).transform(
        np.c_[_rotation_to(unit), point].astype(np.float32))


def _rotation_to(unit: np.ndarray) -> np.ndarray:
    """A rotation taking +Z to `unit`."""
    z = np.array([0.0, 0.0, 1.0])
    cross, cos = np.cross(z, unit), float(z @ unit)
    sin = float(np.linalg.norm(cross))
    if sin < 1e-9:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    k = cross / sin
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * K + (1 - cos) * K @ K


def _same_vertices(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Each new vertex's index among the old ones at the same place (manifold3d keeps a kept
    vertex's float32 position exactly), -1 for a new place: equal float32 rows grouped by
    cleanup.same_rows (a k-d tree over the old ones took twice the time), the tree's nearest
    within 1e-7 m where two rows' codes clash."""
    from engine.geometry.cleanup import same_rows

    old32, new32 = np.asarray(old, np.float32), np.asarray(new, np.float32)
    same = same_rows(np.concatenate([old32, new32]), as_numbers=True)
    if same is None:
        from scipy.spatial import cKDTree

        distance, index = cKDTree(np.asarray(old, np.float64)).query(np.asarray(new, np.float64))
        return np.where(distance < 1e-7, index, -1)
    group, first = same
    index = first[group[len(old32):]]          # a group's first row: the lowest index, an old one if any
    return np.where(index < len(old32), index, -1)
