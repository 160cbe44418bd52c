"""Bone maps: which bone of a character plays which humanoid part.

Every skeleton is read through one vocabulary, the VRM humanoid bone names (hips, spine, chest,
upperChest, neck, head, leftUpperArm, leftLowerArm, leftHand, leftIndexProximal, ...: a public
standard, so a map saved against it works whatever convention the motion was made in). A
convention is a table humanoid name -> bone name template ({S} = the convention's side token);
several templates per part are alternatives tried in order (the first one the skeleton has wins,
and no bone plays two parts). Conventions known: the project's own tables (rigify, mixamo, game),
a Rigify metarig and the deform (DEF-) bones of a generated Rigify rig, its FK controls, Mixamo
(any `namespace:` prefix), Unreal's mannequin (UE4 and UE5 spines) and VRM itself. Any other
skeleton takes a JSON map (format `sapiens-bone-map`, docs/retarget.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.errors import EngineError

BONE_MAP_FORMAT = "sapiens-bone-map"
BONE_MAP_VERSION = "1.0"

FINGERS = ("Thumb", "Index", "Middle", "Ring", "Little")
PHALANGES = ("Proximal", "Intermediate", "Distal")
SIDES = ("left", "right")

# Beyond VRM: a control that carries the whole body (a generated Rigify rig's torso). It travels
# and turns with the source's hips; the hips bone below it then bends the pelvis relative to it.
CONTROLS = ("body",)
TORSO = ("hips", "spine", "chest", "upperChest", "neck", "head", "jaw")
# the source part a control follows
CONTROL_SOURCE = {"body": "hips"}
LIMBS = ("Eye", "Shoulder", "UpperArm", "LowerArm", "Hand", "UpperLeg", "LowerLeg", "Foot", "Toes")


def humanoid_names() -> list[str]:
    """Every humanoid part, parents before children (the body control first)."""
    names = list(CONTROLS + TORSO)
    for side in SIDES:
        names += [side + part for part in LIMBS]
        names += [f"{side}{f}{p}" for f in FINGERS for p in PHALANGES]
    return names


HUMANOID = humanoid_names()
HUMANOID_SET = frozenset(HUMANOID)

# The humanoid parts whose head defines a part's direction (head -> that part's head), tried in
# order; the first that both skeletons have is used. Parts missing here (head, toes, last
# phalanges, eyes, jaw) take their direction from their tails when both skeletons have tails.
_DIRECTION_CHILDREN = {
    "hips": ("spine", "chest", "upperChest", "neck"),
    "spine": ("chest", "upperChest", "neck"),
    "chest": ("upperChest", "neck"),
    "upperChest": ("neck",),
    "neck": ("head",),
}
for _side in SIDES:
    _DIRECTION_CHILDREN.update({
        f"{_side}Shoulder": (f"{_side}UpperArm",),
        f"{_side}UpperArm": (f"{_side}LowerArm",),
        f"{_side}LowerArm": (f"{_side}Hand",),
        f"{_side}Hand": tuple(f"{_side}{f}Proximal" for f in ("Middle", "Ring", "Index", "Little")),
        f"{_side}UpperLeg": (f"{_side}LowerLeg",),
        f"{_side}LowerLeg": (f"{_side}Foot",),
        f"{_side}Foot": (f"{_side}Toes",),
    })
    for _f in FINGERS:
        _DIRECTION_CHILDREN[f"{_side}{_f}Proximal"] = (f"{_side}{_f}Intermediate",)
        _DIRECTION_CHILDREN[f"{_side}{_f}Intermediate"] = (f"{_side}{_f}Distal",)


def direction_children(part: str) -> tuple[str, ...]:
    return _DIRECTION_CHILDREN.get(part, ())


def _limbs(templates: dict[str, str | tuple[str, ...]], fingers: dict[tuple[str, str], str | tuple[str, ...]]
           ) -> dict[str, tuple[str, ...]]:
    """Per-side templates ({S} = side token) -> humanoid part -> templates (still with {S})."""
    out = {}
    for part, names in templates.items():
        out[part] = names if isinstance(names, tuple) else (names,)
    for (finger, phalanx), names in fingers.items():
        out[finger + phalanx] = names if isinstance(names, tuple) else (names,)
    return out


def _finger_table(name_of) -> dict[tuple[str, str], str]:
    return {(f, p): name_of(f, i) for f in FINGERS for i, p in enumerate(PHALANGES, start=1)}


_RIGIFY_FINGER = {"Thumb": "thumb", "Index": "f_index", "Middle": "f_middle", "Ring": "f_ring", "Little": "f_pinky"}
_MIXAMO_FINGER = {"Thumb": "Thumb", "Index": "Index", "Middle": "Middle", "Ring": "Ring", "Little": "Pinky"}
_UNREAL_FINGER = {"Thumb": "thumb", "Index": "index", "Middle": "middle", "Ring": "ring", "Little": "pinky"}

_RIGIFY_LIMBS = _limbs(
    {"Eye": "eye.{S}", "Shoulder": "shoulder.{S}", "UpperArm": "upper_arm.{S}", "LowerArm": "forearm.{S}",
     "Hand": "hand.{S}", "UpperLeg": "thigh.{S}", "LowerLeg": "shin.{S}", "Foot": "foot.{S}", "Toes": "toe.{S}"},
    _finger_table(lambda f, i: f"{_RIGIFY_FINGER[f]}.0{i}.{{S}}"))

# name -> (torso parts, limb parts with {S}, side tokens (left, right), description)
CONVENTIONS: dict[str, tuple[dict, dict, tuple[str, str], str]] = {
    "rigify": (
        {"hips": "spine", "spine": "spine.001", "chest": "spine.002", "upperChest": "spine.003",
         "neck": "spine.004", "head": "spine.006", "jaw": "jaw"},
        _RIGIFY_LIMBS, ("L", "R"),
        "Rigify human metarig (and the engine's rigify skeleton); a generated rig's DEF-/ORG- bones"),
    "rigify_fk": (
        # the FK spine runs from the torso's pivot: spine_fk.001 (the lower spine) and spine_fk (the
        # pelvis) point down from it, spine_fk.002 and .003 up; the torso control carries them all
        {"body": "torso", "hips": ("spine_fk", "torso"), "spine": "spine_fk.001", "chest": "spine_fk.002",
         "upperChest": "spine_fk.003", "neck": "neck", "head": "head", "jaw": "jaw_master"},
        {**_RIGIFY_LIMBS,
         **_limbs({"Eye": "eye.{S}", "Shoulder": "shoulder.{S}", "UpperArm": "upper_arm_fk.{S}",
                   "LowerArm": "forearm_fk.{S}", "Hand": "hand_fk.{S}", "UpperLeg": "thigh_fk.{S}",
                   "LowerLeg": "shin_fk.{S}", "Foot": "foot_fk.{S}", "Toes": ("toe_fk.{S}", "toe.{S}")}, {})},
        ("L", "R"), "a generated Rigify rig's FK controls (torso, spine_fk ..., upper_arm_fk.L, ...; "
                    "fingers f_index.01.L ...)"),
    "mixamo": (
        {"hips": "Hips", "spine": "Spine", "chest": "Spine1", "upperChest": "Spine2", "neck": "Neck",
         "head": "Head", "jaw": "Jaw"},
        _limbs({"Eye": "{S}Eye", "Shoulder": "{S}Shoulder", "UpperArm": "{S}Arm", "LowerArm": "{S}ForeArm",
                "Hand": "{S}Hand", "UpperLeg": "{S}UpLeg", "LowerLeg": "{S}Leg", "Foot": "{S}Foot",
                "Toes": "{S}ToeBase"},
               _finger_table(lambda f, i: f"{{S}}Hand{_MIXAMO_FINGER[f]}{i}")),
        ("Left", "Right"), "Mixamo (mixamorig:Hips ...; any namespace prefix)"),
    "unreal": (
        {"hips": "pelvis", "spine": "spine_01", "chest": "spine_02", "upperChest": ("spine_05", "spine_03"),
         "neck": "neck_01", "head": "head", "jaw": "jaw"},
        _limbs({"Eye": "eye_{S}", "Shoulder": "clavicle_{S}", "UpperArm": "upperarm_{S}",
                "LowerArm": "lowerarm_{S}", "Hand": "hand_{S}", "UpperLeg": "thigh_{S}", "LowerLeg": "calf_{S}",
                "Foot": "foot_{S}", "Toes": "ball_{S}"},
               _finger_table(lambda f, i: f"{_UNREAL_FINGER[f]}_0{i}_{{S}}")),
        ("l", "r"), "Unreal mannequin (UE4, UE5) and the engine's game skeleton"),
    "vrm": (
        {p: p for p in TORSO},
        _limbs({part: "{S}" + part for part in LIMBS},
               {**_finger_table(lambda f, i: f"{{S}}{f}{PHALANGES[i - 1]}"),
                # VRM 1.0 names the thumb metacarpal, proximal, distal (VRM 0.x: proximal ...)
                ("Thumb", "Proximal"): ("{S}ThumbMetacarpal", "{S}ThumbProximal"),
                ("Thumb", "Intermediate"): ("{S}ThumbIntermediate", "{S}ThumbProximal")}),
        ("left", "right"), "VRM humanoid bone names (leftUpperArm ...)"),
}

# prefixes that carry no meaning for the part: Mixamo namespaces, Rigify's deform/original layers
_PREFIX = re.compile(r"^(?:.*:|mixamorig\d*_|def-|org-)", re.IGNORECASE)


def normalise(name: str) -> str:
    """The form bone names are compared in: no namespace/layer prefix, lower case."""
    return _PREFIX.sub("", name, count=1).lower()


def convention_map(convention: str, names: list[str]) -> dict[str, str]:
    """humanoid part -> bone name of `names` under one convention (parts it lacks are left out)."""
    if convention not in CONVENTIONS:
        raise EngineError(f"unknown bone-map convention '{convention}' (known: {', '.join(CONVENTIONS)})")
    torso, limbs, (left, right), _ = CONVENTIONS[convention]
    by_norm: dict[str, str] = {}
    # a verbatim name wins over a prefixed one, a deform (DEF-) bone over an original (ORG-) one
    for n in sorted(names, key=lambda n: (n.lower() != normalise(n), n.lower().startswith("org-"))):
        by_norm.setdefault(normalise(n), n)
    used: set[str] = set()
    out: dict[str, str] = {}

    def claim(part: str, templates) -> None:
        for tpl in (templates if isinstance(templates, tuple) else (templates,)):
            for side_word, token in (("left", left), ("right", right)):
                if part.startswith(side_word):
                    name = tpl.replace("{S}", token)
                    break
            else:
                name = tpl
            found = by_norm.get(name.lower())
            if found is not None and found not in used:
                out[part] = found
                used.add(found)
                return

    for part in TORSO + CONTROLS:         # a control takes a bone no humanoid part claimed
        if part in torso:
            claim(part, torso[part])
    for side in SIDES:
        for key, templates in limbs.items():
            claim(side + key, templates)
    return out


def followers(names: list[str]) -> dict[str, str]:
    """Bones that constraints pose like a part and that take no keys: a generated Rigify rig's
    ORG- bones copy their FK controls (with the limbs on FK), so ORG-upper_arm.L is posed like the
    left upper arm. bone -> humanoid part; empty for other skeletons."""
    if not any(n in names for n in ("upper_arm_fk.L", "upper_arm_fk.R")):
        return {}
    org = [n for n in names if n.startswith("ORG-")]
    parts = convention_map("rigify", org)
    return {bone: part for part, bone in parts.items()}


REQUIRED = ("hips", "leftUpperArm", "rightUpperArm", "leftUpperLeg", "rightUpperLeg")


def detect(names: list[str]) -> tuple[str, dict[str, str]]:
    """(convention, humanoid part -> bone) for the convention that names most parts of `names`."""
    if any(n in names for n in ("upper_arm_fk.L", "upper_arm_fk.R")):
        # a generated Rigify rig: its DEF- bones follow constraints, its FK controls take keys
        best = ("rigify_fk", convention_map("rigify_fk", names))
    else:
        best = max(((c, convention_map(c, names)) for c in CONVENTIONS), key=lambda cm: len(cm[1]))
    missing = [p for p in REQUIRED if p not in best[1]]
    if missing:
        sample = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        raise EngineError(f"could not recognise the skeleton's bone names (bones: {sample}); no known convention "
                          f"({', '.join(CONVENTIONS)}) names its {', '.join(missing)}: give a bone map "
                          f"(JSON, format '{BONE_MAP_FORMAT}', docs/retarget.md)")
    return best


def read_bone_map(path: str | Path) -> dict[str, str]:
    """A JSON bone map file -> {target bone: humanoid part or source bone}."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise EngineError(f"{path}: bone map file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"{path}: not a readable JSON bone map ({exc})") from None
    return parse_bone_map(doc, str(path))


