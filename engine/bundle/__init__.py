"""Predictions bundles (docs/bundle.md): the format (`format`) and the reference demo scripts'
outputs read as bundles (`reference`), so their users can come straight to the engine.

`read_bundle` reads either; the rest of the engine imports from here.
"""

from __future__ import annotations

from pathlib import Path

from engine.bundle.format import (
    FILES, FORMAT_NAME, FORMAT_VERSION, MAP_FIELDS, NUM_KEYPOINTS, NUM_SEG_CLASSES, Bundle, bundle_json,
    is_bundle, keypoints_inside, keypoints_json, read_engine_bundle, read_exr, validate_bundle,
    write_bundle,
)
from engine.bundle.reference import read_reference_outputs
from engine.colour import linear_to_srgb, srgb_to_linear
from engine.errors import BundleError

__all__ = [
    "FILES", "FORMAT_NAME", "FORMAT_VERSION", "MAP_FIELDS", "NUM_KEYPOINTS", "NUM_SEG_CLASSES", "Bundle",
    "BundleError", "bundle_json", "is_bundle", "keypoints_inside", "keypoints_json", "linear_to_srgb",
    "read_bundle", "read_engine_bundle", "read_exr", "read_reference_outputs", "srgb_to_linear",
    "validate_bundle", "write_bundle",
]


def read_bundle(path: str | Path | list, *, image: str | Path | None = None) -> Bundle:
    """Read a bundle directory, or the outputs of the reference demo scripts.

    `path` is a bundle directory (it holds bundle.json), or reference output files / directories
    (one path or a list: seg, normal, pointmap and pose outputs may sit in different folders);
    then `image` names the photo, else it is looked for beside the outputs.
    """
    if isinstance(path, (list, tuple)):
        return read_reference_outputs(list(path), image=image)
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle or file")
    if path.is_dir() and is_bundle(path):
        return read_engine_bundle(path)
    if path.is_file() and path.name == "bundle.json":
        raise BundleError(f"{path}: the description file of the bundle {path.parent}; give the bundle's folder")
    if path.is_file() and path.suffix not in (".npy", ".json"):
        raise BundleError(f"{path}: a file, not a predictions bundle (a folder holding bundle.json) nor an "
                          "output of the reference demo scripts (.npy, _predictions.json)")
    return read_reference_outputs(path, image=image)
