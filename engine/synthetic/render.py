"""Render a mannequin with exact ground truth: one ray per pixel against its triangles.

Open3D's RaycastingScene gives the exact hit of every pixel's ray, so the pointmap lies on the
true surface to float precision, the normals are the mesh's interpolated vertex normals at the
hit, and segmentation, albedo and visibility come from the hit triangle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import trimesh

from engine.paths import asset
from engine.synthetic.body import MATERIAL_COLOURS, MATERIALS, BodyMesh, build_body, shirt_stripes, shorts_checker
from engine.synthetic.skeleton import PosedSkeleton

# body frame (x left, y up, z front) -> camera frame (x right, y down, z forward) for a person
# facing the camera: the person's left is the image's right.
BODY_TO_CAMERA_AXES = np.diag([1.0, -1.0, -1.0])
LIGHT_DIR_CAMERA = np.array([-0.45, -0.55, -0.70]) / np.linalg.norm([-0.45, -0.55, -0.70])
BACKGROUND_SRGB = 128


@dataclass
class Camera:
    K: np.ndarray                 # 3 x 3
    width: int
    height: int
    body_to_camera: np.ndarray    # 4 x 4 rigid transform

    def to_camera(self, points_body: np.ndarray) -> np.ndarray:
        return points_body @ self.body_to_camera[:3, :3].T + self.body_to_camera[:3, 3]

    def project(self, points_camera: np.ndarray) -> np.ndarray:
        uvw = points_camera @ self.K.T
        return uvw[:, :2] / uvw[:, 2:3]


@dataclass
class Render:
    """Everything a perfect Sapiens2 would predict for the person, and the truth behind it."""

    image: np.ndarray            # H x W x 3 uint8 sRGB
    pointmap: np.ndarray         # H x W x 3 float32 camera frame, NaN off the person
    normal: np.ndarray           # H x W x 3 float32 unit, toward the camera, NaN off the person
    albedo: np.ndarray           # H x W x 3 float32 linear, 0 off the person
    seg: np.ndarray              # H x W uint8
    mask: np.ndarray             # H x W bool
    keypoints: np.ndarray        # 308 x 3 (x, y, score) in image pixels (centres at +0.5)
    K: np.ndarray                # 3 x 3
    joints3d_camera: dict[str, np.ndarray]
    mesh: trimesh.Trimesh        # the true surface, camera frame
    face_labels: np.ndarray      # per face of `mesh`
    height_m: float
    camera: Camera
    meta: dict = field(default_factory=dict)
    # the pose behind the picture: each joint's rotation from the rest pose in camera axes
    # (child - parent = R[parent] @ (rest child - rest parent)), and the posed skeleton itself
    joint_rotations_camera: dict[str, np.ndarray] = field(default_factory=dict)
    posed: PosedSkeleton | None = None


def frame_camera(posed: PosedSkeleton, width: int, height: int, *, fill: float = 0.86,
                 focal_factor: float = 1.5, yaw_deg: float = 0.0) -> Camera:
    """A pinhole camera that sees the whole person, centred, filling `fill` of the frame."""
    f = focal_factor * max(width, height)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    yaw = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    R = BODY_TO_CAMERA_AXES @ yaw
    pts = posed.positions @ R.T
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    margin = 0.06 * posed.skeleton.height  # the surface lies outside the joints (head, shoes)
    span_y, span_x = hi[1] - lo[1] + 2 * margin, hi[0] - lo[0] + 2 * margin
    depth = max(f * span_y / (fill * height), f * span_x / (fill * width))
    centre = 0.5 * (lo + hi)
    t = np.array([-centre[0], -centre[1], depth - centre[2]])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return Camera(K, width, height, T)


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """H*W x 6 rays from the origin through pixel centres, directions with z = 1 (t = depth)."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    return np.concatenate([np.zeros_like(d), d], axis=1).astype(np.float32)


def _keypoint_table() -> tuple[list[str], dict[str, int]]:
    names = [k["name"] for k in json.loads(asset("keypoints308.json").read_text())["keypoints"]]
    return names, {n: i for i, n in enumerate(names)}


# Sapiens hand keypoints run tip (4) to base ("third_joint"); our joints run knuckle (0) to tip (3)
_FINGER_KEYPOINT = {"third_joint": 0, "2": 1, "3": 2, "4": 3}


