"""USD export: seconds to write avatar.usdc (and avatar.usdz) of a 300k-vertex rigged avatar,
and animation.usdc of a 300-frame motion.

Usage: .venv/bin/python bench/bench_usd.py [--vertices 300000] [--repeats 3]

Input: a grid mesh of the given vertex count (two triangles per cell, four material slots on
face ranges, 4 skin influences per vertex, normalized) skinned to the Rigify skeleton of a
shared synthetic person (../shared/samples/person_101), 2048-texel textures on disk; the motion
is that skeleton over 300 frames. Prints the median and the best of the repeats; nothing is
asserted (the issue's target: under 1 s for the avatar's .usdc).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def rigify_skeleton(samples: Path):
    from engine.rig.describe import skeleton_description
    from engine.rig.lift import lift_joints
    from engine.rig.skeleton import build_skeleton

    d = samples / "person_101"
    maps = np.load(d / "gt_maps.npz")
    kp = np.array(json.loads((d / "keypoints.json").read_text())["keypoints"], np.float64)
    joints = lift_joints(kp, maps["pointmap"], maps["seg"], maps["K"], mask=maps["mask"])
    positions = joints.positions * [1, -1, -1]
    skeleton = build_skeleton({n: positions[i] for i, n in enumerate(joints.names)}, convention="rigify", height=joints.height)
    return skeleton_description(skeleton)


def avatar_scene(n_vertices: int, skeleton, textures_dir: Path):
    from engine.formats.scene import Material, Mesh, Scene, Skin, Texture
    from engine.formats.textures import TEXTURE_FILES

    side = int(np.sqrt(n_vertices))
    rows = n_vertices // side
    r, c = np.divmod(np.arange(rows * side), side)
    vertices = np.stack([c / side - 0.5, r / rows * 1.8, 0.1 * np.sin(c / 20.0)], 1).astype(np.float32)
    cell = np.flatnonzero((r < rows - 1) & (c < side - 1))
    a, b, d, e = cell, cell + 1, cell + side, cell + side + 1
    faces = np.concatenate([np.stack([a, b, e], 1), np.stack([a, e, d], 1)]).astype(np.int64)
    normals = np.tile(np.float32([0, 0, 1]), (len(vertices), 1))
    uv = np.stack([c / side, r / rows], 1).astype(np.float32)
    tangents = np.tile(np.float32([1, 0, 0, 1]), (len(vertices), 1))
    labels = (r * 4 // rows).astype(np.uint8)
    mesh = Mesh(vertices, normals, faces, uv, tangents, labels, label_names=["a", "b", "c", "d"])
    rng = np.random.default_rng(0)
    joints = rng.integers(0, len(skeleton.names), (len(vertices), 4)).astype(np.uint16)
    weights = rng.random((len(vertices), 4)).astype(np.float32)
    weights /= weights.sum(1, keepdims=True)
    slots = np.array_split(np.arange(len(faces)), 4)
    materials = [Material(f"slot{k}", faces[idx], face_indices=idx, base_color="albedo", normal="normal") for k, idx in enumerate(slots)]
    (textures_dir / "textures").mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for key in ("albedo_png", "normal_png"):
        Image.fromarray(rng.integers(0, 255, (2048, 2048, 3), dtype=np.uint8)).save(textures_dir / TEXTURE_FILES[key])
    textures = [Texture("albedo", TEXTURE_FILES["albedo_png"], "sRGB"), Texture("normal", TEXTURE_FILES["normal_png"], "raw")]
    return Scene("avatar", mesh=mesh, materials=materials, textures=textures, skeleton=skeleton,
                 skin=Skin(joints, weights), metadata={"format": "bench"})


def motion_scene(skeleton, frames: int):
    from engine.formats.scene import Animation, Scene

    rng = np.random.default_rng(1)
    rotations = np.repeat(skeleton.rest_local[None, :, :3, :3], frames, axis=0)
    angles = rng.normal(0, 0.1, (frames, len(skeleton.names)))
    cos, sin = np.cos(angles), np.sin(angles)
    turn = np.zeros((frames, len(skeleton.names), 3, 3))
    turn[..., 0, 0], turn[..., 0, 2], turn[..., 1, 1], turn[..., 2, 0], turn[..., 2, 2] = cos, sin, 1, -sin, cos
    translations = np.repeat(skeleton.rest_local[None, :, :3, 3], frames, axis=0)
    animation = Animation(30.0, rotations @ turn, translations,
                          frame_data={"filled": np.zeros(frames, bool), "confidence": rng.random(frames)})
    return Scene("motion", skeleton=skeleton, animation=animation, metadata={"format": "bench"})


def timed(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples")
    args = parser.parse_args()
    from engine.formats import WRITERS

    import pxr.UsdSkel  # noqa: F401 - loaded once, outside the timings (a process pays it on first use)

    skeleton = rigify_skeleton(args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        scene = avatar_scene(args.vertices, skeleton, out)
        print(f"avatar: {len(scene.mesh.vertices)} vertices, {len(scene.mesh.faces)} triangles, "
              f"{len(skeleton.names)} joints, {len(scene.materials)} material slots")
        for name in ("usd", "usdz", "glb"):
            if name == "glb":
                for t in scene.textures:
                    t.encoded = (out / t.path).read_bytes()
            seconds = timed(lambda: WRITERS[name].avatar(scene, out), args.repeats)
            print(f"  {name:5s} median {np.median(seconds):.3f} s, best {min(seconds):.3f} s")
        motion = motion_scene(skeleton, args.frames)
        seconds = timed(lambda: WRITERS["usd"].motion(motion, out), args.repeats)
        print(f"motion: {args.frames} frames x {len(skeleton.names)} joints: usd median {np.median(seconds):.3f} s, "
              f"best {min(seconds):.3f} s")


if __name__ == "__main__":
    main()
