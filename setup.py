"""Package layout that pyproject.toml cannot say alone.

The repository keeps the engine's tables, rigs and bundled sample in `assets/` (beside `engine/`,
where people look for them), but an installed engine must carry them: each folder of `assets/`
becomes a data-only package under `engine.assets`, so a wheel holds them at `engine/assets/`.
`engine.paths` finds them in either place. Everything else about the project is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

NOT_DATA = ["__pycache__", "*.__pycache__"]
ENGINE_PACKAGES = find_namespace_packages(include=["engine", "engine.*"], exclude=NOT_DATA)
ASSET_FOLDERS = ["", *find_namespace_packages(where="assets", exclude=NOT_DATA)]  # "" = assets/ itself
ASSET_PACKAGES = {
    "engine.assets" + (f".{folder}" if folder else ""): "assets" + (f"/{folder.replace('.', '/')}" if folder else "")
    for folder in ASSET_FOLDERS
}

setup(
    packages=[*ENGINE_PACKAGES, *ASSET_PACKAGES],
    package_dir=ASSET_PACKAGES,
    package_data={package: ["*"] for package in ASSET_PACKAGES},
)