def keypoint_sources(posed: PosedSkeleton) -> dict[str, tuple[np.ndarray, str]]:
    """Sapiens keypoint name -> (3-D point in the body frame, body part it sits in)."""
    h = posed.skeleton.height
    J = posed.__getitem__
    Rh = posed.rotations[posed.skeleton.index("head")]
    hc = J("head_center")
    src: dict[str, tuple[np.ndarray, str]] = {
        "nose": (hc + Rh @ np.array([0, -0.012 * h, 0.075 * h]), "nose"),
        "neck": (J("neck"), "neck"),
    }
    for side, s, word in (("L", 1.0, "left"), ("R", -1.0, "right")):
        src[f"{word}_eye"] = (hc + Rh @ np.array([s * 0.022 * h, 0.008 * h, 0.06 * h]), "head")
        src[f"{word}_ear"] = (hc + Rh @ np.array([s * 0.058 * h, 0.0, -0.005 * h]), "head")
        for joint, kp in (("shoulder", "shoulder"), ("elbow", "elbow"), ("wrist", "wrist"), ("hip", "hip"),
                          ("knee", "knee"), ("ankle", "ankle")):
            part = {"shoulder": "upper_arm", "elbow": "forearm", "wrist": "forearm", "hip": "thigh",
                    "knee": "shin", "ankle": "shin"}[joint]
            src[f"{word}_{kp}"] = (J(f"{joint}_{side}"), f"{part}_{side}")
        Ra = posed.rotations[posed.skeleton.index(f"ankle_{side}")]
        src[f"{word}_big_toe"] = (J(f"toe_{side}") + Ra @ np.array([-s * 0.012 * h, 0.0, 0.0]), f"shoe_{side}")
        src[f"{word}_small_toe"] = (J(f"toe_{side}") + Ra @ np.array([s * 0.016 * h, 0.0, -0.02 * h]), f"shoe_{side}")
        src[f"{word}_heel"] = (J(f"heel_{side}"), f"shoe_{side}")
        for finger in ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger"):
            for suffix, k in _FINGER_KEYPOINT.items():
                name = f"{word}_{finger}_{suffix}" if suffix == "third_joint" else f"{word}_{finger}{suffix}"
                src[name] = (J(f"{finger}{k}_{side}"), f"{finger}_{side}")
    return src


def render(posed: PosedSkeleton, width: int = 768, height: int = 1024, *, yaw_deg: float = 0.0,
           camera: Camera | None = None, body: BodyMesh | None = None, outfit: str = "trousers",
           detail: bool = True) -> Render:
    """Ray-cast the mannequin; every output is exact for the returned mesh."""
    import open3d as o3d

    body = body or build_body(posed, outfit, detail)
    camera = camera or frame_camera(posed, width, height, yaw_deg=yaw_deg)
    verts_cam = camera.to_camera(body.vertices)
    mesh = trimesh.Trimesh(verts_cam, body.faces, process=False)
    vertex_normals = np.asarray(mesh.vertex_normals, dtype=np.float64)

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts_cam.astype(np.float32)),
                        o3d.core.Tensor(body.faces.astype(np.uint32)))
    rays = pixel_rays(camera.K, width, height)
    hits = scene.cast_rays(o3d.core.Tensor(rays))
    t = hits["t_hit"].numpy()
    prim = hits["primitive_ids"].numpy().astype(np.int64)
    bary = hits["primitive_uvs"].numpy()
    hit = np.isfinite(t)
    H, W = height, width

    pointmap = np.full((H * W, 3), np.nan, np.float32)
    normal = np.full((H * W, 3), np.nan, np.float32)
    albedo = np.zeros((H * W, 3), np.float32)
    seg = np.zeros(H * W, np.uint8)
    # exact hit points: ray origin + t * direction (direction z = 1, so t is the depth)
    points = rays[hit, 3:] * t[hit, None]
    pointmap[hit] = points
    f = prim[hit]
    w1, w2 = bary[hit, 0:1], bary[hit, 1:2]
    tri = body.faces[f]
    n = (1 - w1 - w2) * vertex_normals[tri[:, 0]] + w1 * vertex_normals[tri[:, 1]] + w2 * vertex_normals[tri[:, 2]]
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    # an interpolated normal can lean past the silhouette; keep it facing the camera
    away = np.einsum("ij,ij->i", n, points) > 0
    n[away] = -n[away]
    normal[hit] = n
    seg[hit] = body.face_labels[f]
    colour = MATERIAL_COLOURS[body.face_materials[f]].copy()
    shirt = body.face_materials[f] == MATERIALS["shirt"]
    points_body = (points - camera.body_to_camera[:3, 3]) @ camera.body_to_camera[:3, :3]
    light = shirt_stripes(points_body[shirt], posed.skeleton.height)
    colour[shirt] = np.where(light[:, None] > 0, np.float32([0.78, 0.76, 0.70]), colour[shirt])
    shorts = body.face_materials[f] == MATERIALS["shorts"]
    light = shorts_checker(points_body[shorts], posed.skeleton.height)
    colour[shorts] = np.where(light[:, None] > 0, np.float32([0.75, 0.72, 0.62]), colour[shorts])
    albedo[hit] = colour

    shading = 0.35 + 0.65 * np.clip(n @ -LIGHT_DIR_CAMERA, 0.0, None)
    from engine.bundle import linear_to_srgb

    image = np.full((H * W, 3), BACKGROUND_SRGB, np.uint8)
    image[hit] = np.round(linear_to_srgb(colour * shading[:, None]) * 255).astype(np.uint8)

    joints_cam = {name: camera.to_camera(p[None])[0] for name, p in posed.as_dict().items()}
    Rc = camera.body_to_camera[:3, :3]
    rotations_cam = dict(zip(posed.skeleton.names, np.einsum("ab,jbc,dc->jad", Rc, posed.rotations, Rc)))
    keypoints = _keypoints(posed, body, camera, scene)
    return Render(
        image=image.reshape(H, W, 3), pointmap=pointmap.reshape(H, W, 3), normal=normal.reshape(H, W, 3),
        albedo=albedo.reshape(H, W, 3), seg=seg.reshape(H, W), mask=hit.reshape(H, W),
        keypoints=keypoints, K=camera.K.copy(), joints3d_camera=joints_cam, mesh=mesh,
        face_labels=body.face_labels.copy(), height_m=posed.skeleton.height, camera=camera,
        joint_rotations_camera=rotations_cam, posed=posed,
    )


