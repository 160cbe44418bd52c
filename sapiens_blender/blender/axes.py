"""The avatar frame (glTF's, +Y up) to Blender's (+Z up), as Blender's glTF importer converts it."""

from __future__ import annotations

import numpy as np


def to_blender_axes(vectors: np.ndarray) -> np.ndarray:
    """N x 3 avatar-frame vectors -> Blender: (x, y, z) -> (x, -z, y)."""
    v = np.asarray(vectors, np.float32)
    return np.ascontiguousarray(np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1))
