"""Look at avatars as an artist does: small Cycles CPU renders from fixed, named cameras, one contact sheet each.

    .venv/bin/python bench/render_avatar.py AVATAR_DIR [AVATAR_DIR ...] --out DIR
        [--views front,back,...] [--size 320] [--samples 8] [--no-clay] [--islands] [--denoise]

Each avatar directory (what `sapiens-engine avatar` / `build` writes) is imported through the
add-on's own importer (sapiens_blender.blender.import_avatar: mesh, custom normals, materials with
albedo and normal maps, rig), never through engine code, into a fresh scene of the bpy module. The
cameras are placed from the avatar's body-part labels, so a close-up of a hand or of the hairline
frames that part on any avatar:

    front, back, left, right   the whole body (left = the person's left side)
    head_back34                the head from behind, three quarters (the lumpy back of the head)
    hairline                   where hair meets the face, from the front and a little above
    head_side                  the head from its left, a little in front (hair framing the face, the seam)
    hand_left, hand_right      each hand from the front and outside, side-on when held toward the camera
    seam_left                  the person's left flank from the side and above (front/back seam)
    feet                       the shoes from the front and outside

Each view is rendered textured and, unless --no-clay, again in grey clay (geometry only: the
normal maps and albedo off, the engine's custom normals kept), under one key light that follows
the camera; with --islands once more with the albedo tinted by UV island (front red, hidden
green; a fused avatar's views red, green, its unseen island blue), to tell which island a patch
of colour comes from. Writes DIR/<avatar>/<view>.png, <view>_clay.png, <view>_islands.png and
DIR/<avatar>/sheet.png (each band of views textured, then clay, then islands), and prints the
seconds per avatar with the load average (the machine may be shared: the figures are for
judging the cost, not for comparing builds).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from sapiens_blender.blender.axes import to_blender_axes  # noqa: E402
from sapiens_blender.blender.import_avatar import import_avatar  # noqa: E402
from sapiens_blender.io.avatar import Avatar, read_avatar  # noqa: E402

VIEW_NAMES = ("front", "back", "left", "right", "head_back34", "hairline", "head_side", "hand_left", "hand_right",
              "seam_left", "feet")
BACKGROUND = (0.32, 0.36, 0.42)  # linear; a blue-grey that neither skin, hair nor a white shirt matches
CLAY = (0.55, 0.55, 0.55, 1.0)
ISLAND_TINTS = np.array([[1.0, 0.25, 0.25], [0.25, 1.0, 0.25], [0.25, 0.4, 1.0], [1.0, 1.0, 0.25]], np.float32)
LENS_MM, SENSOR_MM = 50.0, 36.0

HEAD = ("Hair", "Face_Neck", "Upper_Lip", "Lower_Lip", "Eyeglass")
TRUNK = ("Torso", "Upper_Clothing")
FEET = ("Left_Shoe", "Right_Shoe", "Left_Foot", "Right_Foot", "Left_Sock", "Right_Sock")


@dataclass
class View:
    name: str
    target: np.ndarray  # Blender frame (Z up, the person faces -Y, +X is the person's left)
    yaw_deg: float  # camera direction seen from the target: 0 = in front, 90 = the person's left, 180 = behind
    elevation_deg: float
    half_extent: float  # metres around the target the frame must hold


class Anchors:
    """Points of the avatar's body parts in Blender's frame, by label name."""

    def __init__(self, avatar: Avatar):
        self.positions = to_blender_axes(avatar.mesh.positions).astype(np.float64)
        labels = avatar.mesh.labels
        self.labels = np.zeros(len(self.positions), np.int64) if labels is None else np.rint(labels).astype(np.int64)
        self.faces = avatar.mesh.faces
        self.ids = {name: int(i) for i, name in avatar.label_names.items()}

    def mask(self, names) -> np.ndarray:
        ids = [self.ids[n] for n in names if n in self.ids]
        return np.isin(self.labels, ids)

    def points(self, names) -> np.ndarray:
        return self.positions[self.mask(names)]

    def border(self, a, b) -> np.ndarray:
        """Vertices of the faces that carry both a label of `a` and one of `b`."""
        face_labels_a = self.mask(a)[self.faces]
        face_labels_b = self.mask(b)[self.faces]
        mixed = face_labels_a.any(1) & face_labels_b.any(1)
        return self.positions[np.unique(self.faces[mixed])]


def box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = points.min(0), points.max(0)
    return (lo + hi) / 2, hi - lo


def side_on_yaw(points: np.ndarray, yaws, elevation_deg: float) -> float:
    """The first of `yaws` that sees the points' long axis
    about as side-on as the best of them: a hand held toward the camera is seen from the side."""
    if len(points) < 3:
        return yaws[0]
    axis = np.linalg.svd(points - points.mean(0), full_matrices=False)[2][0]
    along = [abs(float(np.dot(axis, np.asarray(direction(yaw, elevation_deg))))) for yaw in yaws]
    return next(yaw for yaw, a in zip(yaws, along) if a <= min(along) + 0.1)


def plan_views(anchors: Anchors, names) -> tuple[list[View], list[str]]:
    """The named views this avatar can show, and a note per view it cannot (its part is missing)."""
    centre, size = box(anchors.positions)
    height = size[2]
    views, missing = [], []

    def whole(name, yaw):
        views.append(View(name, centre, yaw, 5.0, 0.55 * max(height, size[0], size[1])))

    def part(name, points, yaw, elevation, scale, floor):
        if len(points) < 3:
            missing.append(f"{name}: no vertices labelled for it")
            return
        c, s = box(points)
        views.append(View(name, c, yaw, elevation, max(scale * float(np.linalg.norm(s)), floor)))

    head = anchors.points(HEAD)
    if len(head):  # the head proper: the neck and any hair down the back stay out of its box
        head = head[head[:, 2] > head[:, 2].max() - 0.26]
    for name in names:
        if name == "front":
            whole(name, 0.0)
        elif name == "back":
            whole(name, 180.0)
        elif name == "left":
            whole(name, 90.0)
        elif name == "right":
            whole(name, -90.0)
        elif name == "head_back34":
            part(name, head, 145.0, 15.0, 0.55, 0.12)
        elif name == "hairline":
            line = anchors.border(("Hair",), ("Face_Neck",))
            if len(line) and len(head):  # the front of the head: the border's part facing the camera
                line = line[line[:, 1] < box(head)[0][1]]
            part(name, line, 0.0, 12.0, 0.6, 0.09)
        elif name == "head_side":
            part(name, head, 70.0, 5.0, 0.55, 0.12)
        elif name in ("hand_left", "hand_right"):
            side = "Left" if name == "hand_left" else "Right"
            points = anchors.points((f"{side}_Hand",))
            outward = 1.0 if side == "Left" else -1.0  # the person's left is +X
            yaw = side_on_yaw(points, [outward * y for y in (35.0, 90.0, 0.0)], 10.0)
            part(name, points, yaw, 10.0, 0.75, 0.07)
        elif name == "seam_left":
            trunk = anchors.points(TRUNK)
            if len(trunk):
                c, s = box(trunk)
                flank = trunk[trunk[:, 0] > c[0] + 0.3 * s[0]]
                part(name, flank, 90.0, 25.0, 0.45, 0.15)
            else:
                part(name, trunk, 90.0, 25.0, 0.45, 0.15)
        elif name == "feet":
            part(name, anchors.points(FEET), 30.0, 25.0, 0.6, 0.12)
        else:
            raise SystemExit(f"unknown view {name!r}; the views are {', '.join(VIEW_NAMES)}")
    return views, missing


def set_up_scene(size: int, samples: int, denoise: bool) -> tuple[bpy.types.Object, bpy.types.Object]:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = denoise
    scene.cycles.max_bounces = 3
    scene.render.use_persistent_data = True  # the scene's BVH stays built from one camera to the next
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"  # the albedo as the photo showed it
    world = bpy.data.worlds.new("look_world")
    scene.world = world
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (*BACKGROUND, 1.0)
    background.inputs["Strength"].default_value = 1.0
    camera = bpy.data.objects.new("look_camera", bpy.data.cameras.new("look_camera"))
    camera.data.lens, camera.data.sensor_width = LENS_MM, SENSOR_MM
    camera.data.clip_start = 0.005
    scene.collection.objects.link(camera)
    scene.camera = camera
    sun = bpy.data.objects.new("look_key", bpy.data.lights.new("look_key", "SUN"))
    sun.data.energy = 2.5
    sun.data.angle = math.radians(10.0)
    scene.collection.objects.link(sun)
    return camera, sun


def direction(yaw_deg: float, elevation_deg: float) -> Vector:
    """Unit vector from the target toward the camera (yaw 0: in front of the person, who faces -Y)."""
    yaw, elevation = math.radians(yaw_deg), math.radians(elevation_deg)
    return Vector((math.sin(yaw) * math.cos(elevation), -math.cos(yaw) * math.cos(elevation), math.sin(elevation)))


def place(camera, sun, view: View) -> None:
    half_fov = math.atan(SENSOR_MM / (2 * LENS_MM))
    distance = float(view.half_extent) / math.tan(half_fov) * 1.05
    target = Vector(view.target.tolist())
    camera.location = target + distance * direction(view.yaw_deg, view.elevation_deg)
    camera.rotation_euler = (target - camera.location).to_track_quat("-Z", "Y").to_euler()
    # the key light comes from above and to the camera's left, so relief shows as shading
    sun.rotation_euler = (-direction(view.yaw_deg - 40.0, 45.0)).to_track_quat("-Z", "Y").to_euler()


def clay_material() -> bpy.types.Material:
    material = bpy.data.materials.new("look_clay")
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = CLAY
    bsdf.inputs["Roughness"].default_value = 0.6
    return material


def tint_islands(avatar: Avatar, mesh_object) -> bool:
    """The albedo images tinted by UV island (avatar.json's textures.layout, in its order: front
    red, hidden green; a fused avatar's views red, green, then its unseen island blue), to see
    which island a patch of colour belongs to; False without a layout."""
    layout = (avatar.meta.get("textures") or {}).get("layout") or {}
    if not layout.get("island_width") or len(layout.get("islands") or []) < 2:
        return False
    step = layout["island_width"] + layout.get("gutter", 0)
    nodes = [node for slot in mesh_object.material_slots if slot.material
             for node in slot.material.node_tree.nodes if node.name == "Albedo" and node.image]
    images = {node.image for node in nodes}
    tinted = {}
    for image in images:
        width, height = image.size
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
        pixels = pixels.reshape(height, width, 4)
        island = np.minimum(np.arange(width) // step, len(layout["islands"]) - 1)
        tint = ISLAND_TINTS[island % len(ISLAND_TINTS)]
        pixels[..., :3] = 0.5 * pixels[..., :3] + 0.5 * tint[None]
        # a new image, not the old one changed: the renderer keeps images it has loaded
        tinted[image] = bpy.data.images.new(f"{image.name}_islands", width, height, alpha=True)
        tinted[image].colorspace_settings.name = image.colorspace_settings.name
        tinted[image].pixels.foreach_set(pixels.ravel())
    for node in nodes:
        node.image = tinted[node.image]
    return bool(images)


def label(tile: Image.Image, text: str) -> Image.Image:
    draw = ImageDraw.Draw(tile)
    draw.text((5, 4), text, fill=(0, 0, 0))
    draw.text((4, 3), text, fill=(255, 255, 255))
    return tile


def contact_sheet(rows: list[list[tuple[str, Path]]], path: Path, title: str, columns: int | None = None) -> Path:
    """The tiles, each labelled with its view, `columns` to a row: every textured row of views is
    followed by the same views in clay (and islands), so a view's looks sit one above the other."""
    rows = [row for row in rows if row]
    size = Image.open(rows[0][0][1]).size
    longest = max(len(row) for row in rows)
    columns = min(columns or max(4, -(-longest // 2)), longest)  # default: the views in two bands
    bands = [[row[i:i + columns] for row in rows] for i in range(0, max(len(row) for row in rows), columns)]
    lines = [line for band in bands for line in band if line]
    header = 18
    sheet = Image.new("RGB", (columns * size[0], header + len(lines) * size[1]), (24, 24, 24))
    ImageDraw.Draw(sheet).text((4, 3), title, fill=(255, 255, 255))
    for r, line in enumerate(lines):
        for c, (name, tile_path) in enumerate(line):
            sheet.paste(label(Image.open(tile_path).convert("RGB"), name), (c * size[0], header + r * size[1]))
    sheet.save(path)
    return path


def render_avatar(avatar_dir: Path, out_dir: Path, *, views=VIEW_NAMES, size: int = 320, samples: int = 8,
                  clay: bool = True, islands: bool = False, denoise: bool = False, with_rig: bool = True) -> dict:
    """Render one avatar's views into out_dir; returns {"views": {name: png}, "clay": {...}, "sheet",
    "missing": [notes], "seconds": {...}}."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    avatar = read_avatar(avatar_dir)
    result = import_avatar(avatar, scene=bpy.context.scene, with_rig=with_rig)
    imported = time.perf_counter()
    planned, missing = plan_views(Anchors(avatar), views)
    camera, sun = set_up_scene(size, samples, denoise)
    scene, layer = bpy.context.scene, bpy.context.view_layer
    rendered: dict[str, dict[str, Path]] = {"views": {}, "clay": {}, "islands": {}}
    passes = [("views", None)] + ([("clay", clay_material())] if clay else []) + ([("islands", None)] if islands else [])
    for kind, override in passes:
        layer.material_override = override
        if kind == "islands":
            if not tint_islands(avatar, result.mesh_object):
                missing.append("islands: the avatar has one UV island (or no layout in avatar.json)")
                continue
        for view in planned:
            place(camera, sun, view)
            path = out_dir / (f"{view.name}.png" if kind == "views" else f"{view.name}_{kind}.png")
            scene.render.filepath = str(path)
            bpy.ops.render.render(write_still=True)
            rendered[kind][view.name] = path
    layer.material_override = None
    finished = time.perf_counter()
    rows = [[(n if kind == "views" else f"{n} {kind}", p) for n, p in rendered[kind].items()] for kind in rendered]
    title = f"{avatar_dir}  ({len(result.mesh_object.data.vertices)} vertices)"
    sheet = contact_sheet(rows, out_dir / "sheet.png", title) if rendered["views"] else None
    return {**rendered, "sheet": sheet, "missing": missing,
            "seconds": {"import": imported - started, "render": finished - imported,
                        "renders": sum(len(v) for v in rendered.values())}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("avatars", nargs="+", type=Path, help="avatar directories (sapiens-engine avatar/build output)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the renders: one subfolder per avatar")
    parser.add_argument("--views", default=",".join(VIEW_NAMES), help=f"comma list of {', '.join(VIEW_NAMES)}")
    parser.add_argument("--size", type=int, default=320, help="square render size in pixels (default 320)")
    parser.add_argument("--samples", type=int, default=8, help="Cycles samples per pixel (default 8)")
    parser.add_argument("--no-clay", action="store_true", help="textured renders only (no grey clay row)")
    parser.add_argument("--islands", action="store_true",
                        help="a row with the albedo tinted by UV island (front red, hidden green, a third blue)")
    parser.add_argument("--denoise", action="store_true", help="Cycles' denoiser on (OpenImageDenoise)")
    parser.add_argument("--no-rig", action="store_true", help="import the mesh without its armature")
    args = parser.parse_args(argv)
    views = [v.strip() for v in args.views.split(",") if v.strip()]
    seen: dict[str, int] = {}
    for avatar_dir in args.avatars:
        key = avatar_dir.resolve().name
        seen[key] = seen.get(key, 0) + 1
        folder = args.out / (key if seen[key] == 1 else f"{key}_{seen[key]}")
        done = render_avatar(avatar_dir, folder, views=views, size=args.size, samples=args.samples,
                             clay=not args.no_clay, islands=args.islands, denoise=args.denoise, with_rig=not args.no_rig)
        seconds = done["seconds"]
        for note in done["missing"]:
            print(f"{avatar_dir}: view {note}")
        print(f"{avatar_dir}: {done['sheet']}  import {seconds['import']:.1f} s, {seconds['renders']} renders "
              f"{seconds['render']:.1f} s ({args.size} px, {args.samples} samples), "
              f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
