"""The synthetic people are exact: every map agrees with the true mesh and camera."""

from __future__ import annotations

import json

import numpy as np
import open3d as o3d
import pytest

from engine.bundle import read_bundle, write_bundle
from engine.synthetic import (
    POSES, degrade, make_motion, make_person, make_sequence, relative_rotation_deg, to_bundle,
    write_ground_truth, write_sample,
)
from engine.synthetic.body import seg_class_ids


@pytest.fixture(scope="module")
def person():
    return make_person(3, pose="bent", width=384, height=512)


def _scene(mesh):
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    return scene


def test_pointmap_lies_on_the_true_surface_and_projects_to_pixel_centres(person):
    points = person.pointmap[person.mask]
    distance = _scene(person.mesh).compute_distance(o3d.core.Tensor(points)).numpy()
    assert distance.max() < 1e-5
    rows, cols = np.nonzero(person.mask)
    uv = (points / points[:, 2:3]) @ person.K.T
    assert np.abs(uv[:, 0] - (cols + 0.5)).max() < 1e-3
    assert np.abs(uv[:, 1] - (rows + 0.5)).max() < 1e-3
    assert np.isnan(person.pointmap[~person.mask]).all()
    assert 0.05 < person.mask.mean() < 0.6


def test_normals_are_unit_face_the_camera_and_agree_with_the_mesh(person):
    n = person.normal[person.mask]
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    p = person.pointmap[person.mask]
    assert (np.einsum("ij,ij->i", n, p) <= 1e-6).all()  # toward the camera
    # against the hit triangle's flat normal: smooth normals stay within the mesh's facet angle
    scene = _scene(person.mesh)
    rays = np.concatenate([np.zeros_like(p), p / p[:, 2:3]], axis=1).astype(np.float32)
    face_n = scene.cast_rays(o3d.core.Tensor(rays))["primitive_normals"].numpy()
    face_n *= -np.sign(np.einsum("ij,ij->i", face_n, p))[:, None]
    cos = np.einsum("ij,ij->i", n, face_n)
    # 28 facets around a limb: an interpolated normal is within ~6.5 degrees of its facet
    assert np.median(cos) > 0.995 and np.percentile(cos, 99) > 0.95


def test_segmentation_and_albedo(person):
    ids = seg_class_ids()
    present = set(np.unique(person.seg[person.mask]).tolist())
    for name in ("Face_Neck", "Hair", "Upper_Clothing", "Lower_Clothing", "Left_Hand", "Right_Lower_Arm",
                 "Left_Shoe", "Apparel"):
        assert ids[name] in present, name
    assert (person.seg[~person.mask] == 0).all() and (person.seg[person.mask] > 0).all()
    shirt = person.albedo[person.seg == ids["Upper_Clothing"]]
    assert len(np.unique(shirt.round(3), axis=0)) >= 2  # the stripes
    assert (person.albedo >= 0).all() and (person.albedo <= 1).all()


def test_keypoints_project_the_joints_and_flag_visibility(person):
    names = [k["name"] for k in json.loads(open("assets/keypoints308.json").read())["keypoints"]]
    kp = person.keypoints
    assert kp.shape == (308, 3)
    K = person.K
    for kp_name, joint in (("left_elbow", "elbow_L"), ("right_knee", "knee_R"), ("left_wrist", "wrist_L"),
                           ("right_forefinger_third_joint", "forefinger0_R")):
        x, y, score = kp[names.index(kp_name)]
        p = person.joints3d_camera[joint]
        assert score > 0
        assert np.allclose([x, y], (K @ p)[:2] / p[2], atol=1e-3)
    scores = set(np.unique(kp[:, 2]).astype(float).round(6).tolist())
    assert scores <= {0.0, 0.3, 1.0} and 1.0 in scores
    assert (kp[names.index("left_shoulder"), 2], kp[names.index("right_hip"), 2]) == (1.0, 1.0)
    # the face's dense landmarks are not defined for a mannequin
    assert (kp[names.index("nose") + 1:, 2] == 0).sum() > 200


