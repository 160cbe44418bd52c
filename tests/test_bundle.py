"""Predictions bundle: write/read round trip, atomicity, validation, reference demo outputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from engine.bundle import (
    FORMAT_VERSION, Bundle, read_bundle, read_exr, srgb_to_linear, linear_to_srgb, write_bundle,
)
from engine.errors import BundleError

H, W = 48, 40


def make_bundle(seed: int = 0, with_probs: bool = True) -> Bundle:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    seg = np.zeros((H, W), np.uint8)
    seg[8:40, 10:30] = rng.integers(1, 29, (32, 20))
    mask = seg > 0
    normal = rng.normal(size=(H, W, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    normal[~mask] = np.nan
    pointmap = rng.normal(size=(H, W, 3)).astype(np.float32)
    pointmap[..., 2] += 3
    pointmap[~mask] = np.nan
    albedo = rng.random((H, W, 3)).astype(np.float32)
    keypoints = np.concatenate([rng.uniform(-5, W + 5, (308, 1)), rng.uniform(-5, H + 5, (308, 1)),
                                rng.random((308, 1))], axis=1).astype(np.float32)
    probs = rng.random((H, W, 29)).astype(np.float16) if with_probs else None
    K = np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]])
    return Bundle(image=image, mask=mask, keypoints=keypoints, seg=seg, normal=normal,
                  pointmap=pointmap, albedo=albedo, K=K, seg_probs=probs,
                  meta={"person": {"bbox": [10, 8, 30, 40], "bbox_source": "segmentation"},
                        "provenance": {"device": "cpu"}})


def test_round_trip_is_exact(tmp_path):
    b = make_bundle()
    out = write_bundle(b, tmp_path / "b")
    r = read_bundle(out)
    assert np.array_equal(r.image, b.image)
    assert np.array_equal(r.mask, b.mask)
    assert np.array_equal(r.seg, b.seg)
    assert np.array_equal(r.normal, b.normal, equal_nan=True)
    assert np.array_equal(r.pointmap, b.pointmap, equal_nan=True)
    assert np.array_equal(r.seg_probs, b.seg_probs)
    # albedo is stored as half float: exact to half precision
    assert np.allclose(r.albedo, b.albedo, atol=5e-4)
    assert np.allclose(r.keypoints, b.keypoints, atol=1e-4)
    assert np.array_equal(r.K, b.K)
    assert r.meta["format"] == "sapiens-bundle" and r.meta["version"] == FORMAT_VERSION
    assert (r.meta["photo"]["width"], r.meta["photo"]["height"]) == (W, H)
    assert r.meta["person"]["bbox_source"] == "segmentation"


def test_files_are_readable_by_other_tools(tmp_path):
    b = make_bundle(with_probs=False)
    out = write_bundle(b, tmp_path / "b")
    names = sorted(os.listdir(out))
    assert names == sorted(["bundle.json", "image.png", "mask.png", "keypoints.json", "seg.png",
                            "normal.exr", "pointmap.exr", "albedo.exr", "albedo.png"])
    assert np.array_equal(np.asarray(Image.open(out / "seg.png")), b.seg)
    preview = np.asarray(Image.open(out / "albedo.png")).astype(np.float32) / 255
    assert np.abs(srgb_to_linear(preview) - b.albedo).max() < 0.01
    kp = json.loads((out / "keypoints.json").read_text())
    assert len(kp["names"]) == 308 and kp["names"][0] == "nose"
    inside = np.array(kp["inside"])
    x, y = b.keypoints[:, 0], b.keypoints[:, 1]
    assert np.array_equal(inside, (x >= 0) & (x < W) & (y >= 0) & (y < H))
    assert (~inside).any() and inside.any()  # outside ones are kept, flagged
    import OpenEXR
    for name, dtype in [("normal", np.float32), ("pointmap", np.float32), ("albedo", np.float16)]:
        channels = OpenEXR.File(str(out / f"{name}.exr"), separate_channels=True).channels()
        assert sorted(channels) == ["B", "G", "R"]
        assert all(c.pixels.dtype == dtype for c in channels.values()), name
    assert np.array_equal(read_exr(out / "pointmap.exr")[..., 2], b.pointmap[..., 2], equal_nan=True)


def test_srgb_transfer_round_trip():
    x = np.linspace(0, 1, 1001)
    assert np.allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-9)


def test_write_replaces_an_existing_bundle_whole(tmp_path):
    write_bundle(make_bundle(seed=1), tmp_path / "b")
    b2 = make_bundle(seed=2, with_probs=False)
    write_bundle(b2, tmp_path / "b")
    assert not (tmp_path / "b" / "seg_probs.npy").exists()
    assert np.array_equal(read_bundle(tmp_path / "b").image, b2.image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp dirs left


def test_failed_write_leaves_nothing(tmp_path):
    b = make_bundle()
    b.meta["provenance"]["bad"] = object()  # not JSON: fails at the last file
    with pytest.raises(TypeError):
        write_bundle(b, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_read_only_output_dir(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(BundleError, match="cannot"):
            write_bundle(make_bundle(), ro / "b")
    finally:
        ro.chmod(0o755)


def test_unwritable_output_location(tmp_path):
    # works as root too: the parent of the bundle directory is a file
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="cannot create the output directory"):
        write_bundle(make_bundle(), tmp_path / "file" / "b")


@pytest.mark.parametrize("breakage, message", [
    (lambda b: setattr(b, "seg", b.seg[:-1]), "every map must match the photo"),
    (lambda b: setattr(b, "normal", b.normal * 2), "not unit length"),
    (lambda b: b.normal.__setitem__((20, 21, 1), np.nan), r"1 partly-NaN vectors \(first at row 20, column 21\)"),
    (lambda b: b.normal.__setitem__((20, 21, 2), -np.inf), "normal has infinite values"),
    (lambda b: b.albedo.__setitem__((0, 0, 0), np.nan), "albedo has NaN"),
    (lambda b: setattr(b, "mask", np.ones((H, W), bool)), "mask and seg disagree"),
    (lambda b: setattr(b, "keypoints", b.keypoints[:17]), "308 x 3"),
    (lambda b: b.pointmap.__setitem__((20, 20, 0), np.inf), "infinite"),
])
def test_write_refuses_inconsistent_bundles(tmp_path, breakage, message):
    b = make_bundle()
    breakage(b)
    with pytest.raises(BundleError, match=message):
        write_bundle(b, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_read_reports_missing_and_mismatched_files(tmp_path):
    out = write_bundle(make_bundle(with_probs=False), tmp_path / "b")
    (out / "normal.exr").unlink()
    with pytest.raises(BundleError, match="normal.*missing"):
        read_bundle(out)
    out = write_bundle(make_bundle(with_probs=False), tmp_path / "c")
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(out / "seg.png")
    with pytest.raises(BundleError, match="seg is 48 x 41"):
        read_bundle(out)
    meta = json.loads((out / "bundle.json").read_text())
    meta["version"] = "2.0"
    (out / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="version 2.0"):
        read_bundle(out)
    with pytest.raises(BundleError, match="no such"):
        read_bundle(tmp_path / "nothing")


def _with_crops(b: Bundle) -> Bundle:
    from engine.bundle.crops import DetailCrop

    rng = np.random.default_rng(3)
    for name, box in (("left_hand", (10, 8, 18, 16)), ("face", (12, 10, 24, 20))):
        hw = ((box[3] - box[1]) * 2, (box[2] - box[0]) * 2)
        b.crops.append(DetailCrop(name, box, 2, np.ones(hw, bool), pointmap=rng.normal(size=(*hw, 3)).astype(np.float32),
                                  albedo=rng.random((*hw, 3)).astype(np.float32)))
    return b


def test_crops_round_trip_and_read_errors_come_in_the_listed_order(tmp_path):
    """The files are decoded in threads; the error reported is still the first one met reading
    them in the listed order: the main maps, then the crops entry by entry."""
    b = _with_crops(make_bundle(with_probs=False))
    out = write_bundle(b, tmp_path / "b")
    r = read_bundle(out)
    assert [c.name for c in r.crops] == ["left_hand", "face"]
    for got, want in zip(r.crops, b.crops):
        assert got.box == want.box and np.array_equal(got.mask, want.mask)
        assert np.array_equal(got.pointmap, want.pointmap)
    meta = json.loads((out / "bundle.json").read_text())
    # an unreadable crop EXR listed before a malformed entry: the EXR is the error
    (out / "crops" / "left_hand" / "pointmap.exr").write_bytes(b"not an exr")
    broken = json.loads(json.dumps(meta))
    del broken["detail_crops"][1]["box"]
    (out / "bundle.json").write_text(json.dumps(broken))
    with pytest.raises(BundleError, match="left_hand/pointmap.exr: not a readable EXR"):
        read_bundle(out)
    # a damaged main map comes before any crop's error, the missing file of a later crop after
    # an earlier crop's damaged one
    (out / "bundle.json").write_text(json.dumps(meta))
    (out / "crops" / "face" / "mask.png").unlink()
    with pytest.raises(BundleError, match="left_hand/pointmap.exr: not a readable EXR"):
        read_bundle(out)
    (out / "albedo.exr").write_bytes(b"not an exr either")
    with pytest.raises(BundleError, match=r"b/albedo.exr: not a readable EXR"):
        read_bundle(out)


@pytest.mark.parametrize("breakage, message", [
    (lambda n: n.__setitem__((3, 4, 0), np.nan), "detail crop 'face': normal has 1 partly-NaN vectors"),
    (lambda n: n.__imul__(1.01), "detail crop 'face': normal is not unit length"),
])
def test_write_refuses_a_crop_whose_normals_break_the_promise(tmp_path, breakage, message):
    """A crop's normal map keeps the photo's promise: unit vectors, or NaN in all three channels."""
    from engine.bundle.crops import DetailCrop

    b = make_bundle(with_probs=False)
    hw = (20, 24)
    normal = np.zeros((*hw, 3), np.float32)
    normal[..., 2] = -1
    normal[:2] = np.nan                      # unknown rows: all three channels NaN, accepted
    b.crops.append(DetailCrop("face", (12, 10, 24, 20), 2, np.ones(hw, bool), normal=normal))
    write_bundle(b, tmp_path / "good")
    breakage(normal)
    with pytest.raises(BundleError, match=message):
        write_bundle(b, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_read_exr_takes_rgb_of_mixed_pixel_types(tmp_path):
    """OpenEXR groups R, G, B into one array only when they share a pixel type; R in half floats
    beside float G and B is read channel by channel, as before."""
    import OpenEXR

    rng = np.random.default_rng(1)
    r, g, b = (rng.random((6, 5)).astype(np.float32) for _ in range(3))
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"R": r.astype(np.float16), "G": g, "B": b}) as exr:
        exr.write(str(tmp_path / "mixed.exr"))
    got = read_exr(tmp_path / "mixed.exr")
    assert got.dtype == np.float32 and got.shape == (6, 5, 3)
    assert np.array_equal(got, np.stack([r.astype(np.float16).astype(np.float32), g, b], axis=-1))
    with OpenEXR.File(header, {"R": r, "G": g}) as exr:
        exr.write(str(tmp_path / "rg.exr"))
    with pytest.raises(BundleError, match=r"lacks channel\(s\) B"):
        read_exr(tmp_path / "rg.exr")


# --------------------------------------------------------------------------- reference demo outputs


def write_reference_outputs(d, b: Bundle, stem="person"):
    """Files as the reference demo scripts save them for photo `stem.jpg`."""
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(b.image).save(d / f"{stem}.png")
    np.save(d / f"{stem}_seg.npy", b.seg.astype(np.int64))
    normal = np.nan_to_num(b.normal, nan=0.0)
    np.save(d / f"{stem}_normal.npy", normal / (np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-5))
    np.save(d / f"{stem}_depth.npy", np.nan_to_num(b.pointmap[..., 2], nan=0).astype(np.float16))
    frames = [{"image_name": f"{stem}.jpg", "instances": [{
        "bbox": [10.0, 8.0, 30.0, 40.0],
        "keypoints": (b.keypoints[:, :2] - 0.5).tolist(),
        "keypoint_scores": b.keypoints[:, 2].tolist()}]}]
    (d / "run_predictions.json").write_text(json.dumps(
        {"video": "run", "image_size": [H, W], "num_keypoints": 308, "frames": frames}))


def test_reads_reference_demo_outputs(tmp_path):
    b = make_bundle()
    write_reference_outputs(tmp_path / "ref", b)
    r = read_bundle(tmp_path / "ref")
    assert np.array_equal(r.image, b.image)
    assert np.array_equal(r.seg, b.seg) and np.array_equal(r.mask, b.mask)
    assert np.allclose(r.keypoints, b.keypoints, atol=1e-4)  # integer-centred + 0.5
    assert np.allclose(r.normal[b.mask], b.normal[b.mask], atol=1e-4)
    assert np.isnan(r.normal[~b.mask]).all()
    # depth (float16) comes back as z; x, y follow from the canonical focal
    z = r.pointmap[..., 2][b.mask]
    assert np.allclose(z, b.pointmap[..., 2][b.mask], rtol=2e-3)
    assert r.K[0, 0] == pytest.approx(768 / min(1024 / H, 768 / W))
    assert any("canonical" in n for n in r.meta["notes"])
    # and it can be written as our own bundle
    again = read_bundle(write_bundle(r, tmp_path / "ours"))
    assert np.array_equal(again.seg, r.seg)


def test_reference_visualisation_panel_used_as_photo(tmp_path):
    b = make_bundle()
    d = tmp_path / "ref"
    write_reference_outputs(d, b)
    (d / "person.png").unlink()
    Image.fromarray(np.concatenate([b.image, b.image[::-1]], axis=1)).save(d / "person.png")
    r = read_bundle(d / "person_seg.npy")
    assert np.array_equal(r.image, b.image)
    assert any("left panel" in n for n in r.meta["notes"])


def test_reference_outputs_errors(tmp_path):
    b = make_bundle()
    d = tmp_path / "ref"
    write_reference_outputs(d, b)
    bad = b.seg.astype(np.float32)
    bad[3, 3] = np.nan
    np.save(d / "person_seg.npy", bad)
    with pytest.raises(BundleError, match="NaN"):
        read_bundle(d)
    np.save(d / "person_seg.npy", b.seg[:, :-2].astype(np.int64))
    with pytest.raises(BundleError, match="person_seg.npy: map is 38 x 48"):
        read_bundle(d)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError, match="no bundle.json"):
        read_bundle(empty)


def test_bundle_reader_modules_import_no_cycle():
    """The photo loader, the bundle format and the reference reader import one way only (issue 10
    found images -> bundle -> bundle_reference -> bundle, images), function-level imports included."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    modules = {"engine.colour": "engine/colour.py", "engine.images": "engine/images.py",
               "engine.bundle.format": "engine/bundle/format.py", "engine.bundle.reference": "engine/bundle/reference.py",
               "engine.bundle": "engine/bundle/__init__.py"}
    imports = {}
    for name, path in modules.items():
        tree = ast.parse((root / path).read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        imports[name] = {m for m in found if m in modules and m != name}
    assert imports["engine.colour"] == set()
    assert imports["engine.images"] == {"engine.colour"}
    assert imports["engine.bundle.format"] == {"engine.colour"}
    assert imports["engine.bundle.reference"] == {"engine.bundle.format", "engine.images"}
    # a cycle would show as a path back to the start
    def reaches(start, goal, seen=()):
        return any(m == goal or (m not in seen and reaches(m, goal, (*seen, m))) for m in imports[start])
    assert not any(reaches(name, name) for name in modules)
