"""Renders an avatar posed by its own rig: both upper arms raised sideways (default 60 degrees from
the photo's pose, about the front-back axis), seen from behind, behind three-quarter and in front
(Cycles CPU, through the add-on's importer, as bench/render_avatar.py renders the rest pose).

Usage: .venv/bin/python bench/render_posed.py AVATAR_DIR --out DIR [--angle 60] [--size 320]

What it is for: looking at the skin weights as an animator meets them. The avatar must be rigged
(the default build is; a Rigify-convention skeleton: bones upper_arm.L / upper_arm.R). Nothing is
asserted; the PNGs are DIR/back.png, back34.png, front.png.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import bpy  # noqa: E402
from mathutils import Matrix  # noqa: E402

import render_avatar as ra  # noqa: E402


def raise_arms(armature, degrees: float) -> None:
    """Both upper arms turned `degrees` up, sideways, about the world front-back axis (Blender's Y)."""
    for side, sign in (("L", -1.0), ("R", 1.0)):
        bone = armature.pose.bones.get(f"upper_arm.{side}")
        if bone is None:
            raise SystemExit(f"{armature.name}: no bone upper_arm.{side} (a Rigify-convention rig is needed)")
        rest = armature.matrix_world @ bone.bone.matrix_local
        turn = Matrix.Rotation(math.radians(sign * degrees), 4, "Y")
        bone.rotation_mode = "QUATERNION"
        bone.rotation_quaternion = (rest.inverted() @ turn @ rest).to_quaternion()
    bpy.context.view_layer.update()


def render_posed(avatar_dir: Path, out_dir: Path, *, degrees: float = 60.0, size: int = 320) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    avatar = ra.read_avatar(avatar_dir)
    imported = ra.import_avatar(avatar, scene=bpy.context.scene, with_rig=True)
    if imported.armature_object is None:
        raise SystemExit(f"{avatar_dir}: not rigged (build it with --rig rigify, the default)")
    raise_arms(imported.armature_object, degrees)
    centre, extent = ra.box(ra.Anchors(avatar).positions)
    height = float(extent[2])
    camera, sun = ra.set_up_scene(size, 8, False)
    paths = []
    for name, yaw, lift, half in (("back", 180, 0.0, 0.55), ("back34", 150, 0.2, 0.3), ("front", 0, 0.0, 0.55)):
        target = centre + np.array([0.0, 0.0, lift * height])
        ra.place(camera, sun, ra.View(name, target, yaw, 10.0, half * height))
        path = out_dir / f"{name}.png"
        bpy.context.scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("avatar", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--angle", type=float, default=60.0, help="degrees the upper arms turn up (default 60)")
    parser.add_argument("--size", type=int, default=320)
    args = parser.parse_args()
    for path in render_posed(args.avatar, args.out, degrees=args.angle, size=args.size):
        print(path)


if __name__ == "__main__":
    main()