def test_joints_lie_inside_the_body(person):
    scene = _scene(person.mesh)
    joints = np.array([person.joints3d_camera[n] for n in ("elbow_L", "knee_R", "hip_L", "shoulder_R", "neck",
                                                           "wrist_R", "ankle_L")], np.float32)
    # inside: off the surface by a few millimetres at least, and enclosed
    d = scene.compute_distance(o3d.core.Tensor(joints)).numpy()
    assert (d > 0.003).all() and (d < 0.08).all()
    # parts overlap at the joints, so test each closed part on its own: some part encloses each joint
    inside = np.zeros(len(joints), bool)
    for part in person.mesh.split(only_watertight=True):
        inside |= _scene(part).compute_occupancy(o3d.core.Tensor(joints)).numpy() > 0.5
    assert inside.all()


def test_same_seed_same_person_and_poses_differ():
    a = make_person(11, width=192, height=256)
    b = make_person(11, width=192, height=256)
    c = make_person(12, width=192, height=256)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, c.mask)
    masks = {pose: make_person(0, pose=pose, width=96, height=128).mask.sum() for pose in POSES}
    assert len(set(masks.values())) == len(POSES)


def test_bundle_round_trip_and_ground_truth(person, tmp_path):
    out = write_bundle(to_bundle(person), tmp_path / "bundle")
    back = read_bundle(out)
    assert np.array_equal(back.mask, person.mask) and np.array_equal(back.seg, person.seg)
    assert np.allclose(back.pointmap[person.mask], person.pointmap[person.mask])
    assert np.allclose(back.keypoints, person.keypoints, atol=1e-3)
    gt_dir = write_ground_truth(person, tmp_path / "gt")
    gt = json.loads((gt_dir / "gt.json").read_text())
    assert gt["image_size_wh"] == [384, 512] and abs(gt["height_m"] - person.height_m) < 1e-9
    assert np.allclose(gt["joints3d_camera"]["elbow_L"], person.joints3d_camera["elbow_L"])
    assert (gt_dir / "gt_mesh.ply").stat().st_size > 10_000


def test_degrade_is_realistic_and_leaves_the_truth(person):
    noisy = degrade(person, seed=1)
    m = person.mask & np.isfinite(noisy.pointmap).all(-1)
    depth_err = np.abs(noisy.pointmap[m][:, 2] - person.pointmap[m][:, 2])
    assert 0.003 < depth_err.mean() < 0.03
    moved = noisy.keypoints[:, :2] - person.keypoints[:, :2]
    defined = person.keypoints[:, 2] > 0
    assert 1.5 < np.linalg.norm(moved[defined], axis=1).mean() < 6.0
    assert noisy.mesh is person.mesh and np.array_equal(noisy.seg, person.seg)
    assert np.array_equal(person.pointmap[person.mask], person.pointmap[person.mask])  # original untouched


def test_sequence_has_known_fast_motion_and_a_fixed_camera():
    frames = make_sequence(60, "wave", fps=30, width=128, height=160)
    assert len(frames) == 60 and all(np.array_equal(f.K, frames[0].K) for f in frames)
    wrist = np.array([f.joints3d_camera["wrist_R"] for f in frames])
    speed = np.linalg.norm(np.diff(wrist, axis=0), axis=1) * 30  # m/s
    # waving at 1 Hz from 0.5 s, at 2.5 Hz from 1 s on
    assert speed[31:].max() > 2 * speed[16:29].max() > 0
    assert all(f.mask.sum() > 100 for f in frames)
    walk = make_sequence(10, "walk", fps=10, width=128, height=160)
    pelvis = np.array([f.joints3d_camera["pelvis"] for f in walk])
    assert pelvis[-1, 0] - pelvis[0, 0] > 0.3  # walks toward image right


