"""engine.formats: the WRITERS table, the scene description's checks, and what the motion writers
put in their files read back by an independent reader (pygltflib; BVH parsed here)."""

from __future__ import annotations

import threading

import numpy as np
import pygltflib
import pytest

from engine.errors import EngineError
from engine.formats import AVATAR_DEFAULT, MOTION_DEFAULT, WRITERS, parse_formats
from engine.formats.scene import Animation, Scene, Skeleton, matrix_to_quaternion


def rotation(axis, angle):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def chain_scene(frames: int = 9) -> Scene:
    """A 4-joint skeleton (root, spine, a fork of two arms) rotating and travelling; frame 0 is the rest."""
    names = ["root", "spine.001", "arm.L", "arm.R"]
    parents = np.array([-1, 0, 1, 1])
    rest_local = np.tile(np.eye(4), (4, 1, 1))
    rest_local[0, :3, 3] = [0.1, 1.0, 0.0]
    rest_local[1, :3, 3] = [0.0, 0.3, 0.0]
    rest_local[1, :3, :3] = rotation([0, 0, 1], 0.2)
    rest_local[2, :3, 3] = [0.2, 0.25, 0.0]
    rest_local[2, :3, :3] = rotation([0, 0, 1], -1.2)
    rest_local[3, :3, 3] = [-0.2, 0.25, 0.05]
    rest_local[3, :3, :3] = rotation([0, 0, 1], 1.2)
    bind = np.zeros_like(rest_local)
    for b, p in enumerate(parents):
        bind[b] = rest_local[b] if p < 0 else bind[p] @ rest_local[b]
    tails = bind[:, :3, 3] + bind[:, :3, 1] * 0.2
    skeleton = Skeleton(names, parents, rest_local, bind, tails=tails, name="test")
    t = np.arange(frames)
    rotations = np.repeat(rest_local[None, :, :3, :3], frames, axis=0).copy()
    for k in range(frames):
        rotations[k, 1] = rest_local[1, :3, :3] @ rotation([1, 0, 0], 0.3 * np.sin(k / 2))
        rotations[k, 2] = rest_local[2, :3, :3] @ rotation([0, 1, 1], 0.8 * np.sin(k / 3))
        rotations[k, 0] = rotation([0, 1, 0], 0.1 * k)
    translations = np.repeat(rest_local[None, :, :3, 3], frames, axis=0).copy()
    translations[:, 0] += (0.05 * t)[:, None] * np.array([1.0, 0.0, 0.5])
    animation = Animation(24.0, rotations, translations, frame_data={"filled": np.zeros(frames, bool)})
    return Scene("motion", skeleton=skeleton, animation=animation, metadata={"sapiens": {"format": "test"}})


def test_formats_are_chosen_from_one_table():
    assert parse_formats(None, "avatar") == AVATAR_DEFAULT and parse_formats(None, "motion") == MOTION_DEFAULT
    assert parse_formats("GLB, obj,glb", "avatar") == ("glb", "obj")
    # one `formats` option serves builds and motions: each keeps the formats that hold it
    assert parse_formats(["glb", "bvh", "ply"], "avatar") == ("glb", "ply")
    assert parse_formats(["glb", "bvh", "ply"], "motion") == ("glb", "bvh")
    with pytest.raises(EngineError, match="unknown format fbx"):
        parse_formats("glb,fbx", "avatar")
    with pytest.raises(EngineError, match="none of the formats bvh holds avatars"):
        parse_formats("bvh", "avatar")
    with pytest.raises(EngineError, match="does not hold motions"):
        WRITERS["ply"].motion(chain_scene(), ".")


def test_the_option_declaration_offers_exactly_the_writers():
    options = pytest.importorskip("engine.options")
    assert set(options.BY_NAME["formats"].choices) == set(WRITERS)
    assert tuple(options.BY_NAME["formats"].default) == AVATAR_DEFAULT
    assert tuple(options.BY_NAME["formats"].default_for("animate")) == MOTION_DEFAULT