def parse_bone_map(doc, where: str = "bone map") -> dict[str, str]:
    """Validate a bone map document: {"format": "sapiens-bone-map", "version": "1.x",
    "bones": {target bone: humanoid part or source bone}} (a bare {target: part} dict is accepted)."""
    if not isinstance(doc, dict):
        raise EngineError(f"{where}: a bone map is a JSON object, not {type(doc).__name__}")
    if "bones" in doc:
        if doc.get("format", BONE_MAP_FORMAT) != BONE_MAP_FORMAT:
            raise EngineError(f"{where}: format is '{doc.get('format')}', expected '{BONE_MAP_FORMAT}'")
        if not str(doc.get("version", BONE_MAP_VERSION)).startswith("1."):
            raise EngineError(f"{where}: bone map version {doc.get('version')} is not supported (1.x)")
        doc = doc["bones"]
        if not isinstance(doc, dict):
            raise EngineError(f"{where}: 'bones' must be an object {{target bone: humanoid part}}")
    bad = [k for k, v in doc.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise EngineError(f"{where}: every entry maps a target bone name to a part name (strings); bad: {bad[:5]}")
    parts = list(doc.values())
    repeated = sorted({p for p in parts if parts.count(p) > 1})
    if repeated:
        raise EngineError(f"{where}: each part drives one target bone; repeated: {', '.join(repeated)}")
    return dict(doc)


def bone_map_document(mapping: dict[str, str], convention: str | None = None) -> dict:
    """A saveable bone map (target bone -> humanoid part)."""
    doc = {"format": BONE_MAP_FORMAT, "version": BONE_MAP_VERSION, "bones": dict(mapping)}
    if convention:
        doc["detected_convention"] = convention
    return doc
