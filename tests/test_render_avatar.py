"""bench/render_avatar.py: an avatar imported through the add-on's importer and rendered by Cycles from named cameras."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from render_avatar import BACKGROUND, Anchors, plan_views, render_avatar, side_on_yaw  # noqa: E402
from test_blender_io import write_test_avatar  # noqa: E402

from sapiens_blender.io.avatar import read_avatar  # noqa: E402

pytestmark = pytest.mark.blender


def test_views_are_planned_from_the_body_part_labels(tmp_path):
    avatar = read_avatar(write_test_avatar(tmp_path / "avatar"))
    anchors = Anchors(avatar)
    views, missing = plan_views(anchors, ("front", "back", "hand_left", "hairline", "seam_left"))
    by_name = {v.name: v for v in views}
    assert set(by_name) == {"front", "back", "seam_left"}
    # the test body has no hands and no hair: those views are reported, not framed on nothing
    assert sorted(note.split(":")[0] for note in missing) == ["hairline", "hand_left"]
    lo, hi = anchors.positions.min(0), anchors.positions.max(0)
    np.testing.assert_allclose(by_name["front"].target, (lo + hi) / 2)
    assert by_name["front"].half_extent >= 0.5 * (hi - lo)[2]
    # the flank close-up sits on the person's left (+X in Blender) of the trunk
    assert by_name["seam_left"].target[0] > (lo + hi)[0] / 2


def test_front_view_shows_the_whole_avatar_and_a_sheet(tmp_path):
    avatar_dir = write_test_avatar(tmp_path / "avatar")
    done = render_avatar(avatar_dir, tmp_path / "renders", views=("front",), size=40, samples=1, clay=False)
    assert done["missing"] == [] and set(done["views"]) == {"front"}
    from PIL import Image

    image = np.asarray(Image.open(done["views"]["front"]).convert("RGB"), np.float64)
    assert image.shape == (40, 40, 3)
    # the world's colour (linear, shown with the Standard view transform as sRGB) fills the corners
    background = 255 * np.where(np.array(BACKGROUND) <= 0.0031308, 12.92 * np.array(BACKGROUND),
                                1.055 * np.array(BACKGROUND) ** (1 / 2.4) - 0.055)
    person = np.abs(image - background).max(-1) > 12
    assert not person[:3, :3].any() and not person[-3:, -3:].any()
    rows = np.flatnonzero(person.any(1))
    # the body is framed whole and large: it spans most of the height without touching the edges
    assert rows.min() > 0 and rows.max() < 39 and rows.max() - rows.min() > 0.6 * 40
    assert person[20, 20]
    # the fixture's faces are wound as its normals point: the body is lit, not a black back face
    assert image[person].mean() > 40, image[person].mean()
    sheet = Image.open(done["sheet"])
    assert sheet.size[0] == 40 and sheet.size[1] > 40


def test_a_hand_held_toward_the_camera_is_seen_side_on():
    rng = np.random.default_rng(0)
    along = np.linspace(0.0, 0.18, 50)[:, None]
    jitter = rng.normal(0.0, 0.01, (50, 3))
    hanging = along * [0.0, 0.0, -1.0] + jitter  # Blender frame: Z up
    forward = along * [0.0, -1.0, 0.0] + jitter  # the person faces -Y
    assert side_on_yaw(hanging, (35.0, 90.0, 0.0), 10.0) == 35.0
    assert side_on_yaw(forward, (35.0, 90.0, 0.0), 10.0) == 90.0
    assert side_on_yaw(forward, (-35.0, -90.0, 0.0), 10.0) == -90.0


def test_islands_row_tints_the_albedo_by_island(tmp_path):
    import json

    from render_avatar import import_avatar, read_avatar, tint_islands

    avatar_dir = write_test_avatar(tmp_path / "avatar")
    assert not tint_islands(read_avatar(avatar_dir), None)  # no layout in avatar.json: nothing to tint
    meta = json.loads((avatar_dir / "avatar.json").read_text())
    # the test albedo is 8 px wide: two islands of 4 texels, no gutter
    meta["textures"] = {"layout": {"islands": ["front", "hidden"], "island_width": 4, "gutter": 0}}
    (avatar_dir / "avatar.json").write_text(json.dumps(meta))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    avatar = read_avatar(avatar_dir)
    result = import_avatar(avatar, scene=bpy.context.scene)
    albedo = result.mesh_object.material_slots[0].material.node_tree.nodes["Albedo"]
    before = np.empty(len(albedo.image.pixels), np.float32)
    albedo.image.pixels.foreach_get(before)
    assert tint_islands(avatar, result.mesh_object)
    # every material's albedo node reads a new, tinted image (8-bit; the renderer keeps the one it loaded)
    images = {slot.material.node_tree.nodes["Albedo"].image.name for slot in result.mesh_object.material_slots}
    assert images == {f"{albedo.image.name}"} and albedo.image.name.endswith("_islands")
    after = np.empty(len(albedo.image.pixels), np.float32)
    albedo.image.pixels.foreach_get(after)
    before, after = before.reshape(8, 8, 4), after.reshape(8, 8, 4)
    np.testing.assert_allclose(after[:, :4, :3], 0.5 * before[:, :4, :3] + 0.5 * np.float32([1.0, 0.25, 0.25]), atol=1 / 255)
    np.testing.assert_allclose(after[:, 4:, :3], 0.5 * before[:, 4:, :3] + 0.5 * np.float32([0.25, 1.0, 0.25]), atol=1 / 255)