def test_skeleton_refuses_a_child_before_its_parent():
    scene = chain_scene()
    s = scene.skeleton
    with pytest.raises(EngineError, match="parent must come before"):
        Skeleton(s.names, np.array([-1, 2, 0, 1]), s.rest_local, s.bind_world)


def _glb_world(path, frame: int) -> dict[str, np.ndarray]:
    """Every node's world matrix at `frame`, from the glb's rest TRS and its animation keys."""
    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()

    def accessor(i):
        a = gltf.accessors[i]
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[a.type]
        v = gltf.bufferViews[a.bufferView]
        return np.frombuffer(blob, np.float32, a.count * width, v.byteOffset + (a.byteOffset or 0)).reshape(a.count, width)

    trs = {i: [np.array(n.translation or [0, 0, 0], np.float64), np.array(n.rotation or [0, 0, 0, 1], np.float64)]
           for i, n in enumerate(gltf.nodes)}
    for channel in gltf.animations[0].channels:
        values = accessor(gltf.animations[0].samplers[channel.sampler].output)
        trs[channel.target.node][0 if channel.target.path == "translation" else 1] = values[frame].astype(np.float64)

    def matrix(i):
        (x, y, z), (qx, qy, qz, qw) = trs[i][0], trs[i][1]
        m = np.eye(4)
        m[:3, :3] = [[1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
                     [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
                     [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)]]
        m[:3, 3] = [x, y, z]
        return m

    parent = {c: i for i, n in enumerate(gltf.nodes) for c in n.children}
    world = {}

    def resolve(i):
        if i not in world:
            world[i] = matrix(i) if i not in parent else resolve(parent[i]) @ matrix(i)
        return world[i]

    return {n.name: resolve(i) for i, n in enumerate(gltf.nodes)}


def test_motion_glb_reproduces_the_joint_frames(tmp_path):
    scene = chain_scene()
    files = WRITERS["glb"].motion(scene, tmp_path)
    assert files == {"gltf": "animation.glb"}
    world = scene.animation.world(scene.skeleton.parents)
    for frame in (0, 4, 8):
        read = _glb_world(tmp_path / files["gltf"], frame)
        for b, name in enumerate(scene.skeleton.names):
            np.testing.assert_allclose(read[name], world[frame, b], atol=2e-6)
    doc = pygltflib.GLTF2().load(str(tmp_path / files["gltf"]))
    assert doc.asset.extras == {"sapiens": {"format": "test"}}
    assert [doc.nodes[j].name for j in doc.skins[0].joints] == scene.skeleton.names


def _parse_bvh(text: str):
    """(joint names, parents, offsets, channel rows) of a BVH, read plainly."""
    names, parents, offsets, stack = [], [], [], []
    lines = iter(text.splitlines())
    for line in lines:
        words = line.split()
        if words[0] in ("ROOT", "JOINT"):
            names.append(words[1])
            parents.append(stack[-1] if stack else -1)
        elif words[0] == "End":
            next(lines), next(lines), next(lines)  # { OFFSET }
        elif words[0] == "OFFSET":
            offsets.append([float(v) for v in words[1:]])
        elif words[0] == "{" and names:
            stack.append(len(names) - 1)
        elif words[0] == "}":
            stack.pop()
        elif words[0] == "Frame" and words[1] == "Time:":
            break
    rows = np.array([[float(v) for v in line.split()] for line in lines])
    return names, parents, np.array(offsets), rows


def test_bvh_reproduces_the_joint_positions(tmp_path):
    scene = chain_scene()
    files = WRITERS["bvh"].motion(scene, tmp_path)
    names, parents, offsets, rows = _parse_bvh((tmp_path / files["bvh"]).read_text())
    assert names == scene.skeleton.names and len(rows) == scene.animation.frames
    world = scene.animation.world(scene.skeleton.parents)
    eul = np.radians(rows[:, 3:].reshape(len(rows), len(names), 3))
    for frame in (0, 5, 8):
        rot, pos = [], []
        for b, p in enumerate(parents):
            z, x, y = eul[frame, b]
            local = rotation([0, 0, 1], z) @ rotation([1, 0, 0], x) @ rotation([0, 1, 0], y)
            rot.append(local if p < 0 else rot[p] @ local)
            pos.append(rows[frame, :3] if p < 0 else pos[p] + rot[p] @ offsets[b])
        np.testing.assert_allclose(np.array(pos), world[frame, :, :3, 3], atol=2e-5)


def test_quaternions_round_trip_every_rotation():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(500, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.sign(q[:, 3:])
    x, y, z, w = q.T
    R = np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                  np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                  np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)
    np.testing.assert_allclose(matrix_to_quaternion(R), q, atol=1e-9)


def test_heap_settings_survive_overlapping_builds(monkeypatch):
    """Two builds at once (the server runs jobs side by side): the first to start sets the heap
    settings, the first to finish leaves them, the last restores and trims."""
    from engine.avatar import heap

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append(("mallopt", param, value))

        def malloc_trim(self, pad):
            calls.append(("trim",))

    monkeypatch.setattr(heap, "_glibc", lambda: FakeLibc())
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with heap.reuse_freed_arrays():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second():
        first_in.wait(5)
        with heap.reuse_freed_arrays():
            second_in.set()
            first_out.wait(5)
            assert heap._active == 1 and ("trim",) not in calls  # still inside: nothing restored
            assert calls[-1] == ("mallopt", heap._M_TRIM_THRESHOLD, heap.HEAP_BLOCK_BYTES)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert heap._active == 0
    assert calls == [
        ("mallopt", heap._M_MMAP_THRESHOLD, heap.HEAP_BLOCK_BYTES),
        ("mallopt", heap._M_TRIM_THRESHOLD, heap.HEAP_BLOCK_BYTES),
        ("mallopt", heap._M_MMAP_THRESHOLD, heap._SETTLED_MMAP_THRESHOLD),
        ("mallopt", heap._M_TRIM_THRESHOLD, 2 * heap._SETTLED_MMAP_THRESHOLD),
        ("trim",),
    ]


def small_avatar_scene(tmp_path) -> Scene:
    """A two-triangle avatar, skinned to the chain skeleton, its textures already on disk."""
    from engine.formats.scene import Material, Mesh, Skin
    from engine.formats.textures import avatar_textures, write_textures

    vertices = np.float32([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    mesh = Mesh(vertices, np.tile(np.float32([0, 0, 1]), (4, 1)), faces, vertices[:, :2].copy(),
                np.tile(np.float32([1, 0, 0, 1]), (4, 1)), np.uint8([1, 1, 2, 2]), label_names=["a", "b", "c"])
    skeleton = chain_scene().skeleton
    skin = Skin(np.uint16([[0, 1, 0, 0]] * 4), np.float32([[0.5, 0.5, 0, 0]] * 4))
    materials = [Material("front", faces[:1], face_indices=np.array([0]), base_color="albedo", normal="normal"),
                 Material("back.1", faces[1:], face_indices=np.array([1]), base_color="albedo", normal="normal")]
    scene = Scene("avatar", mesh=mesh, materials=materials, textures=avatar_textures(normal_map=True),
                  skeleton=skeleton, skin=skin, metadata={"format": "test"})
    scene.texture("albedo").pixels = np.full((4, 4, 3), 200, np.uint8)
    scene.texture("normal").pixels = np.full((4, 4, 3), (128, 128, 255), np.uint8)
    write_textures(scene, tmp_path, np.full((4, 4, 3), 0.5, np.float32))
    return scene


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_writer_writes_every_kind_it_claims(name, tmp_path):
    writer = WRITERS[name]
    scenes = {"avatar": small_avatar_scene(tmp_path), "motion": chain_scene()}
    for kind in writer.kinds:
        files = writer.write(kind, scenes[kind], tmp_path)
        assert files, f"{name} wrote nothing for a {kind}"
        for path in files.values():
            assert (tmp_path / path).is_file() and (tmp_path / path).stat().st_size > 0
    for kind in set(scenes) - set(writer.kinds):
        with pytest.raises(EngineError, match=f"does not hold {kind}s"):
            writer.write(kind, scenes[kind], tmp_path)
