"""sapiens-blender's engine: Sapiens2 inference, surface building and rigging, without Blender.

The public entry points are imported lazily so that light commands (the stdio server, the
CLI's --help) start without importing torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "build_model": "engine.models.sapiens2",
    "load_model": "engine.models.loading",
    "inspect_checkpoint": "engine.models.loading",
    "decode_heatmaps": "engine.codecs.udp_heatmap",
    "read_bundle": "engine.bundle",
    "write_bundle": "engine.bundle",
    "Bundle": "engine.bundle",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
