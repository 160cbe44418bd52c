"""Hidden vertices read their own body part's pixels (engine.avatar.appearance._onto_its_own_part)."""

import numpy as np

from engine.avatar.appearance import OWN_PART_EDGE_PX, OWN_PART_INSIDE_PX, _on_the_border, _onto_its_own_part
from engine.avatar.labels import class_ids


def _photo():
    """A 100 x 60 person: a shirt (cols 10-39) with an arm hanging against it (cols 40-49)."""
    seg = np.zeros((100, 60), np.uint8)
    seg[:, 10:40] = class_ids(["Upper_Clothing"])[0]
    seg[:, 40:50] = class_ids(["Left_Upper_Arm"])[0]
    seg[:10, 10:40] = class_ids(["Face_Neck"])[0]
    return seg, seg > 0


def test_shirt_behind_the_arm_reads_the_shirt_on_its_own_row():
    seg, mask = _photo()
    shirt, arm = class_ids(["Upper_Clothing"])[0], class_ids(["Left_Upper_Arm"])[0]
    xy = np.array([[45.5, 50.5], [42.5, 70.5], [45.5, 30.5]], np.float64)
    labels = np.array([shirt, shirt, arm], np.uint8)
    out = _onto_its_own_part(xy, labels, seg, mask)
    rows, cols = out[:, 1].astype(int), out[:, 0].astype(int)
    assert (seg[rows[:2], cols[:2]] == shirt).all()
    # along the row (a stripe stays lined up), onto the shirt's last column a bilinear tap keeps clean
    np.testing.assert_array_equal(rows[:2], [50, 70])
    assert (cols[:2] < 40 - OWN_PART_INSIDE_PX).all() and (cols[:2] >= 36).all()
    # the arm's own vertex on the arm's pixels stays
    np.testing.assert_array_equal(out[2], xy[2])


def test_with_edges_the_shirt_beside_the_arm_reads_off_the_mixed_edge():
    # the photo's colour at the shirt's last columns beside the arm mixes the arm's skin: with
    # `edges`, a shirt vertex reading one of them, and one reading the arm, read a shirt pixel
    # farther than OWN_PART_EDGE_PX from the arm, on their own row; one farther in stays
    seg, mask = _photo()
    shirt = class_ids(["Upper_Clothing"])[0]
    xy = np.array([[39.5, 50.5], [37.5, 60.5], [44.5, 70.5], [30.5, 80.5]], np.float64)
    labels = np.full(len(xy), shirt, np.uint8)
    out = _onto_its_own_part(xy, labels, seg, mask, edges=True)
    rows, cols = out[:, 1].astype(int), out[:, 0].astype(int)
    np.testing.assert_array_equal(rows, [50, 60, 70, 80])
    assert (seg[rows, cols] == shirt).all()
    assert (40 - (cols[:3] + 0.5) > OWN_PART_EDGE_PX).all() and (cols[:3] >= 30).all()
    np.testing.assert_array_equal(out[3], xy[3])
    # without `edges` the edge's readers stay
    plain = _onto_its_own_part(xy, labels, seg, mask)
    np.testing.assert_array_equal(plain[:2], xy[:2])


def test_hair_on_the_face_and_limbs_on_the_shirt_stay():
    seg, mask = _photo()
    hair, shirt = class_ids(["Hair"])[0], class_ids(["Upper_Clothing"])[0]
    arm = class_ids(["Left_Upper_Arm"])[0]
    # the face's hidden colour is the hair's where hidden_hair_labels turned it Hair; an arm's
    # back over the shirt is not moved by this rule (only the trunk's parts behind a limb)
    xy = np.array([[20.5, 5.5], [20.5, 50.5]], np.float64)
    out = _onto_its_own_part(xy, np.array([hair, arm], np.uint8), seg, mask)
    np.testing.assert_array_equal(out, xy)
    # a shirt vertex with no shirt pixel within reach keeps its pixel
    far = np.zeros_like(seg)
    far[:, 50:60] = class_ids(["Left_Upper_Arm"])[0]
    far[:2, :2] = shirt
    out = _onto_its_own_part(np.array([[55.5, 90.5]]), np.array([shirt], np.uint8), far, far > 0)
    np.testing.assert_array_equal(out, [[55.5, 90.5]])


