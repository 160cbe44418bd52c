"""What made a bundle: engine and torch versions, backend, device, number format, model files."""

from __future__ import annotations

from engine.checkpoints import sha256_file


def provenance(tasks, sizes, paths, device: str, dtype_name: str, backend: str, progress) -> dict:
    import torch

    from engine import __version__
    from engine.runtime.device import DTYPES

    models = {}
    for task in tasks:
        path = paths[task]
        models[task] = {"file": str(path), "name": path.name, "bytes": path.stat().st_size,
                        "sha256": sha256_file(path, progress), "size": sizes[task]}
    dtype = str(DTYPES[dtype_name]).replace("torch.", "") if dtype_name in DTYPES else dtype_name
    return {"engine": "sapiens-engine", "engine_version": __version__, "backend": backend, "device": device,
            "dtype": dtype, "torch_version": torch.__version__, "models": models}