# face landmarks sit on the surface (ears under the hair cap), so the surface in front of them
# may only be this close; joints sit inside their part and get its radius as slack
_SURFACE_SLACK_M = {"nose": 0.02, "left_eye": 0.02, "right_eye": 0.02, "left_ear": 0.05, "right_ear": 0.05}


_ARM_PARTS = ("upper_arm", "sleeve", "forearm", "palm", "thumb", "forefinger", "middle_finger", "ring_finger",
              "pinky_finger")
_LEG_PARTS = ("thigh", "shin", "shorts", "sock", "shoe")


def _limb(part: str) -> str | None:
    """'arm_L' / 'leg_R' for the parts of a limb, None for the trunk and head."""
    base, _, side = part.rpartition("_")
    if base in _ARM_PARTS:
        return f"arm_{side}"
    if base in _LEG_PARTS:
        return f"leg_{side}"
    return None


def _keypoints(posed: PosedSkeleton, body: BodyMesh, camera: Camera, scene) -> np.ndarray:
    """308 x (x, y, score): 1 visible, 0.3 inside the image but hidden, 0 undefined or outside."""
    import open3d as o3d

    names, index = _keypoint_table()
    sources = keypoint_sources(posed)
    kp = np.zeros((len(names), 3), np.float32)
    todo = [(index[name], point, part) for name, (point, part) in sources.items() if name in index]
    ids = np.array([i for i, _, _ in todo])
    pts = camera.to_camera(np.array([p for _, p, _ in todo]))
    kp_names = [names[i] for i in ids]
    xy = camera.project(pts)
    # visible when the first surface on the way to the point is no further than the part's own
    # radius in front of it (joints sit inside limbs, landmarks on the surface), or when that
    # surface is the joint's own limb: an elbow seen through its forearm pointing at the camera
    # is visible, as annotators (and Sapiens) would have it
    rays = np.concatenate([np.zeros_like(pts), pts / pts[:, 2:3]], axis=1).astype(np.float32)
    cast = scene.cast_rays(o3d.core.Tensor(rays))
    first = cast["t_hit"].numpy()
    hit_face = cast["primitive_ids"].numpy().astype(np.int64)
    hit_limb = np.array([_limb(body.part_names[body.face_parts[f]]) if np.isfinite(t) else None
                         for f, t in zip(hit_face, first)], dtype=object)
    own_limb = np.array([_limb(part) for _, _, part in todo], dtype=object)
    slack = np.array([_SURFACE_SLACK_M.get(name, 1.6 * body.part_radius.get(part, 0.02) + 0.01)
                      for name, (_, _, part) in zip(kp_names, todo)])
    visible = (first >= pts[:, 2] - slack) | ((own_limb != None) & (hit_limb == own_limb))  # noqa: E711
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < camera.width) & (xy[:, 1] >= 0) & (xy[:, 1] < camera.height)
    kp[ids, :2] = xy
    kp[ids, 2] = np.where(inside, np.where(visible, 1.0, 0.3), 0.0)
    return kp