def test_border_vertices_are_the_positions_both_islands_have():
    v = np.array([[0, 0, 1], [1, 0, 1], [0, 0, 1], [2, 0, 1]], np.float64)
    hidden = np.array([False, False, True, True])
    np.testing.assert_array_equal(_on_the_border(v, hidden), [True, False, True, False])


def test_a_sliver_of_hair_beside_the_face_is_not_hair_but_the_hair_beside_it_is():
    from engine.avatar.appearance import _stray_hair

    hair, face = class_ids(["Hair"])[0], class_ids(["Face_Neck"])[0]
    seg = np.zeros((80, 60), np.uint8)
    seg[:30, 10:50] = hair  # the top of the head
    seg[30:80, 20:40] = face
    seg[30:60, 15:20] = hair  # a lock of hair down the face's left side, 5 px wide
    # one pixel of hair past the neck's right side in every other row, as a rim seen edge-on
    seg[50:70:2, 40] = hair
    stray = _stray_hair(seg, seg > 0)
    expected = np.zeros_like(stray)
    expected[50:70:2, 40] = True
    np.testing.assert_array_equal(stray, expected)
    # a thin lock joined to the hair's mass is hair, down to its lowest pixel
    seg[30:50, 40:42] = hair
    assert not _stray_hair(seg, seg > 0)[:51].any()


def test_the_face_outline_along_a_sliver_takes_the_face_colour_from_inside():
    # a lock thinning under a pixel down the face's right side: a hair pixel past the outline in
    # every fourth row (the sliver), the face's outline pixels between them darkened by the lock
    from types import SimpleNamespace

    from engine.avatar import textures as tx
    from engine.avatar.appearance import _without_stray_hair

    hair, face = class_ids(["Hair"])[0], class_ids(["Face_Neck"])[0]
    seg = np.zeros((80, 60), np.uint8)
    seg[:30, 10:50] = hair
    seg[30:80, 20:40] = face
    seg[40:53:4, 40] = hair
    mask = seg > 0
    colour = np.zeros((80, 60, 3), np.float32)
    colour[seg == hair] = 0.12
    colour[seg == face] = 0.8
    colour[38:55, 39] = 0.3  # the lock's sub-pixel rest in the face's last pixels
    colour[70, 39] = 0.3  # a dark outline pixel far from any sliver
    layout = tx.AtlasLayout((0.0, 0.0, 60.0, 80.0), 120, 160, 60, 2)
    out, out_seg = _without_stray_hair(SimpleNamespace(seg=seg, mask=mask), colour, mask, layout)
    np.testing.assert_allclose(out[38:55, 39], 0.8, atol=1e-6)  # no dark ticks along the sliver
    np.testing.assert_allclose(out[40:53:4, 40], 0.8, atol=0.05)  # nor on the sliver itself
    assert (out_seg[40:53:4, 40] == face).all()
    np.testing.assert_array_equal(out[70, 39], colour[70, 39])  # elsewhere the outline keeps its colour
    changed = (out != colour).any(-1)
    assert not changed[:, :39].any() and not changed[:36].any() and not changed[57:].any()


