"""Build binary glTF 2.0 files (.glb) from numpy arrays, on top of pygltflib.

`GltfBuilder` owns one binary buffer and appends to it: every `add_*` method returns the index
of what it created (accessor, image, texture, material, mesh, node, skin, animation), so pieces
can refer to each other the way glTF does. `write_avatar` and `write_motion` (the bottom of
this module) turn an engine.formats.scene.Scene into avatar.glb / animation.glb with it: the
mesh, its material slots and textures, joint nodes, a skin (JOINTS_0 / WEIGHTS_0 on the
primitives, inverse bind matrices) and animations.

Array conventions:
- Vertex data is one row per vertex (N x k); matrices are N x 4 x 4 (or 3 x 3, 2 x 2) in the
  usual math layout (`M @ p`); the builder stores them column-major as glTF requires.
- float64 is stored as float32, integer arrays as the unsigned type of the same width
  (negative values are refused); pass uint8 / uint16 yourself to store smaller types.
- Quaternions are (x, y, z, w) as in glTF.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pygltflib as gl

from engine.formats.scene import Scene, Skeleton, Skin, continuous_quaternions, matrix_to_quaternion

# numpy dtype -> glTF componentType
_COMPONENT_TYPES = {
    np.dtype(np.int8): gl.BYTE,
    np.dtype(np.uint8): gl.UNSIGNED_BYTE,
    np.dtype(np.int16): gl.SHORT,
    np.dtype(np.uint16): gl.UNSIGNED_SHORT,
    np.dtype(np.uint32): gl.UNSIGNED_INT,
    np.dtype(np.float32): gl.FLOAT,
}

# trailing array shape -> glTF accessor type
_ACCESSOR_TYPES = {
    (): gl.SCALAR,
    (2,): gl.VEC2,
    (3,): gl.VEC3,
    (4,): gl.VEC4,
    (2, 2): gl.MAT2,
    (3, 3): gl.MAT3,
    (4, 4): gl.MAT4,
}

ARRAY_BUFFER = gl.ARRAY_BUFFER  # vertex attributes
ELEMENT_ARRAY_BUFFER = gl.ELEMENT_ARRAY_BUFFER  # triangle indices

# animation channel path -> the shape one keyframe value has
_ANIMATION_PATH_WIDTH = {"translation": 3, "rotation": 4, "scale": 3}


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _as_storable(array: np.ndarray) -> np.ndarray:
    """The array in a dtype glTF can store (see the module docstring for the rules)."""
    a = np.asarray(array)
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        return a.astype(np.float32, copy=False)
    if a.dtype in _COMPONENT_TYPES:
        return a
    if a.dtype.kind in "iu":
        if a.size and a.min() < 0:
            raise ValueError(f"cannot store negative {a.dtype} values in an unsigned glTF accessor")
        if a.size and a.max() > np.iinfo(np.uint32).max:
            raise ValueError("integer values above 2**32 - 1 do not fit a glTF accessor")
        return a.astype(np.uint32)
    raise TypeError(f"glTF cannot store arrays of dtype {a.dtype}")


class GltfBuilder:
    """Accumulates a glTF document and its single binary buffer; `save()` writes a .glb.

    The underlying `pygltflib.GLTF2` is `builder.gltf` for anything the helpers do not cover
    (its lists are the glTF arrays; indices returned here index into them).
    """

    def __init__(self, *, generator: str = "sapiens-blender engine", extras: dict | None = None):
        self.gltf = gl.GLTF2(asset=gl.Asset(version="2.0", generator=generator))
        if extras:
            self.gltf.asset.extras = dict(extras)
        self.gltf.scenes = [gl.Scene(nodes=[])]
        self.gltf.scene = 0
        self._blob = bytearray()

    # ---- raw data ----------------------------------------------------------------------
    def add_buffer_view(self, data: bytes, *, target: int | None = None, byte_stride: int | None = None) -> int:
        """Append bytes to the buffer (start aligned to 4 bytes) and return the buffer view index."""
        offset = _align4(len(self._blob))
        self._blob.extend(b"\x00" * (offset - len(self._blob)))
        self._blob.extend(data)
        view = gl.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target, byteStride=byte_stride)
        self.gltf.bufferViews.append(view)
        return len(self.gltf.bufferViews) - 1

    def add_accessor(
        self,
        array: np.ndarray,
        *,
        target: int | None = None,
        normalized: bool = False,
        minmax: bool = False,
        name: str | None = None,
    ) -> int:
        """Store an N x ... array as one accessor (own buffer view) and return its index.

        target: ARRAY_BUFFER for vertex attributes, ELEMENT_ARRAY_BUFFER for indices, None for
        other data (inverse bind matrices, animation keyframes). Vertex attributes whose
        element is not a multiple of 4 bytes (e.g. uint8 VEC3) are padded with a byteStride,
        as the spec requires. normalized: integer data read as [0, 1] / [-1, 1] (e.g. uint8
        weights). minmax: record per-component min/max (required for POSITION and for animation
        sampler inputs).
        """
        a = _as_storable(array)
        if a.ndim == 0 or a.shape[0] == 0:
            raise ValueError("an accessor needs at least one element")
        element_shape = tuple(a.shape[1:])
        if element_shape not in _ACCESSOR_TYPES:
            raise ValueError(f"no glTF accessor type for elements of shape {element_shape}")
        if normalized and a.dtype.kind == "f":
            raise ValueError("only integer accessors can be normalized")
        accessor_type = _ACCESSOR_TYPES[element_shape]
        count = a.shape[0]
        if len(element_shape) == 2:
            if a.dtype.itemsize < 4:
                raise ValueError("matrix accessors with 1- or 2-byte components are not supported")
            a = np.swapaxes(a, 1, 2)  # glTF matrices are column-major
        a = np.ascontiguousarray(a)
        flat = a.reshape(count, -1)

        element_bytes = flat.shape[1] * a.dtype.itemsize
        byte_stride = None
        if target == ARRAY_BUFFER and element_bytes % 4:
            byte_stride = _align4(element_bytes)
            padded = np.zeros((count, byte_stride), np.uint8)
            padded[:, :element_bytes] = flat.view(np.uint8).reshape(count, element_bytes)
            data = padded.tobytes()
        else:
            data = flat.tobytes()
        view = self.add_buffer_view(data, target=target, byte_stride=byte_stride)

        accessor = gl.Accessor(
            bufferView=view,
            byteOffset=0,
            componentType=_COMPONENT_TYPES[a.dtype],
            count=count,
            type=accessor_type,
            normalized=True if normalized else None,
            name=name,
        )
        if minmax:
            cast = float if a.dtype.kind == "f" else int
            accessor.min = [cast(v) for v in flat.min(axis=0)]
            accessor.max = [cast(v) for v in flat.max(axis=0)]
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1

    # ---- images, textures, materials ---------------------------------------------------
    def add_image(self, data: bytes, mime: str = "image/png", *, name: str | None = None) -> int:
        """Embed an encoded image (PNG or JPEG bytes) in the buffer; returns the image index."""
        if mime not in ("image/png", "image/jpeg"):
            raise ValueError(f"glTF core embeds only PNG and JPEG images, not {mime}")
        view = self.add_buffer_view(bytes(data))
        self.gltf.images.append(gl.Image(bufferView=view, mimeType=mime, name=name))
        return len(self.gltf.images) - 1

    def add_sampler(
        self,
        *,
        mag_filter: int = gl.LINEAR,
        min_filter: int = gl.LINEAR_MIPMAP_LINEAR,
        wrap_s: int = gl.CLAMP_TO_EDGE,
        wrap_t: int = gl.CLAMP_TO_EDGE,
    ) -> int:
        self.gltf.samplers.append(gl.Sampler(magFilter=mag_filter, minFilter=min_filter, wrapS=wrap_s, wrapT=wrap_t))
        return len(self.gltf.samplers) - 1

    def add_texture(self, image: int, *, sampler: int | None = None, name: str | None = None) -> int:
        """A texture reading `image` through `sampler` (a clamped, mipmapped linear one by default)."""
        if sampler is None:
            sampler = self.add_sampler()
        self.gltf.textures.append(gl.Texture(source=image, sampler=sampler, name=name))
        return len(self.gltf.textures) - 1

    def add_material(
        self,
        name: str,
        base_color_texture: int | None = None,
        normal_texture: int | None = None,
        *,
        base_color_factor: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        metallic: float = 0.0,
        roughness: float = 0.6,
        normal_scale: float = 1.0,
        double_sided: bool = False,
        texcoord: int = 0,
        extras: dict | None = None,
    ) -> int:
        """A PBR metallic-roughness material; textures are texture indices (add_texture)."""
        pbr = gl.PbrMetallicRoughness(
            baseColorFactor=[float(c) for c in base_color_factor],
            metallicFactor=float(metallic),
            roughnessFactor=float(roughness),
        )
        if base_color_texture is not None:
            pbr.baseColorTexture = gl.TextureInfo(index=base_color_texture, texCoord=texcoord)
        material = gl.Material(name=name, pbrMetallicRoughness=pbr, doubleSided=double_sided, extras=extras or {})
        if normal_texture is not None:
            material.normalTexture = gl.NormalMaterialTexture(index=normal_texture, texCoord=texcoord, scale=float(normal_scale))
        self.gltf.materials.append(material)
        return len(self.gltf.materials) - 1

    # ---- meshes ------------------------------------------------------------------------
    def add_mesh(
        self,
        name: str,
        positions: np.ndarray,
        normals: np.ndarray | None = None,
        uv: np.ndarray | None = None,
        indices: np.ndarray | None = None,
        *,
        tangents: np.ndarray | None = None,
        extra_attributes: Mapping[str, np.ndarray] | None = None,
        material: int | None = None,
        submeshes: Iterable[tuple[np.ndarray, int | None]] | None = None,
        extras: dict | None = None,
    ) -> int:
        """A triangle mesh; returns the mesh index.

        positions/normals: V x 3, uv: V x 2 (glTF convention: origin at the image's top left,
        v down), tangents: V x 4 (xyz, handedness w = +-1). indices: F x 3 triangles with
        `material`, or `submeshes`: (F_i x 3 triangles, material) pairs, one primitive each
        (material slots). All primitives share the same vertex accessors. extra_attributes:
        more per-vertex attributes, e.g. {"_LABEL": V floats}; names of application-specific
        attributes must start with an underscore (glTF rule).
        """
        positions = np.asarray(positions, np.float32)
        n_vertices = len(positions)
        attributes = {"POSITION": self.add_accessor(positions, target=ARRAY_BUFFER, minmax=True)}
        named = {"NORMAL": normals, "TEXCOORD_0": uv, "TANGENT": tangents}
        named.update(extra_attributes or {})
        for attribute, values in named.items():
            if values is None:
                continue
            if len(values) != n_vertices:
                raise ValueError(f"{attribute} has {len(values)} rows for {n_vertices} vertices")
            attributes[attribute] = self.add_accessor(np.asarray(values), target=ARRAY_BUFFER)

        if submeshes is None:
            if indices is None:
                raise ValueError("add_mesh needs indices or submeshes")
            submeshes = [(indices, material)]
        elif indices is not None:
            raise ValueError("give either indices (one primitive) or submeshes, not both")
        index_dtype = np.uint16 if n_vertices <= np.iinfo(np.uint16).max else np.uint32
        primitives = []
        for triangles, slot_material in submeshes:
            triangles = np.asarray(triangles).reshape(-1)
            if triangles.size == 0:
                continue
            if triangles.min() < 0 or triangles.max() >= n_vertices:
                raise ValueError("triangle indices out of range of the vertices")
            accessor = self.add_accessor(triangles.astype(index_dtype), target=ELEMENT_ARRAY_BUFFER)
            primitives.append(
                gl.Primitive(attributes=gl.Attributes(**attributes), indices=accessor, material=slot_material, mode=gl.TRIANGLES)
            )
        if not primitives:
            raise ValueError(f"mesh {name!r} has no triangles")
        self.gltf.meshes.append(gl.Mesh(name=name, primitives=primitives, extras=extras or {}))
        return len(self.gltf.meshes) - 1

    def add_primitive_attribute(self, mesh: int, attribute: str, values: np.ndarray, *, normalized: bool = False) -> int:
        """Add one per-vertex attribute (e.g. JOINTS_0, WEIGHTS_0) to every primitive of `mesh`.

        The primitives share their vertices, so one accessor serves all of them; returns it.
        """
        primitives = self.gltf.meshes[mesh].primitives
        n_vertices = self.gltf.accessors[primitives[0].attributes.POSITION].count
        if len(values) != n_vertices:
            raise ValueError(f"{attribute} has {len(values)} rows for {n_vertices} vertices")
        accessor = self.add_accessor(np.asarray(values), target=ARRAY_BUFFER, normalized=normalized)
        for primitive in primitives:
            setattr(primitive.attributes, attribute, accessor)
        return accessor

    def mesh_vertex_count(self, mesh: int) -> int:
        return self.gltf.accessors[self.gltf.meshes[mesh].primitives[0].attributes.POSITION].count

    # ---- scene graph -------------------------------------------------------------------
    def add_node(
        self,
        name: str | None = None,
        *,
        mesh: int | None = None,
        skin: int | None = None,
        children: Sequence[int] = (),
        translation: Sequence[float] | None = None,
        rotation: Sequence[float] | None = None,
        scale: Sequence[float] | None = None,
        matrix: np.ndarray | None = None,
        root: bool = False,
        extras: dict | None = None,
    ) -> int:
        """A node; returns its index. root=True puts it in the default scene.

        Transform: either translation / rotation (quaternion x, y, z, w) / scale, or a 4 x 4
        `matrix` (math layout, stored column-major). A node may be a child of only one parent
        and a child must not also be a scene root.
        """
        node = gl.Node(name=name, mesh=mesh, skin=skin, children=[int(c) for c in children], extras=extras or {})
        if matrix is not None:
            if translation is not None or rotation is not None or scale is not None:
                raise ValueError("a node has a matrix or TRS, not both")
            node.matrix = [float(v) for v in np.asarray(matrix, np.float64).T.reshape(-1)]
        if translation is not None:
            node.translation = [float(v) for v in translation]
        if rotation is not None:
            node.rotation = [float(v) for v in rotation]
        if scale is not None:
            node.scale = [float(v) for v in scale]
        self.gltf.nodes.append(node)
        index = len(self.gltf.nodes) - 1
        if root:
            self.gltf.scenes[self.gltf.scene].nodes.append(index)
        return index

    def add_child(self, parent: int, child: int) -> None:
        self.gltf.nodes[parent].children.append(int(child))

    def add_root(self, node: int) -> None:
        """Put an existing node in the default scene."""
        self.gltf.scenes[self.gltf.scene].nodes.append(int(node))

    def set_node_skin(self, node: int, skin: int) -> None:
        self.gltf.nodes[node].skin = int(skin)

    # ---- skins and animation -----------------------------------------------------------
    def add_skin(
        self,
        joints: Sequence[int],
        inverse_bind_matrices: np.ndarray,
        *,
        skeleton: int | None = None,
        name: str | None = None,
    ) -> int:
        """A skin over joint nodes (in JOINTS_0 index order) with J x 4 x 4 inverse bind matrices.

        Attach it with set_node_skin(mesh_node, skin) (or add_node(skin=...)) and give the mesh
        JOINTS_0 / WEIGHTS_0 with add_primitive_attribute.
        """
        matrices = np.asarray(inverse_bind_matrices, np.float32)
        if matrices.shape != (len(joints), 4, 4):
            raise ValueError(f"need {len(joints)} x 4 x 4 inverse bind matrices, got {matrices.shape}")
        accessor = self.add_accessor(matrices)
        self.gltf.skins.append(
            gl.Skin(joints=[int(j) for j in joints], inverseBindMatrices=accessor, skeleton=skeleton, name=name)
        )
        return len(self.gltf.skins) - 1

    def add_animation(self, name: str | None = None) -> int:
        """An empty animation; fill it with add_animation_channel."""
        self.gltf.animations.append(gl.Animation(name=name, samplers=[], channels=[]))
        return len(self.gltf.animations) - 1

    def add_times(self, times: np.ndarray) -> int:
        """A keyframe-time accessor (seconds, increasing) that several channels can share."""
        times = np.asarray(times, np.float32).reshape(-1)
        if times.size > 1 and np.any(np.diff(times) <= 0):
            raise ValueError("animation times must increase strictly")
        return self.add_accessor(times, minmax=True)

    def add_animation_channel(
        self,
        animation: int,
        node: int,
        path: str,
        times: np.ndarray | int,
        values: np.ndarray,
        *,
        interpolation: str = "LINEAR",
    ) -> int:
        """Animate `node`'s translation / rotation (x, y, z, w quaternions) / scale.

        times: K seconds, or an accessor from add_times to share; values: K x 3 or K x 4
        (3K / ... rows for CUBICSPLINE, as glTF lays them out). Returns the channel index.
        """
        if path not in _ANIMATION_PATH_WIDTH:
            raise ValueError(f"animation path must be one of {sorted(_ANIMATION_PATH_WIDTH)}, not {path!r}")
        values = np.asarray(values, np.float32)
        if values.ndim != 2 or values.shape[1] != _ANIMATION_PATH_WIDTH[path]:
            raise ValueError(f"{path} keyframes must be K x {_ANIMATION_PATH_WIDTH[path]}, got {values.shape}")
        time_accessor = times if isinstance(times, (int, np.integer)) else self.add_times(times)
        n_keys = self.gltf.accessors[int(time_accessor)].count
        expected = 3 * n_keys if interpolation == "CUBICSPLINE" else n_keys
        if len(values) != expected:
            raise ValueError(f"{len(values)} {path} keyframes for {n_keys} times ({interpolation})")
        anim = self.gltf.animations[animation]
        anim.samplers.append(
            gl.AnimationSampler(input=int(time_accessor), output=self.add_accessor(values), interpolation=interpolation)
        )
        anim.channels.append(
            gl.AnimationChannel(sampler=len(anim.samplers) - 1, target=gl.AnimationChannelTarget(node=node, path=path))
        )
        return len(anim.channels) - 1

    # ---- output ------------------------------------------------------------------------
    def _container_head(self) -> bytes:
        """The .glb header, JSON chunk and BIN chunk header that precede the binary buffer.

        The same bytes pygltflib's save_to_bytes gives for this document (tests compare), built
        without its three copies of the buffer: the views already sit back to back, each
        starting on a 4-byte boundary, exactly where pygltflib would repack them."""
        if self.gltf.required_alignment() != 4:
            raise ValueError("GltfBuilder lays out its buffer with 4-byte alignment only")
        self._blob.extend(b"\x00" * (_align4(len(self._blob)) - len(self._blob)))
        self.gltf.buffers = [gl.Buffer(byteLength=len(self._blob))]
        text = self.gltf.gltf_to_json(separators=(",", ":"), indent=None).encode("utf-8")
        text += b" " * (-(12 + len(text)) % 4)  # the BIN chunk's data starts 4-byte aligned
        length = 12 + 8 + len(text) + 8 + len(self._blob)
        return b"".join([
            b"glTF", struct.pack("<I", 2), struct.pack("<I", length),
            struct.pack("<I", len(text)), b"JSON", text,
            struct.pack("<I", len(self._blob)), b"BIN\x00",
        ])

    def to_bytes(self) -> bytes:
        """The whole document as .glb bytes."""
        return self._container_head() + bytes(self._blob)

    def save(self, path: str | Path) -> Path:
        """Write a .glb file."""
        path = Path(path)
        if path.suffix.lower() != ".glb":
            raise ValueError(f"GltfBuilder writes binary glTF: {path} should end in .glb")
        head = self._container_head()
        with open(path, "wb") as out:
            out.write(head)
            out.write(self._blob)
        return path


def read_glb_json(path: str | Path) -> dict:
    """The JSON chunk of a .glb file (for checks and tools that only need the document)."""
    data = Path(path).read_bytes()
    if data[:4] != b"glTF":
        raise ValueError(f"{path} is not a binary glTF file")
    length = int.from_bytes(data[12:16], "little")
    return json.loads(data[20 : 20 + length])


# ---- scene -> glb ----------------------------------------------------------------------------
AVATAR_FILE = "avatar.glb"
MOTION_FILE = "animation.glb"


def add_joint_nodes(builder: GltfBuilder, skeleton: Skeleton) -> list[int]:
    """One node per joint, parented like the joints; roots go into the scene. Node indices.

    Each node's transform is the joint's rest frame (for the engine's rigs: x, y = head->tail,
    z = skeleton.json's z_axis, origin at the head), so the glTF joints carry skeleton.json's
    orientations."""
    rotations = matrix_to_quaternion(skeleton.rest_local[:, :3, :3])
    nodes: list[int] = []
    for i, name in enumerate(skeleton.names):
        parent = int(skeleton.parents[i])
        nodes.append(builder.add_node(name, translation=skeleton.rest_local[i, :3, 3].tolist(),
                                      rotation=rotations[i].tolist(), root=parent < 0))
        if parent >= 0:
            builder.add_child(nodes[parent], nodes[i])
    return nodes


def add_skeleton_skin(builder: GltfBuilder, skeleton: Skeleton, joint_nodes: list[int], name: str) -> int:
    """A skin listing every joint (importers then make one armature, with no stray empties for
    marker bones such as heels or eyes); the mesh's JOINTS_0 names only deforming joints."""
    return builder.add_skin(joint_nodes, np.linalg.inv(skeleton.bind_world), skeleton=joint_nodes[0], name=name)


def avatar_builder(scene: Scene) -> GltfBuilder:
    """The avatar's glTF document: textures, one material per slot, the mesh (one primitive per
    slot, shared vertices), and the skeleton with its skin when the scene has one."""
    mesh = scene.mesh
    builder = GltfBuilder(extras=scene.metadata)
    texture_index: dict[str, int] = {}
    for texture in scene.textures:
        if texture.encoded is None:
            raise ValueError(f"texture {texture.name!r} is not encoded yet (write the textures first)")
        texture_index[texture.name] = builder.add_texture(
            builder.add_image(texture.encoded, "image/png", name=texture.name), name=texture.name
        )
    submeshes = []
    for slot in scene.materials:
        material = builder.add_material(
            slot.name, texture_index.get(slot.base_color), texture_index.get(slot.normal),
            roughness=slot.roughness, metallic=slot.metallic, extras=slot.extras,
        )
        submeshes.append((slot.faces, material))
    mesh_index = builder.add_mesh(
        mesh.name,
        mesh.vertices,
        mesh.normals,
        mesh.uv,
        tangents=mesh.tangents,
        extra_attributes={"_LABEL": mesh.labels.astype(np.float32)},
        submeshes=submeshes,
        extras={"label_attribute": "_LABEL", "labels": {str(i): n for i, n in enumerate(mesh.label_names)}},
    )
    mesh_node = builder.add_node(mesh.name, mesh=mesh_index, root=True)
    if scene.skeleton is not None and scene.skin is not None:
        add_skin(builder, mesh_node, scene.skeleton, scene.skin)
    return builder


def add_skin(builder: GltfBuilder, mesh_node: int, skeleton: Skeleton, skin: Skin) -> int:
    """Skin the mesh of `mesh_node` (at the avatar origin): joint nodes, the skin, and JOINTS_0 /
    WEIGHTS_0 on every primitive; returns the skin index."""
    joint_nodes = add_joint_nodes(builder, skeleton)
    index = add_skeleton_skin(builder, skeleton, joint_nodes, f"{skeleton.name} skin")
    mesh = builder.gltf.nodes[mesh_node].mesh
    builder.add_primitive_attribute(mesh, "JOINTS_0", np.asarray(skin.joints, np.uint16))
    builder.add_primitive_attribute(mesh, "WEIGHTS_0", np.asarray(skin.weights, np.float32))
    builder.set_node_skin(mesh_node, index)
    return index


def motion_builder(scene: Scene) -> GltfBuilder:
    """The motion's glTF document: the skeleton's joint nodes and skin, and one animation with a
    rotation channel per joint and a translation channel for the root."""
    skeleton, animation = scene.skeleton, scene.animation
    builder = GltfBuilder(extras=scene.metadata)
    nodes = add_joint_nodes(builder, skeleton)
    add_skeleton_skin(builder, skeleton, nodes, "skeleton")
    anim = builder.add_animation(animation.name)
    times = builder.add_times(np.arange(animation.frames) / animation.fps)
    rotations = continuous_quaternions(matrix_to_quaternion(animation.rotations))
    for b in range(len(skeleton.names)):
        builder.add_animation_channel(anim, nodes[b], "rotation", times, rotations[:, b])
    root = int(np.flatnonzero(skeleton.parents < 0)[0])
    builder.add_animation_channel(anim, nodes[root], "translation", times, animation.translations[:, root])
    return builder


def write_avatar(scene: Scene, out_dir: Path) -> dict[str, str]:
    avatar_builder(scene).save(Path(out_dir) / AVATAR_FILE)
    return {"glb": AVATAR_FILE}


def write_motion(scene: Scene, out_dir: Path) -> dict[str, str]:
    motion_builder(scene).save(Path(out_dir) / MOTION_FILE)
    return {"gltf": MOTION_FILE}
