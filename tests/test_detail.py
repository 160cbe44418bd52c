"""Hands and face in detail: crop boxes from the keypoints, crops in the bundle, alignment of a
crop's pointmap to the whole-body one, and the finer surface fused into the avatar."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.bundle import read_bundle, write_bundle
from engine.bundle.crops import DetailCrop
from engine.errors import BundleError
from engine.geometry.detail import align_crop, align_crops, fit_scale_shift, fuse_maps, fuse_mesh
from engine.predict.crops import CropBox, crop_boxes, keypoint_groups

GUESS = dict(scale=1.3, shift=(0.1, -0.05, 0.6))


@pytest.fixture(scope="module")
def person():
    from engine.synthetic import make_person
    from engine.synthetic.crops import open_hands_pose

    return make_person(seed=2, pose=open_hands_pose())


@pytest.fixture(scope="module")
def crops(person):
    from engine.synthetic.crops import render_crops

    return render_crops(person, **GUESS)


# ----------------------------------------------------------------------------- boxes


def test_boxes_around_both_hands_and_the_face(person):
    boxes, notes = crop_boxes(person.keypoints, person.mask.shape)
    assert notes == []
    assert [b.name for b in boxes] == ["left_hand", "right_hand", "face"]
    H, W = person.mask.shape
    for box in boxes:
        x0, y0, x1, y1 = box.box
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
        assert abs((x1 - x0) / (y1 - y0) - 0.75) < 0.03        # the model input's shape
        assert box.factor == 4
        ids = keypoint_groups()[box.name]
        seen = person.keypoints[ids][person.keypoints[ids, 2] >= 0.3, :2]
        assert ((seen >= [x0, y0]) & (seen < [x1, y1])).all()   # every confident keypoint inside
    # the person's left hand is on the image's right
    assert boxes[0].box[0] > boxes[1].box[2]


def test_boxes_are_skipped_in_words(person):
    kp = person.keypoints.copy()
    kp[keypoint_groups()["left_hand"], 2] = 0.1                 # not confident
    right = keypoint_groups()["right_hand"]
    kp[right, 0] -= kp[right, 0].max() + 5                      # the right hand off the photo
    boxes, notes = crop_boxes(kp, person.mask.shape)
    assert [b.name for b in boxes] == ["face"]
    assert any("left hand: skipped, 0 confident keypoints" in n for n in notes)
    assert any("right hand: skipped, 0 confident" in n or "off the photo" in n for n in notes)
    # a hand spread over most of a small photo is no finer in a crop than in the whole photo
    small = person.keypoints.copy()
    small[:, :2] *= 0.25
    hw = (person.mask.shape[0] // 4, person.mask.shape[1] // 4)
    tiny_boxes, tiny_notes = crop_boxes(small, hw)
    assert all(b.name != "left_hand" for b in tiny_boxes) or all(b.factor >= 1 for b in tiny_boxes)
    assert any("px wide" in n or "larger than in the whole photo" in n for n in tiny_notes) or tiny_boxes


# ----------------------------------------------------------------------------- alignment


def test_scale_and_shift_are_recovered_through_outliers():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(500, 3)) * [0.1, 0.1, 0.03] + [0, 0, 2.0]
    target = 1.7 * source + [0.2, -0.1, 0.5] + rng.normal(scale=0.001, size=source.shape)
    target[:100] += rng.normal(scale=0.3, size=(100, 3))        # a fifth of the pairs are wrong
    s, t, residual = fit_scale_shift(source, target)
    assert abs(s - 1.7) < 0.01
    assert np.allclose(t, [0.2, -0.1, 0.5], atol=0.01)
    assert np.median(residual[100:]) < 0.003


def test_a_crop_is_aligned_to_the_body(person, crops):
    aligned, notes = align_crops(crops, person.pointmap, person.mask)
    assert notes == [] and len(aligned) == 3
    for a in aligned:
        assert a.scale == pytest.approx(1.3, abs=0.005)
        assert np.allclose(a.shift, GUESS["shift"], atol=0.005)
        assert a.agree > 0.95
        truth = crops[[c.name for c in crops].index(a.crop.name)].pointmap * 1.3 + np.float32(GUESS["shift"])
        ok = np.isfinite(truth).all(-1)
        assert np.nanmax(np.abs(a.points[ok] - truth[ok])) < 0.005
        x0, y0, x1, y1 = a.region
        bx0, by0, bx1, by1 = a.crop.box
        assert bx0 < x0 < x1 < bx1 and by0 < y0 < y1 < by1      # the border band only aligns


def test_a_crop_that_disagrees_is_refused_in_words(person, crops):
    wrong = crops[0]
    rng = np.random.default_rng(1)
    shuffled = wrong.pointmap.copy()
    valid = np.isfinite(shuffled).all(-1)
    shuffled[valid] = shuffled[valid][rng.permutation(int(valid.sum()))]   # right values, wrong places
    bad = DetailCrop(wrong.name, wrong.box, wrong.factor, wrong.mask, pointmap=shuffled)
    aligned, note = align_crop(bad, person.pointmap, person.mask)
    assert aligned is None
    assert note.startswith("detail crop left hand: refused, its surface disagrees with the whole-body pointmap")
    elsewhere = DetailCrop(wrong.name, (0, 0, wrong.box[2] - wrong.box[0], wrong.box[3] - wrong.box[1]), wrong.factor,
                           wrong.mask, pointmap=wrong.pointmap)
    aligned, note = align_crop(elsewhere, person.pointmap, person.mask)   # a box over the background
    assert aligned is None and "overlap the whole-body pointmap" in note


# ----------------------------------------------------------------------------- the bundle


def test_crops_survive_the_bundle(tmp_path, person, crops):
    from engine.synthetic import to_bundle

    bundle = to_bundle(person)
    bundle.crops = crops
    write_bundle(bundle, tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert meta["version"] == "1.2"
    assert [c["name"] for c in meta["detail_crops"]] == ["left_hand", "right_hand", "face"]
    back = read_bundle(tmp_path / "b")
    for a, b in zip(crops, back.crops):
        assert (a.name, tuple(a.box), a.factor) == (b.name, tuple(b.box), b.factor)
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.seg, b.seg)
        assert np.array_equal(a.pointmap, b.pointmap, equal_nan=True)
        assert np.allclose(a.albedo, b.albedo, atol=1e-3)           # half-float EXR
    # a bundle of the previous version (no crops) still reads
    meta.pop("detail_crops")
    meta["version"] = "1.1"
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(meta))
    assert read_bundle(tmp_path / "b").crops == []


def test_a_bad_crop_entry_is_said_in_words(tmp_path, person, crops):
    from engine.synthetic import to_bundle

    bundle = to_bundle(person)
    bundle.crops = crops[:1]
    write_bundle(bundle, tmp_path / "b")
    path = tmp_path / "b" / "bundle.json"
    meta = json.loads(path.read_text())
    meta["detail_crops"][0]["files"]["pointmap"] = "../elsewhere.exr"
    path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a file inside the bundle"):
        read_bundle(tmp_path / "b")
    meta["detail_crops"][0]["files"]["pointmap"] = "crops/left_hand/pointmap.exr"
    meta["detail_crops"][0]["box"] = [0, 0, 10, 10]               # the stored maps are another size
    path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="detail crop 'left_hand': mask must be"):
        read_bundle(tmp_path / "b")
    (tmp_path / "b" / "crops" / "left_hand" / "normal.exr").unlink()
    with pytest.raises(BundleError, match="lists normal as crops/left_hand/normal.exr, which is missing"):
        read_bundle(tmp_path / "b")


# ----------------------------------------------------------------------------- fusion


def _hand_error(vertices, faces, K, region, person) -> float:
    """Mean distance to the true surface of points on the mesh's triangles over the region."""
    import open3d as o3d

    x0, y0, x1, y1 = region
    uv = vertices.astype(np.float64) @ K.T
    xy = uv[:, :2] / uv[:, 2:3]
    inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)
    f = faces[inside[faces].all(1)]
    centres = vertices[f].mean(1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(person.mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(person.mesh.faces.astype(np.uint32)))
    return float(scene.compute_distance(o3d.core.Tensor(centres)).numpy().mean())


def test_the_finer_grid_replaces_the_hands_and_is_stitched(person, crops):
    from engine.geometry import build_surface
    from engine.synthetic import to_bundle

    bundle = to_bundle(person)
    aligned, _ = align_crops(crops[:2], bundle.pointmap, bundle.mask)
    fused_bundle = fuse_maps(bundle, aligned)
    built = build_surface(fused_bundle, detail="none")
    vertices, faces, labels, pixel, fine, stats = fuse_mesh(
        built.vertices, built.faces, built.vertex_labels, built.vertex_pixel, built.stats["grid"], built.grid_factor,
        aligned)
    assert len(vertices) == len(labels) == len(pixel) == len(fine)
    assert fine.sum() > 10 * sum(s["body_vertices_replaced"] for s in stats) / 2   # 16 grid points per photo pixel
    assert (pixel[fine] == -1).all() and (pixel[~fine] >= 0).all()
    for s in stats:
        assert s["stitch_faces"] > 50
    # stitched, not laid over: no edge is shared by more than two triangles
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    _, count = np.unique(edges, axis=0, return_counts=True)
    assert (count > 2).sum() <= 0.001 * len(edges)
    # the zipper's triangles face the camera like the rest (-z normals toward it)
    normal = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    assert (normal[:, 2] < 0).mean() > 0.97
    for a in aligned:
        before = _hand_error(built.vertices, built.faces, person.K, a.region, person)
        after = _hand_error(vertices, faces, person.K, a.region, person)
        assert after < 0.25 * before, (a.crop.name, before, after)


def test_spread_fingers_stay_apart_on_the_fused_mesh(person, crops):
    """Each spread finger is its own strip of the mesh past the palm: rays between fingertips
    hit nothing."""
    import open3d as o3d

    from engine.geometry import build_surface
    from engine.synthetic import to_bundle
    from engine.synthetic.crops import crop_camera
    from engine.synthetic.render import pixel_rays

    bundle = to_bundle(person)
    aligned, _ = align_crops(crops[:1], bundle.pointmap, bundle.mask)
    built = build_surface(fuse_maps(bundle, aligned), detail="none")
    vertices, faces, *_ = fuse_mesh(built.vertices, built.faces, built.vertex_labels, built.vertex_pixel,
                                    built.stats["grid"], 1, aligned)
    truth = crops[0]
    camera = crop_camera(person.camera, truth.box, truth.factor)
    h, w = truth.mask.shape
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    hit = np.isfinite(scene.cast_rays(o3d.core.Tensor(pixel_rays(camera.K, w, h)))["t_hit"].numpy()).reshape(h, w)
    x0, y0, x1, y1 = aligned[0].region
    bx0, by0 = truth.box[:2]
    f = truth.factor
    window = (slice((y0 - by0) * f, (y1 - by0) * f), slice((x0 - bx0) * f, (x1 - bx0) * f))
    empty = ~truth.mask[window]
    assert (hit[window] & empty).sum() <= 0.01 * empty.sum()         # no webbing over the true gaps
    assert (~hit[window] & truth.mask[window]).sum() <= 0.05 * truth.mask[window].sum()


def test_avatar_with_crops_open_and_closed(tmp_path, person, crops):
    from engine.avatar.build import build_avatar
    from engine.synthetic import to_bundle

    bundle = to_bundle(person)
    bundle.crops = crops
    write_bundle(bundle, tmp_path / "b")
    for closed in (False, True):
        out = build_avatar(tmp_path / "b", tmp_path / f"avatar{closed}", watertight=closed, formats=["glb"],
                           texture_size=512)
        manifest = json.loads((out / "avatar.json").read_text())
        record = manifest["mesh"]["surface"]["detail_crops"]
        assert [u["name"] for u in record["used"]] == ["left_hand", "right_hand", "face"]
        if closed:
            assert record["mesh"].startswith("snapped: the closed surface")
            assert record["mesh"].endswith("its hands solved again from the hand crops, finer, and put in place")
            hands, face = record["used"][:2], record["used"][2]
            assert all(u.get("solved_again") for u in hands)
            assert face["snapped_vertices"] > 50
            # the front moved along the rays without folding a triangle over
            assert face["faces_flipped"] <= 0.001 * manifest["mesh"]["faces"]
            assert [c["poisson_depth"] for c in record["closed_hands"]["crops"]] == [7, 7]
        else:
            assert record["mesh"] == "finer grid stitched in"
        assert manifest["options"]["detail_crops"] is True
    off = build_avatar(tmp_path / "b", tmp_path / "off", watertight=False, formats=["glb"], texture_size=512,
                       detail_crops=False)
    manifest = json.loads((off / "avatar.json").read_text())
    assert "detail_crops" not in manifest["mesh"]["surface"]
    with_crops = json.loads((tmp_path / "avatarFalse" / "avatar.json").read_text())
    assert with_crops["mesh"]["vertices"] > 2 * manifest["mesh"]["vertices"] * 0.5


# ----------------------------------------------------------------------------- predict, end to end


def test_predict_with_crops_then_build(tmp_path, monkeypatch):
    """Tiny random checkpoints: the real predict path runs the crops and writes them; the build
    reads them and either fuses or refuses each in words (random models disagree with themselves)."""
    from PIL import Image

    from engine.avatar.build import build_avatar
    from engine.models.testing import write_tiny_checkpoint
    from engine.predict import Predictor
    import engine.predict.crops as crop_module

    root = tmp_path / "ckpt"
    for task in ("pose", "seg", "normal", "pointmap", "albedo"):
        write_tiny_checkpoint(root / task / f"sapiens2_0.4b_{task}.safetensors", task, seed=1)
    rgb = np.full((320, 240, 3), 90, np.uint8)
    rgb[40:300, 70:170] = [200, 150, 120]
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    # the tiny pose model's keypoints are noise: the boxes are given (crop_boxes is tested above)
    monkeypatch.setattr(crop_module, "crop_boxes",
                        lambda kp, hw: ([CropBox("left_hand", (80, 150, 140, 230), 4, 21)], ["detail crop face: skipped"]))
    with Predictor(checkpoints=root, device="cpu", dtype="fp32", detail_crops=True) as predictor:
        result = predictor.predict([tmp_path / "photo.png"], tmp_path / "out")[0]
    assert result.status == "written"
    bundle = read_bundle(result.bundles[0])
    assert "detail crop face: skipped" in bundle.meta["notes"]
    (crop,) = bundle.crops
    assert (crop.name, crop.box, crop.factor) == ("left_hand", (80, 150, 140, 230), 4)
    assert crop.mask.shape == (320, 240) and crop.pointmap.shape == (320, 240, 3)
    assert crop.normal is not None and crop.albedo is not None and crop.seg is not None
    assert (np.isnan(crop.pointmap[~crop.mask])).all()
    assert "crops_pointmap" in bundle.meta["provenance"]["timings_s"]
    if not bundle.mask.any() or not np.isfinite(bundle.pointmap).any():
        pytest.skip("the tiny seg model found nobody in this photo")
    meta_path = tmp_path / "out" / "photo" / "bundle.json"
    meta = json.loads(meta_path.read_text())
    if meta["K"] is None:   # random points fit no pinhole camera; give the build one
        meta["K"] = [[300.0, 0, 120], [0, 300.0, 160], [0, 0, 1]]
        meta_path.write_text(json.dumps(meta))
    try:
        out = build_avatar(result.bundles[0], tmp_path / "avatar", watertight=False, formats=["glb"], texture_size=256)
    except BundleError as exc:   # random maps may not make a surface at all; the crops are not the reason
        pytest.skip(f"the tiny models' maps make no surface: {exc}")
    record = json.loads((out / "avatar.json").read_text())["mesh"]["surface"]["detail_crops"]
    assert len(record["used"]) + len(record["notes"]) == 1
    assert all("detail crop left hand" in n for n in record["notes"])


def test_predict_without_the_option_writes_no_crops(tmp_path):
    from engine.options import BY_NAME

    option = BY_NAME["detail_crops"]
    assert option.default_for("predict") is False
    assert option.default_for("avatar") is True and option.default_for("build") is True


def test_the_texture_takes_the_crops_resolution(tmp_path, person, crops):
    """A pattern finer than a photo pixel in the crop's albedo reaches the texture; averaged per
    photo pixel (the fused maps) it would be flat grey."""
    from dataclasses import replace

    from engine.avatar.build import build_avatar
    from engine.fileio import read_exr
    from engine.synthetic import to_bundle

    hand = crops[0]
    h, w = hand.mask.shape
    checker = ((np.arange(h)[:, None] // 2 + np.arange(w)[None, :] // 2) % 2).astype(np.float32)
    pattern = np.repeat((0.2 + 0.6 * checker)[..., None], 3, axis=2)   # squares of half a photo pixel
    bundle = to_bundle(person)
    bundle.crops = [replace(hand, albedo=pattern)]
    write_bundle(bundle, tmp_path / "b")
    out = build_avatar(tmp_path / "b", tmp_path / "avatar", watertight=False, formats=["glb"], texture_size=2048)
    manifest = json.loads((out / "avatar.json").read_text())
    texture = read_exr(out / "textures" / "albedo.exr")
    x0, y0, x1, y1 = manifest["textures"]["layout"]["crop_photo_px"]
    (region,) = [u["region"] for u in manifest["mesh"]["surface"]["detail_crops"]["used"]]
    th, tw = texture.shape[:2]
    island = manifest["textures"]["layout"]["island_width"]
    # texels well inside the region, on the person: the fused maps' per-pixel average is 0.5 there
    cx, cy = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
    rows = slice(int((cy - 4 - y0) * th / (y1 - y0)), int((cy + 4 - y0) * th / (y1 - y0)))
    cols = slice(int((cx - 4 - x0) * island / (x1 - x0)), int((cx + 4 - x0) * island / (x1 - x0)))
    window = texture[rows, cols, 0]
    on_hand = hand.mask[int((cy - hand.box[1]) * hand.factor), int((cx - hand.box[0]) * hand.factor)]
    assert on_hand, "the region's centre should show the hand"
    assert abs(window.mean() - 0.5) < 0.08
    assert window.std() > 0.12, window.std()          # the pattern is there, not its average


def test_a_closed_surface_takes_the_crops_depth_and_stays_closed(person, crops):
    from engine.geometry import build_surface
    from engine.geometry.detail import snap_to_crops
    from engine.synthetic import to_bundle

    bundle = to_bundle(person)
    aligned, _ = align_crops(crops[:2], bundle.pointmap, bundle.mask)
    closed = build_surface(fuse_maps(bundle, aligned), detail="none", watertight=True)
    vertices, stats = snap_to_crops(closed.vertices, closed.faces, aligned, person.K)
    assert vertices.shape == closed.vertices.shape          # same triangles: still closed
    assert all(s["snapped_vertices"] > 50 for s in stats)
    assert stats[0]["faces_flipped"] == 0
    # moved only along the camera rays: every vertex projects where it did
    before = closed.vertices.astype(np.float64) @ person.K.T
    after = vertices.astype(np.float64) @ person.K.T
    assert np.abs(before[:, :2] / before[:, 2:] - after[:, :2] / after[:, 2:]).max() < 1e-3
    # the true surface the crop shows is nearer the snapped solid (its blobs between the fingers
    # stay: the solid's triangles are the same)
    import open3d as o3d

    def distance(v, points):
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(closed.faces.astype(np.uint32)))
        return float(scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy().mean())

    for a in aligned:
        x0, y0, x1, y1 = a.region
        f, (bx0, by0) = a.crop.factor, a.crop.box[:2]
        window = a.points[(y0 - by0) * f:(y1 - by0) * f, (x0 - bx0) * f:(x1 - bx0) * f]
        truth = window[np.isfinite(window).all(-1)]       # exact maps: the aligned crop is the truth
        was, now = distance(closed.vertices, truth), distance(vertices, truth)
        assert now < 0.85 * was, (a.crop.name, was, now)


# ----------------------------------------------------------------------------- the closed surface's hands


def test_the_snap_onto_a_noisy_crop_turns_no_triangle_over(person, crops, monkeypatch):
    """A network's crop depth is noisy per pixel: read at vertices a few millimetres apart it
    would fold triangles over (a face of the avatar turned inward); the snap holds those corners
    back, so no triangle turns by more than SNAP_MAX_TURN_COS, and the rest still snaps."""
    from dataclasses import replace

    import engine.geometry.detail as detail
    from engine.geometry import build_surface
    from engine.synthetic import to_bundle

    face_normals = detail._unit_face_normals
    bundle = to_bundle(person)
    aligned, _ = align_crops(crops, bundle.pointmap, bundle.mask)
    closed = build_surface(fuse_maps(bundle, aligned), detail="none", watertight=True)
    rng = np.random.default_rng(5)
    # ~4 mm along the rays per crop pixel
    noisy = [replace(a, points=(a.points * (1.0 + rng.normal(0.0, 0.004 / np.nanmedian(a.points[..., 2]),
                                                              a.points.shape[:2]))[..., None]).astype(np.float32))
             for a in aligned]

    def turned(vertices):
        before = face_normals(closed.vertices.astype(np.float64), closed.faces)
        after = face_normals(vertices.astype(np.float64), closed.faces)
        return int(((before * after).sum(1) < detail.SNAP_MAX_TURN_COS).sum()), int(((before * after).sum(1) < 0).sum())

    vertices, stats = detail.snap_to_crops(closed.vertices, closed.faces, noisy, person.K)
    assert turned(vertices) == (0, 0)
    assert all(s["faces_flipped"] == 0 for s in stats)
    assert sum(s["snapped_vertices"] for s in stats) > 100
    assert sum(s["held_back_vertices"] for s in stats) > 0
    # the guard is what keeps them: without it the same noise folds triangles over
    monkeypatch.setattr(detail, "SNAP_MAX_TURN_COS", -2.0)
    unguarded, _ = detail.snap_to_crops(closed.vertices, closed.faces, noisy, person.K)
    assert turned(unguarded)[1] > 0


def _finger_gaps(truth, K) -> np.ndarray:
    """Background pixels of a crop's true mask enclosed by the hand within ~2 cm (a closing by a
    1 cm disc): the gaps between spread fingers."""
    from scipy import ndimage

    radius = int(round(0.01 * K[0, 0] / float(np.nanmedian(truth.pointmap[..., 2]))))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    closed = ndimage.binary_closing(np.pad(truth.mask, radius), structure=xx**2 + yy**2 <= radius**2)
    return closed[radius:-radius, radius:-radius] & ~truth.mask


def _gaps_free(vertices, faces, person, aligned) -> list[float]:
    """Per hand: the share of the true gaps between its fingers (inside the crop's region) that
    rays through the crop's pixels find free of triangles."""
    import open3d as o3d

    from engine.synthetic.crops import crop_camera, render_crops
    from engine.synthetic.render import pixel_rays

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)), o3d.core.Tensor(np.asarray(faces, np.uint32)))
    truths = {c.name: c for c in render_crops(person)}
    out = []
    for a in aligned:
        truth = truths[a.crop.name]
        K = crop_camera(person.camera, truth.box, truth.factor).K
        h, w = truth.mask.shape
        hit = np.isfinite(scene.cast_rays(o3d.core.Tensor(pixel_rays(K, w, h)))["t_hit"].numpy()).reshape(h, w)
        x0, y0, x1, y1 = a.region
        bx0, by0 = truth.box[:2]
        f = truth.factor
        window = (slice((y0 - by0) * f, (y1 - by0) * f), slice((x0 - bx0) * f, (x1 - bx0) * f))
        gap = _finger_gaps(truth, K)[window]
        assert gap.sum() > 1000, "the open-hands person should show gaps between the fingers"
        out.append(float((~hit[window] & gap).sum() / gap.sum()))
    return out


