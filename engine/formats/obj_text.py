"""Vectorised text for OBJ lines: the bytes `str.format` gives, built with numpy.

Formatting a 300k-vertex mesh one number at a time took 1-2 s (4M+ numbers through Python's float
formatting), the largest single cost of a mesh-only build. Here every number becomes a row of
ASCII digits by integer arithmetic over whole columns; unused positions hold a 0 byte that is
dropped at the end. Fixed-point values are rounded exactly as Python does (round half to even on
the exact binary value): the rare products that land too near a .5 boundary for float64 to
decide are formatted by Python itself.
"""

from __future__ import annotations

import numpy as np

NOTHING = 0  # byte marking an unused position (never part of OBJ text)
_SAFE_SCALED = 2.0**52  # beyond this, float64 products are no longer exact enough to decide


def _digit_columns(n: np.ndarray, width: int) -> np.ndarray:
    """n (non-negative int64) -> (len, width) ASCII digits, zero-padded on the left.

    One column per decimal position, each divided by a scalar (numpy's fast path for a scalar
    divisor), in int32 when the values allow: several times faster than broadcasting a powers
    vector."""
    out = np.empty((len(n), width), np.uint8)
    if width == 0:
        return out
    work = n.astype(np.int32) if (n.size == 0 or int(n.max()) < 2**31) else n
    for column in range(width - 1, -1, -1):  # a dozen positions at most, not a loop over values
        rest = work // 10
        np.add(work - rest * 10, ord("0"), out=out[:, column], casting="unsafe")
        work = rest
    return out


def _digits(n: np.ndarray) -> np.ndarray:
    """n (non-negative int64) -> (len, width) ASCII digits without leading zeros (at least one)."""
    width = len(str(int(n.max()))) if n.size else 1
    digits = _digit_columns(n, width)
    if width > 1:
        power = 10 ** np.arange(width - 1, 0, -1, dtype=np.int64)
        digits[:, :-1][n[:, None] < power] = NOTHING
    return digits


def integer_field(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as `str(v)` (rows of ASCII, 0-padded with NOTHING)."""
    return _digits(np.asarray(values, np.int64))


def fixed_field(values: np.ndarray, decimals: int) -> np.ndarray | None:
    """Floats as `format(v, f".{decimals}f")`; None when a value is out of the exact range
    (non-finite or too large), so the caller falls back to Python formatting."""
    x = np.asarray(values, np.float64)
    scale = 10.0**decimals
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.abs(x) * scale
    if x.size and not (np.isfinite(scaled).all() and scaled.max() < _SAFE_SCALED / 1024):
        return None
    n = np.rint(scaled).astype(np.int64)
    # A product within float64 error of a .5 boundary: let Python round the exact value.
    fraction = scaled - np.floor(scaled)
    unsure = np.nonzero(np.abs(fraction - 0.5) < 1e-6)[0]
    for i in unsure:  # a handful at most, not a loop over the vertices
        text = format(float(x[i]), f".{decimals}f").lstrip("-")
        n[i] = int(text.replace(".", ""))
    power = 10**decimals
    sign = np.where(np.signbit(x), ord("-"), NOTHING).astype(np.uint8)[:, None]
    whole = _digits(n // power)
    point = np.full((len(x), 1), ord("."), np.uint8)
    return np.concatenate([sign, whole, point, _digit_columns(n % power, decimals)], axis=1)


def lines(pieces: list, n_lines: int) -> bytes:
    """Join per-line pieces (bytes constants or n_lines x w fields) into text, each line ending
    with a newline."""
    columns = []
    for piece in pieces:
        if isinstance(piece, bytes):
            columns.append(np.broadcast_to(np.frombuffer(piece, np.uint8), (n_lines, len(piece))))
        else:
            columns.append(piece)
    columns.append(np.full((n_lines, 1), ord("\n"), np.uint8))
    table = np.concatenate(columns, axis=1).ravel()
    return table[table != NOTHING].tobytes()
