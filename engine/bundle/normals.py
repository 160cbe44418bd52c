"""The normal maps' promise (docs/bundle.md): each pixel's normal is a unit vector, or NaN in all
three channels where the model has none (off the mask). The photo's normal map and every detail
crop's are checked the same way."""

from __future__ import annotations

import numpy as np

# a normal whose length is further than this from 1 is not a unit vector
UNIT_TOLERANCE = 1e-3


def normal_map_problem(normal: np.ndarray) -> str | None:
    """What breaks the promise, in words, or None."""
    # channel by channel: numpy's reductions over a 3-long last axis cost several times more
    x, y, z = normal[..., 0], normal[..., 1], normal[..., 2]
    if np.isinf(x).any() or np.isinf(y).any() or np.isinf(z).any():
        return "normal has infinite values"
    nan_x, nan_y, nan_z = np.isnan(x), np.isnan(y), np.isnan(z)
    unknown = nan_x & nan_y & nan_z
    partly = (nan_x | nan_y | nan_z) & ~unknown
    if partly.any():
        row, col = (int(v[0]) for v in np.nonzero(partly))
        return (f"normal has {int(partly.sum())} partly-NaN vectors (first at row {row}, column {col}); "
                "an unknown normal is NaN in all three channels")
    finite = ~unknown
    x, y, z = x[finite], y[finite], z[finite]
    length = np.sqrt(x * x + y * y + z * z)  # np.linalg.norm(n[finite], axis=-1)'s sums, in its order
    if length.size and np.abs(length - 1).max() > UNIT_TOLERANCE:
        return f"normal is not unit length (|n| up to {np.abs(length - 1).max():.3g} away from 1)"
    return None
