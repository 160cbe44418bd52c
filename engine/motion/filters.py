"""One Euro filter (Casiez et al. 2012) over joint tracks: heavy smoothing while a joint is slow
(removes jitter), light smoothing while it moves fast (no lag on quick motion)."""

from __future__ import annotations

import numpy as np


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(tracks: np.ndarray, fps: float, *, min_cutoff: float = 1.0, beta: float = 2.0,
             d_cutoff: float = 1.0) -> np.ndarray:
    """Filter T x J x 3 positions (metres) sampled at fps; the speed of each joint (m/s) sets its
    cutoff: min_cutoff + beta * speed (Hz). Loops over frames only, vectorised over joints."""
    x = np.asarray(tracks, np.float64)
    out = np.empty_like(x)
    if len(x) == 0:
        return out
    dt = 1.0 / float(fps)
    out[0] = x[0]
    dx_hat = np.zeros(x.shape[1:])
    a_d = _alpha(np.asarray(d_cutoff, np.float64), dt)
    for t in range(1, len(x)):
        dx = (x[t] - out[t - 1]) / dt
        dx_hat = a_d * dx + (1 - a_d) * dx_hat
        speed = np.linalg.norm(dx_hat, axis=-1, keepdims=True)
        a = _alpha(min_cutoff + beta * speed, dt)
        out[t] = a * x[t] + (1 - a) * out[t - 1]
    return out