def test_side_view_scores_the_far_side_as_hidden():
    names = [k["name"] for k in json.loads(open("assets/keypoints308.json").read())["keypoints"]]
    person = make_person(2, pose="bent", yaw_deg=90, width=192, height=256)
    score = {n: float(person.keypoints[names.index(n), 2]) for n in names[:17]}
    # yaw 90 turns the right side to the camera: the left shoulder, hip, eye and ear are behind
    assert person.joints3d_camera["shoulder_R"][2] < person.joints3d_camera["shoulder_L"][2] - 0.2
    for hidden in ("left_shoulder", "left_hip", "left_eye", "left_ear"):
        assert score[hidden] == pytest.approx(0.3), hidden
    for seen in ("right_shoulder", "right_hip", "right_eye", "right_ear", "nose"):
        assert score[seen] == 1.0, seen


def _bone_check(positions, rest, rotations, parents):
    """child - parent == R[parent] @ (rest child - rest parent) for every bone."""
    child = np.array([i for i, p in enumerate(parents) if p >= 0])
    par = np.array([parents[i] for i in child])
    moved = positions[..., child, :] - positions[..., par, :]
    predicted = np.einsum("...jab,jb->...ja", rotations[..., par, :, :], rest[child] - rest[par])
    return np.abs(moved - predicted).max()


def test_motion_track_rotations_explain_the_joints_and_frames_match_it():
    track = make_motion(45, "kick", fps=30)
    assert track.positions.shape == (45, len(track.names), 3) and track.rotations.shape[-2:] == (3, 3)
    assert _bone_check(track.positions, track.rest_positions, track.rotations, track.parents) < 1e-9
    # rotations are proper and bone lengths never change
    assert np.allclose(np.linalg.det(track.rotations), 1.0)
    lengths = np.linalg.norm(track.positions[:, 1:] - track.positions[:, [track.parents[i] for i in
                                                                            range(1, len(track.names))]], axis=2)
    assert np.ptp(lengths, axis=0).max() < 1e-9
    # still for half a second, then a fast kick of the left foot
    speed = np.linalg.norm(np.diff(track.joint("ankle_L"), axis=0), axis=1) * track.fps
    assert speed[:14].max() < 1e-9 and speed.max() > 3.0
    assert relative_rotation_deg(track.rotations[0], track.rotations[22]).max() > 60
    frames = make_sequence(3, "walk", fps=10, width=96, height=128)
    walk = make_motion(3, "walk", fps=10, width=96, height=128)
    for i, frame in enumerate(frames):
        assert np.allclose(frame.joints3d_camera["knee_L"], walk.joint("knee_L")[i])
        assert np.allclose(frame.joint_rotations_camera["hip_R"], walk.rotations[i, walk.names.index("hip_R")])
        assert np.array_equal(frame.K, walk.camera.K)


def test_render_carries_the_pose_behind_it(person):
    names = person.posed.skeleton.names
    positions = np.array([person.joints3d_camera[n] for n in names])
    rotations = np.array([person.joint_rotations_camera[n] for n in names])
    rest = person.camera.to_camera(person.posed.skeleton.pose({}).positions)
    assert _bone_check(positions, rest, rotations, person.posed.skeleton.parents) < 1e-9
    assert relative_rotation_deg(rotations[names.index("elbow_R")], np.eye(3)) > 30  # "bent"


def test_shorts_bare_the_legs_and_stay_exact():
    person = make_person(4, pose="step", outfit="shorts", width=192, height=256)
    ids = seg_class_ids()
    present = set(np.unique(person.seg).tolist())
    for name in ("Left_Upper_Leg", "Right_Lower_Leg", "Left_Sock", "Right_Sock", "Lower_Clothing", "Right_Shoe"):
        assert ids[name] in present, name
    distance = _scene(person.mesh).compute_distance(o3d.core.Tensor(person.pointmap[person.mask])).numpy()
    assert distance.max() < 1e-5
    shorts = person.albedo[person.seg == ids["Lower_Clothing"]]
    colours, counts = np.unique(shorts.round(3), axis=0, return_counts=True)
    assert len(colours) == 2 and counts.min() > 0.2 * counts.sum()  # the checker
    with pytest.raises(ValueError, match="outfit"):
        make_person(4, outfit="kilt", width=32, height=32)