def _arm_against_the_shirt(gap: int = 0):
    """A 200 x 60 photo, f = 200 px: a flat shirt (cols 10-39) 2 m away and an arm 10 px
    (~10 cm) wide in front of its side at 1.95 m (cols 40 + gap to 49 + gap), `gap` background
    columns between them; the pointmap, seg, mask and K."""
    seg = np.zeros((200, 60), np.uint8)
    seg[:, 10:40] = class_ids(["Upper_Clothing"])[0]
    seg[:, 40 + gap:50 + gap] = class_ids(["Left_Upper_Arm"])[0]
    K = np.array([[200.0, 0, 30.0], [0, 200.0, 100.0], [0, 0, 1]])
    z = np.where(seg == class_ids(["Left_Upper_Arm"])[0], 1.95, 2.0)
    rows, cols = np.mgrid[0:200, 0:60] + 0.5
    pointmap = np.stack([(cols - 30.0) * z / 200.0, (rows - 100.0) * z / 200.0, z], -1).astype(np.float32)
    pointmap[seg == 0] = np.nan
    return pointmap, seg, seg > 0, K


def _at(xy, z, K):
    """Camera points at photo positions `xy` and depths `z`."""
    xy, z = np.asarray(xy, np.float64), np.asarray(z, np.float64)
    return np.column_stack([(xy[:, 0] - K[0, 2]) * z / K[0, 0], (xy[:, 1] - K[1, 2]) * z / K[1, 1], z])


def test_the_shirt_behind_an_arm_lying_against_it_reads_the_shirt():
    from engine.avatar.appearance import _off_the_limb

    pointmap, seg, mask, K = _arm_against_the_shirt()
    arm, shirt = class_ids(["Left_Upper_Arm"])[0], class_ids(["Upper_Clothing"])[0]
    # behind the arm's pixels: 20 cm behind it (the solid's back there is the shirt's back), the
    # arm's own back 6 cm behind it (within its 10 cm width), and a vertex 20 cm in front of it
    # (a forearm held toward the camera, in front of the shirt)
    xy = np.array([[45.5, 100.5], [45.5, 120.5], [45.5, 140.5]])
    vertices = _at(xy, [2.15, 2.01, 1.75], K)
    out = _off_the_limb(xy, vertices, np.full(3, arm, np.uint8), seg, mask, pointmap, K)
    row, col = int(out[0, 1]), int(out[0, 0])
    assert seg[row, col] == shirt and row == 100 and col < 40 - OWN_PART_INSIDE_PX  # along its row
    np.testing.assert_array_equal(out[1:], xy[1:])
    # a shirt vertex is not the rule's
    np.testing.assert_array_equal(_off_the_limb(xy[:1], vertices[:1], np.array([shirt], np.uint8), seg, mask,
                                                pointmap, K), xy[:1])


def test_an_arm_apart_from_the_shirt_keeps_its_own_colour():
    from engine.avatar.appearance import _off_the_limb

    # background between the arm and the shirt on its rows: the vertex far behind the arm's pixels
    # is the arm's (a slanted arm's back), not the shirt's
    pointmap, seg, mask, K = _arm_against_the_shirt(gap=3)
    xy = np.array([[48.5, 100.5]])
    vertices = _at(xy, [2.15], K)
    out = _off_the_limb(xy, vertices, np.array(class_ids(["Left_Upper_Arm"]), np.uint8), seg, mask, pointmap, K)
    np.testing.assert_array_equal(out, xy)


def test_the_seen_shirt_behind_a_forearm_in_front_of_it_reads_the_shirt():
    # a forearm held toward the camera (cols 40-49, 2.0 m) in front of the sleeve (2.3 m): the
    # front island's and the border's shirt vertices there read the shirt; one on the forearm's
    # depth (within BEHIND_LIMB_M) and the arm's own vertex keep their pixel
    from engine.avatar.appearance import BEHIND_LIMB_M, _behind_a_limb

    seg, mask = _photo()
    shirt, arm = class_ids(["Upper_Clothing"])[0], class_ids(["Left_Upper_Arm"])[0]
    pointmap = np.full(seg.shape + (3,), np.nan, np.float32)
    pointmap[..., 2] = np.where(seg == arm, 2.0, 2.3)
    xy = np.array([[45.5, 50.5], [45.5, 60.5], [45.5, 70.5], [25.5, 40.5]], np.float64)
    z = np.array([2.3, 2.0 + 0.5 * BEHIND_LIMB_M, 2.3, 2.3])
    labels = np.array([shirt, shirt, arm, shirt], np.uint8)
    out = _behind_a_limb(xy, np.column_stack([np.zeros((4, 2)), z]), labels, seg, mask, pointmap)
    assert seg[int(out[0, 1]), int(out[0, 0])] == shirt and out[0, 1] == xy[0, 1]
    np.testing.assert_array_equal(out[1:], xy[1:])