def _closed_with_crops(person, crops, *, hands: bool = True):
    from engine.avatar import detail as stage
    from engine.avatar.stages import Inputs
    from engine.geometry import build_surface
    from engine.synthetic import to_bundle

    bundle = to_bundle(person)
    bundle.crops = crops[:2]
    inputs = Inputs(bundle, "test", bundle.K, "bundle")
    detail = stage.fuse_crop_maps(inputs, enabled=True, resolution="full")
    built = build_surface(inputs.bundle, detail="normals", watertight=True)
    if not hands:
        return built, detail
    return stage.fuse_crop_surface(inputs, built, detail, watertight=True, target_faces=None), detail


def test_spread_fingers_come_apart_on_the_closed_surface(person, crops):
    """The closed solid's hands are re-solved from the hand crops: the gaps between the spread
    fingers open (the body's own solve webs every one of them: a mitten), and it stays closed."""
    body, detail = _closed_with_crops(person, crops, hands=False)
    closed, _ = _closed_with_crops(person, crops)
    before = _gaps_free(body.vertices, body.faces, person, detail.aligned)
    after = _gaps_free(closed.vertices, closed.faces, person, detail.aligned)
    assert max(before) < 0.2, before
    assert min(after) > 0.6, after
    record = closed.stats["detail_crops"]
    assert [c["name"] for c in record["closed_hands"]["crops"]] == ["left_hand", "right_hand"]
    # a closed 2-manifold: every edge in exactly two triangles, each way round once
    faces = np.asarray(closed.faces, np.int64)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = directed[:, 0] * len(closed.vertices) + directed[:, 1]
    reverse = directed[:, 1] * len(closed.vertices) + directed[:, 0]
    assert len(np.unique(key)) == len(key)
    assert np.isin(reverse, key).all()
    assert closed.vertex_labels is not None and len(closed.vertex_labels) == len(closed.vertices)
    assert len(closed.uv) == len(closed.front) == len(closed.vertex_pixel) == len(closed.vertices)


