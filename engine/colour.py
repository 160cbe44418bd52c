"""sRGB transfer functions (IEC 61966-2-1), the engine's one copy, on numpy arrays."""

from __future__ import annotations

import numpy as np


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded values, both in [0, 1] (inputs clipped)."""
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values -> linear light, both in [0, 1] (inputs clipped)."""
    c = np.clip(srgb, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, np.power((c + 0.055) / 1.055, 2.4))
