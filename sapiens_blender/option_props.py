"""Blender properties made from the engine's option table (option_table): one PropertyGroup per
job, built with type() when the add-on registers, drawn generically, read back as protocol
parameters under the engine's own names.

An optional option without a value ("not set": the engine decides) is 0 for numbers, "" for text,
"NONE" for a choice, no flag for a multiple choice and (0, 0, 0, 0) for a box; unset options are
left out of the parameters. A choice whose engine default is a value (the rig) shows "NONE" as
"None" too, sent as "none": turned off, not the default.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, IntVectorProperty, StringProperty

from .option_table import OFF, OptionSpec, parse_sizes

NOT_SET = "NONE"
_PATH_SUBTYPES = {"path": "DIR_PATH"}


def _description(spec: OptionSpec, unset: str = "") -> str:
    text = spec.help[:1].upper() + spec.help[1:] if spec.help else spec.label
    return f"{text} ({unset}: not set)" if unset else text


def _unset_number(spec: OptionSpec, job: str) -> bool:
    return spec.optional and spec.default_for(job) is None


def property_for(spec: OptionSpec, job: str):
    """The bpy property for one option, with the engine's default for `job`; None for kinds the
    add-on fills itself (lists of paths)."""
    default = spec.default_for(job)
    name = spec.label
    if spec.kind == "bool":
        return BoolProperty(name=name, default=bool(default), description=_description(spec))
    if spec.kind in ("int", "float"):
        number = IntProperty if spec.kind == "int" else FloatProperty
        if _unset_number(spec, job):
            return number(name=name, default=0, min=0, soft_max=spec.max or 2**31 - 1,
                          description=_description(spec, "0"))
        low = spec.min if spec.min is not None else -(2**31)
        high = spec.max if spec.max is not None else 2**31 - 1
        if spec.kind == "int":
            low, high = int(low), int(high)
        return number(name=name, default=default, min=low, max=high, description=_description(spec))
    if spec.kind == "choice":
        items = [(c, c.replace("_", " ").title(), "") for c in spec.choices]
        if spec.optional and (default is None or OFF not in spec.choices):
            # "None": not set where the engine's default is none, else turned off (a rig by default)
            items.insert(0, (NOT_SET, "None", "Not set" if default is None else "Off"))
            default = NOT_SET if default is None else default
        return EnumProperty(name=name, items=items, default=default, description=_description(spec))
    if spec.kind == "choices":
        items = [(c, c, "") for c in spec.choices]
        return EnumProperty(name=name, items=items, options={"ENUM_FLAG"}, default=set(default or ()),
                            description=_description(spec, "none chosen" if spec.optional else ""))
    if spec.kind == "box":
        return IntVectorProperty(name=name, size=4, default=(0, 0, 0, 0), min=0,
                                 description=_description(spec, "all 0"))
    if spec.kind in ("string", "path", "bytes", "sizes"):
        text = "" if default is None else (default if isinstance(default, str) else str(default))
        return StringProperty(name=name, default=text, subtype=_PATH_SUBTYPES.get(spec.kind, "NONE"),
                              description=_description(spec, "empty" if spec.optional else ""))
    return None


def make_group(class_name: str, specs: list[OptionSpec], job: str) -> type:
    """A PropertyGroup class with one property per option, named as the option."""
    annotations = {}
    for spec in specs:
        prop = property_for(spec, job)
        if prop is not None:
            annotations[spec.name] = prop
    return type(class_name, (bpy.types.PropertyGroup,), {"__annotations__": annotations, "__module__": __name__})


def value_of(owner, spec: OptionSpec, job: str):
    """The protocol value of one option's property for `job`; None when it is not set."""
    value = getattr(owner, spec.name)
    if spec.kind in ("int", "float") and spec.optional and spec.default is None and value == 0:
        return None
    if spec.kind == "choice":
        if value != NOT_SET:
            return value
        return None if spec.default_for(job) is None else OFF  # off, where the default is a value
    if spec.kind == "choices":
        chosen = [c for c in spec.choices if c in value]
        return chosen or (None if spec.optional else [])
    if spec.kind == "box":
        box = list(value)
        return None if not any(box) else box
    if spec.kind in ("string", "path", "bytes"):
        if not value:
            return None
        return bpy.path.abspath(value) if spec.kind == "path" else value
    if spec.kind == "sizes":
        return parse_sizes(value, spec.name) if value else None
    return value


def params_of(owner, specs: list[OptionSpec], job: str) -> dict:
    """Protocol parameters of `job` from the properties of `owner` (unset options left out)."""
    params = {}
    for spec in specs:
        if job in spec.jobs and spec.name in owner.bl_rna.properties:
            value = value_of(owner, spec, job)
            if value is not None:
                params[spec.name] = value
    return params


def draw_options(layout, owner, specs: list[OptionSpec]) -> None:
    """Each option's property, grouped in boxes by the table's groups, in the table's order."""
    groups: dict[str, list[OptionSpec]] = {}
    for spec in specs:
        if spec.name in owner.bl_rna.properties:
            groups.setdefault(spec.group, []).append(spec)
    for group, members in groups.items():
        box = layout.box()
        box.label(text=group.replace("_", " ").title())
        for spec in members:
            if spec.kind == "choices":
                box.label(text=spec.label)
                box.row(align=True).prop(owner, spec.name)
            else:
                box.prop(owner, spec.name)