def test_closed_hands_are_deterministic_and_refuse_in_words(person, crops):
    from engine.geometry.detail_solid import hand_solid_samples

    body, detail = _closed_with_crops(person, crops, hands=False)
    fine, notes = hand_solid_samples(detail.aligned, person.K)
    assert notes == []
    first = fine.apply(body.vertices, body.faces, body.vertex_labels)
    again = fine.apply(body.vertices, body.faces, body.vertex_labels)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    # without part labels the hands cannot be told from the rest: the body stays, and says so
    vertices, faces, labels, stats = fine.apply(body.vertices, body.faces, None)
    assert vertices is body.vertices and "no part labels" in stats["note"]
    # a crop without a segmentation gives no samples, in words
    from dataclasses import replace

    bare = [replace(a, crop=replace(a.crop, seg=None)) for a in detail.aligned]
    none, notes = hand_solid_samples(bare, person.K)
    assert none is None and all("has no segmentation" in n for n in notes) and len(notes) == 2


@pytest.mark.parametrize("closed", [False, True])
def test_the_normal_map_takes_the_crops_resolution(tmp_path, person, crops, closed):
    """Normals tilted left and right in stripes half a photo pixel wide in the hand crop reach the
    baked normal map; averaged per photo pixel (the fused maps the whole-body bake reads) they
    would cancel to the mean."""
    from dataclasses import replace

    from PIL import Image

    from engine.avatar.build import build_avatar
    from engine.avatar.textures import decode_normal_map
    from engine.synthetic import to_bundle

    hand = crops[0]
    h, w = hand.mask.shape
    stripe = np.where((np.arange(w) // 2) % 2 == 0, 0.35, -0.35).astype(np.float32)   # 2 crop px = half a photo px
    tilted = np.zeros((h, w, 3), np.float32)
    tilted[..., 0] = stripe[None, :]
    tilted[..., 2] = -np.sqrt(1 - stripe[None, :] ** 2)                   # facing the camera (-z)
    tilted[~hand.mask] = np.nan
    bundle = to_bundle(person)
    bundle.crops = [replace(hand, normal=tilted)]
    write_bundle(bundle, tmp_path / "b")
    out = build_avatar(tmp_path / "b", tmp_path / "avatar", watertight=closed, formats=["glb"], texture_size=2048)
    manifest = json.loads((out / "avatar.json").read_text())
    normal_map = decode_normal_map(np.asarray(Image.open(out / "textures" / "normal.png").convert("RGB")))
    layout = manifest["textures"]["layout"]
    x0, y0, x1, y1 = layout["crop_photo_px"]
    th = normal_map.shape[0]
    island = layout["island_width"]
    region = manifest["mesh"]["surface"]["detail_crops"]["used"][0]["region"]
    cx, cy = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
    assert hand.mask[int((cy - hand.box[1]) * hand.factor), int((cx - hand.box[0]) * hand.factor)]
    rows = slice(int((cy - 3 - y0) * th / (y1 - y0)), int((cy + 3 - y0) * th / (y1 - y0)))
    cols = slice(int((cx - 3 - x0) * island / (x1 - x0)), int((cx + 3 - x0) * island / (x1 - x0)))
    # each texel's stripe: its centre's photo x, on the crop's grid
    texel_cols = np.arange(cols.start, cols.stop) + 0.5
    photo_x = x0 + texel_cols * (x1 - x0) / island
    sign = np.where(((photo_x - hand.box[0]) * hand.factor // 2) % 2 == 0, 1.0, -1.0)
    across = normal_map[rows, cols, 0]
    # the map's x follows the stripes (the tangent's x is about the avatar's x here, the palm
    # facing the camera); without the crop's normals at their resolution it is uncorrelated
    # (measured: -0.02 both ways; with them 0.12 closed, where the re-solved hand's own frames
    # and the fades at the fingers' outlines take some, and more open)
    assert (across * sign[None, :]).mean() > 0.08, (across * sign[None, :]).mean()