def test_a_thin_lock_at_the_outline_is_a_smooth_edge_in_the_texture():
    # a lock of hair 0.8 px wide down the face's right outline, the outline slanting a pixel every
    # 10 rows: the mask steps a pixel there and the outline pixel's colour jumps with the share
    # of the lock inside it (shared person_101's jaw). Across the front island's texels the
    # face/hair edge lies where the lock's edge does, on every texel row (no tooth a row high)
    from engine.avatar import textures as tx
    from engine.avatar.appearance import _lock_texels

    h, w = 60, 40
    hair, face = class_ids(["Hair"])[0], class_ids(["Face_Neck"])[0]
    face_c, hair_c = np.array([0.6, 0.45, 0.35], np.float32), np.array([0.08, 0.06, 0.05], np.float32)
    rows = np.arange(h) + 0.5
    outline = 34.0 - 0.1 * (rows - 10.0)  # the true outline (pixel-edge columns)
    edge = outline - 0.8  # the lock's inner edge
    left = np.arange(w)[None, :].astype(np.float64)
    person = (left >= 5) & (left + 0.5 < outline[:, None])
    right = np.minimum(left + 1.0, outline[:, None])  # each pixel's person part ends here
    cover = np.clip(right - np.maximum(left, edge[:, None]), 0.0, None) / np.maximum(right - left, 1e-9)
    cover = np.where(person, np.clip(cover, 0.0, 1.0), 0.0)
    seg = np.where(person, np.where(cover > 0.5, hair, face), 0).astype(np.uint8)
    seg[:8][person[:8]] = hair  # the top of the head
    cover[:8][person[:8]] = 1.0
    colour = (face_c * (1 - cover[..., None]) + hair_c * cover[..., None]).astype(np.float32)
    layout = tx.AtlasLayout(crop=(0.0, 0.0, float(w), float(h)), width=176, height=4 * h, island_width=80, n_islands=2)
    before = tx.resample_crop(colour, layout, tx.FRONT)
    albedo = before.copy()
    _lock_texels(albedo, colour, seg, person, layout, (0, 0))
    mid = 0.5 * (face_c[0] + hair_c[0])
    errors, before_errors = [], []
    for texel_row in range(48, 192):  # photo rows 12-48, away from the head's top and the lock's ends
        true_edge = np.interp((texel_row + 0.5) / 4.0, rows, edge)
        for values, out in ((albedo[..., 0], errors), (before[..., 0], before_errors)):
            row = values[texel_row, :80]
            k = np.flatnonzero((row[:-1] >= mid) & (row[1:] < mid))
            if not len(k):
                out.append(np.inf)  # no hair on this texel row
                continue
            k = k[-1]  # the last face -> hair crossing
            crossing = k + (row[k] - mid) / (row[k] - row[k + 1]) + 0.5  # texel-edge coordinates
            out.append(crossing / 2.0 - true_edge)
    errors, before_errors = np.abs(errors), np.abs(before_errors)
    # within a tenth of a pixel on every row; the photo alone shows no hair at all on some (inf)
    assert errors.max() < 0.1 and np.isinf(before_errors).any()
    # the face's inside is left as it was
    np.testing.assert_array_equal(albedo[:, :40], before[:, :40])