def test_write_sample_has_the_shared_samples_layout_and_conventions(person, shared_samples, tmp_path):
    ours = write_sample(person, tmp_path / "person")
    theirs = sorted(p for p in shared_samples.iterdir() if p.is_dir())[0]
    assert {p.name for p in theirs.iterdir()} <= {p.name for p in ours.iterdir()}
    a, b = np.load(ours / "gt_maps.npz"), np.load(theirs / "gt_maps.npz")
    assert set(a.files) == set(b.files)
    for key in b.files:
        assert a[key].dtype == b[key].dtype and a[key].ndim == b[key].ndim, key
    gt_a, gt_b = (json.loads((d / "gt.json").read_text()) for d in (ours, theirs))
    assert set(gt_b) <= set(gt_a) and set(gt_b["joints3d_camera"]) <= set(gt_a["joints3d_camera"])
    kp_a, kp_b = (json.loads((d / "keypoints.json").read_text()) for d in (ours, theirs))
    assert kp_a["names"] == kp_b["names"]
    # the same keypoints are defined (body, feet, hands, neck and the five face points)
    defined = lambda kp: set(np.nonzero(np.array(kp["keypoints"])[:, 2] > 0)[0].tolist())  # noqa: E731
    assert defined(kp_a) == defined(kp_b)
    # the person's left is on the image's right in both; K maps joints to their keypoints
    for gt, kp in ((gt_a, kp_a), (gt_b, kp_b)):
        joints, K = gt["joints3d_camera"], np.array(gt["K"])
        assert joints["shoulder_L"][0] > joints["shoulder_R"][0]
        p = np.array(joints["elbow_L"])
        assert np.allclose(kp["keypoints"][kp["names"].index("left_elbow")][:2], (K @ p)[:2] / p[2], atol=0.01)
    assert np.isnan(a["pointmap"][~a["mask"]]).all() and (a["seg"][~a["mask"]] == 0).all()


def test_surface_detail_is_in_the_normals_and_optional():
    ids = seg_class_ids()
    folded = make_person(3, pose="apose", width=192, height=256)
    smooth = make_person(3, pose="apose", width=192, height=256, detail=False)
    shirt = (folded.seg == ids["Upper_Clothing"]) & (smooth.seg == ids["Upper_Clothing"])
    cos = np.einsum("ij,ij->i", folded.normal[shirt], smooth.normal[shirt])
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    # folds tilt the shirt's normals by a few degrees while moving its surface by millimetres
    assert np.percentile(angle, 90) > 1.0
    assert np.median(np.abs(folded.pointmap[shirt][:, 2] - smooth.pointmap[shirt][:, 2])) < 0.003
    legs = (folded.seg == ids["Lower_Clothing"]) & (smooth.seg == ids["Lower_Clothing"]) & (
        np.arange(256)[:, None] > 160)
    assert np.allclose(folded.normal[legs], smooth.normal[legs], atol=1e-6)  # detail only where said


@pytest.mark.parametrize("motion", ["walk_line", "turn", "squat", "jump", "side_step"])
def test_grounded_motions_plant_their_feet(motion):
    """Issue 12: stance feet stay put (make_motion("walk") slides every foot 13+ mm per frame),
    and the ground truth labels each foot's contacts."""
    from engine.synthetic import make_motion
    track = make_motion(60, motion, fps=30.0, yaw_deg=30.0)
    assert track.contacts is not None and track.contacts.shape == (60, 2)
    assert track.contacts.any(0).all()                    # each foot stands at some point
    up, _ = track.ground_camera()
    for k, side in enumerate("LR"):
        for joint in (f"ankle_{side}", f"toe_{side}", f"heel_{side}"):
            x = track.joint(joint)
            step = np.diff(x, axis=0)
            slide = np.linalg.norm(step - (step @ up)[:, None] * up, axis=1)
            both = track.contacts[1:, k] & track.contacts[:-1, k]
            assert slide[both].max() < 1e-6, (joint, slide[both].max())
    if motion == "jump":
        assert not track.contacts[15:22].any()            # in the air
    if motion == "walk_line":
        pelvis = track.joint("pelvis")
        assert np.linalg.norm(pelvis[-1] - pelvis[0]) > 1.5   # it walks: ~1 m/s
