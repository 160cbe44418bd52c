"""The closed solid's labels behind a forearm hanging in front of the trunk's side, on engine.synthetic
people posed so (the case of shared person_102's right forearm, which bench_closed's held-out people
do not have).

Usage: .venv/bin/python bench/bench_hands_before_trunk.py [--size 768x1024] [--cases exact,degraded]
                                                          [--set NAME=VALUE ...] [--colour]

Three people (seeds 211-213), each with one arm hanging a little forward and across, its forearm
and hand in front of the side of the torso and the hip (POSES), are built closed from their exact
maps and from degraded ones (bench_closed's degradation: engine.synthetic.degrade, centred, 2 px
flying rim), without crops, and measured as bench_closed measures labels (label_metrics: the area
share of faces whose vertices' class is not the nearest true outer-skin point's, the trunk
labelled an arm), plus the share where the truth is the trunk, its clothes or a thigh and the label
a forearm or a hand (the trunk's side behind the forearm), and the reverse. --set NAME=VALUE sets
a constant of engine.geometry.watertight first (e.g. BEHIND_HANDS=0 for the build without
_behind_the_hands). --colour builds the same people as closed avatars instead (build_avatar,
texture 1024; use --size 384x512 as bench_back_colour does) and prints bench_back_colour's
figures: the texture against the true albedo where the front and the back cameras see the
avatar, and the seam step. Printed, nothing asserted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

TRUNK_AND_THIGHS = ("Torso", "Upper_Clothing", "Lower_Clothing", "Apparel", "Left_Upper_Leg", "Right_Upper_Leg")
FOREARMS_AND_HANDS = ("Left_Lower_Arm", "Right_Lower_Arm", "Left_Hand", "Right_Hand")


def poses() -> dict:
    """{seed: rotations}: a forearm hanging in front of the torso's side, the right, the left, both."""
    from engine.synthetic.skeleton import X, Z, _rv

    return {
        211: {"shoulder_R": _rv(X, -15) + _rv(Z, 8), "elbow_R": _rv(X, -25)},
        212: {"shoulder_R": _rv(X, -10) + _rv(Z, 15), "elbow_R": _rv(X, -20), "shoulder_L": _rv(Z, 20)},
        213: {"shoulder_L": _rv(X, -10) + _rv(Z, -15), "elbow_L": _rv(X, -20),
              "shoulder_R": _rv(X, -12) + _rv(Z, 10), "elbow_R": _rv(X, -30)},
    }


def share(metrics: dict, true_names, built_names) -> float:
    """The area share of bench_closed.label_metrics' confusions whose true class is one of
    `true_names` and whose built class is one of `built_names`."""
    pairs = (pair.split(" labelled ") for pair in metrics["label_confusions"])
    return sum(v for (t, b), v in zip(pairs, metrics["label_confusions"].values()) if t in true_names and b in built_names)


def colour(person, given, seed: int) -> tuple[float, float, float]:
    """bench_back_colour's front, back and seam step errors (sRGB levels) of the closed avatar of `given`."""
    import tempfile

    from bench_back_colour import avatar_surface, avatar_vertex_colours, seam_step, seen_colour_error, true_albedo_srgb

    from engine.avatar.build import build_avatar
    from engine.bundle import write_bundle
    from engine.synthetic import render, to_bundle

    height, width = person.mask.shape
    back = render(person.posed, width, height, yaw_deg=180.0)
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = write_bundle(to_bundle(given), Path(tmp) / "bundle")
        out = build_avatar(bundle_dir, Path(tmp) / "avatar", detail="normals", watertight=True, texture_size=1024)
        camera, colours, _ = avatar_vertex_colours(out)
        body = (camera - person.camera.body_to_camera[:3, 3]) @ person.camera.body_to_camera[:3, :3]
        back_error, _ = seen_colour_error(body, colours, back)
        front_error, _ = seen_colour_error(body, colours, person)
        surface_camera, faces, surface_colours, island = avatar_surface(out)
        seam, _, _ = seam_step(surface_camera, faces, surface_colours, island, true_albedo_srgb(person, surface_camera))
    return front_error, back_error, seam


def main() -> None:
    from bench_closed import build_closed, label_metrics, truth_of

    from engine.geometry import watertight
    from engine.synthetic import degrade, make_person

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="768x1024")
    parser.add_argument("--cases", default="exact,degraded")
    parser.add_argument("--set", nargs="*", default=[], help="NAME=VALUE: a constant of engine.geometry.watertight")
    parser.add_argument("--colour", action="store_true", help="build avatars, print bench_back_colour's figures")
    args = parser.parse_args()
    for item in args.set:
        name, value = item.split("=")
        setattr(watertight, name, type(getattr(watertight, name))(float(value)))
        print(f"watertight.{name} = {getattr(watertight, name)}")
    width, height = (int(v) for v in args.size.split("x"))
    rows = {}
    for seed, pose in poses().items():
        person = make_person(seed, pose=pose, width=width, height=height)
        truth = None if args.colour else truth_of(person)
        for case in args.cases.split(","):
            render = person if case == "exact" else degrade(person, seed=seed, flying_rim_px=2.0, centred=True)
            if args.colour:
                errors = colour(person, render, seed)
                rows.setdefault(case, []).append(errors)
                print(f"{seed} {case:9s} front {errors[0]:.2f}  back {errors[1]:.2f}  seam step {errors[2]:.2f}", flush=True)
                continue
            surface, _ = build_closed(render, detail="normals", resolution="full")
            m = label_metrics(truth, surface.vertices, surface.faces, surface.vertex_labels)
            hand_on_trunk = share(m, TRUNK_AND_THIGHS, FOREARMS_AND_HANDS)
            trunk_on_hand = share(m, FOREARMS_AND_HANDS, TRUNK_AND_THIGHS)
            rows.setdefault(case, []).append((m["label_wrong"], m["label_arm_on_trunk"], hand_on_trunk, trunk_on_hand))
            print(f"{seed} {case:9s} labels wrong {100 * m['label_wrong']:.2f} % (the trunk labelled an arm "
                  f"{100 * m['label_arm_on_trunk']:.2f} %; trunk/thigh labelled forearm/hand {100 * hand_on_trunk:.2f} "
                  f"%, forearm/hand labelled trunk/thigh {100 * trunk_on_hand:.2f} %)", flush=True)
    for case, values in rows.items():
        if args.colour:
            front, back, seam = np.mean(values, axis=0)
            print(f"mean {case:9s} front {front:.2f}  back {back:.2f}  seam step {seam:.2f}")
            continue
        mean = 100 * np.mean(values, axis=0)
        print(f"mean {case:9s} labels wrong {mean[0]:.2f} % (the trunk labelled an arm {mean[1]:.2f} %; trunk/thigh "
              f"labelled forearm/hand {mean[2]:.2f} %, forearm/hand labelled trunk/thigh {mean[3]:.2f} %)")


if __name__ == "__main__":
    main()
