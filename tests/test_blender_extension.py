"""The extension package: manifest validates, builds into a zip, installs and enables in Blender."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

pytestmark = pytest.mark.blender
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import build_extension  # noqa: E402


def test_manifest_fields():
    manifest = tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text())
    assert manifest["id"] == "sapiens_blender" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(manifest["permissions"]) == {"files", "network"}


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    return build_extension.build(tmp_path_factory.mktemp("dist"))


def test_build_packages_only_the_addon(built_zip):
    names = set(zipfile.ZipFile(built_zip).namelist())
    assert {"blender_manifest.toml", "__init__.py", "engine_client.py", "checkpoint_download.py", "io/glb.py", "io/motion.py",
            "blender/import_avatar.py", "blender/armature.py", "blender/action.py", "blender/export_avatar.py",
            "engine_options.json", "option_table.py", "export_presets.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") or n.startswith(("tests/", "engine/")) for n in names)
    result = subprocess.run(
        build_extension.builder_command(None, "validate", str(built_zip)), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_broken_manifest_is_refused(tmp_path):
    source = build_extension.stage(tmp_path)
    manifest = (source / "blender_manifest.toml").read_text().replace('type = "add-on"', 'type = "plugin"')
    (source / "blender_manifest.toml").write_text(manifest)
    result = subprocess.run(build_extension.builder_command(None, "validate", str(source)), capture_output=True, text=True)
    assert result.returncode != 0 and "type" in result.stdout + result.stderr


INSTALL_SCRIPT = textwrap.dedent(
    """
    import sys, bpy, addon_utils
    module = "bl_ext.user_default.sapiens_blender"
    assert bpy.ops.extensions.package_install_files(
        repo="user_default", filepath=sys.argv[-1], enable_on_install=True) == {"FINISHED"}
    assert module in bpy.context.preferences.addons, "enabled"
    assert hasattr(bpy.types.Scene, "sapiens") and hasattr(bpy.types, "SAPIENS_PT_main")
    assert bpy.ops.sapiens.run.poll()
    prefs = bpy.context.preferences.addons[module].preferences
    prefs.engine_python = ""
    try:
        bpy.ops.sapiens.run()
        raise SystemExit("a run without an engine environment must fail")
    except RuntimeError as exc:
        assert "Preferences" in str(exc), exc
    from bl_ext.user_default.sapiens_blender import user_data
    assert "extensions" in str(user_data.user_dir()), user_data.user_dir()
    addon_utils.disable(module, default_set=True)
    assert not hasattr(bpy.types.Scene, "sapiens") and not hasattr(bpy.types, "SAPIENS_PT_main")
    addon_utils.enable(module, default_set=True)
    assert hasattr(bpy.types, "SAPIENS_PT_main"), "re-enables"
    addon_utils.disable(module, default_set=True)
    print("INSTALL_OK")
    """
)


def test_zip_installs_enables_and_disables_cleanly(built_zip, tmp_path):
    """In a separate Blender (bpy) process with its own user folders, like a user's install."""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    env.pop("SAPIENS_BLENDER_USER_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", INSTALL_SCRIPT, str(built_zip)], capture_output=True, text=True, env=env, timeout=300
    )
    assert "INSTALL_OK" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "blender_user" / "extensions" / "user_default" / "sapiens_blender" / "__init__.py").exists()


def _addon_leftovers() -> dict:
    """Everything the add-on hooks into Blender, as names: classes, properties, draw hooks, timers, handlers."""
    from sapiens_blender import operators, panel, preferences, properties

    classes = [c for m in (operators, panel, preferences, properties) for c in m.CLASSES]
    hooks = {
        owner: [f.__module__ for f in getattr(bpy.types, owner)._dyn_ui_initialize() if "sapiens" in f.__module__]
        for owner in ("TOPBAR_MT_file_import", "STATUSBAR_HT_header")
    }
    handlers = [
        name for name in dir(bpy.app.handlers) if not name.startswith("_")
        and isinstance(getattr(bpy.app.handlers, name), list)
        and any("sapiens" in getattr(f, "__module__", "") for f in getattr(bpy.app.handlers, name))
    ]
    return {
        "classes": sorted(c.__name__ for c in classes if c.is_registered),
        "type_names": sorted(n for n in dir(bpy.types) if n.startswith(("SAPIENS_", "Sapiens"))),
        "properties": [p for p in ("Scene.sapiens", "WindowManager.sapiens_status")
                       if hasattr(getattr(bpy.types, p.split(".")[0]), p.split(".")[1])],
        "hooks": hooks,
        "timers": [t.__name__ for t in (preferences.poll_download, preferences._poll_env_setup)
                   if bpy.app.timers.is_registered(t)],
        "handlers": handlers,
    }


def test_register_unregister_twice_leaves_nothing_behind(tmp_path, monkeypatch):
    import addon_utils

    from sapiens_blender import preferences

    monkeypatch.setenv("SAPIENS_BLENDER_USER_DIR", str(tmp_path / "user"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    clean = _addon_leftovers()
    assert clean["classes"] == clean["type_names"] == clean["properties"] == clean["timers"] == []
    for _ in range(2):
        addon_utils.enable("sapiens_blender", default_set=True, handle_error=None)
        enabled = _addon_leftovers()
        assert {"SAPIENS_PT_main", "SAPIENS_OT_run", "SapiensPreferences"} <= set(enabled["classes"])
        assert len(enabled["properties"]) == 2
        # one hook each, however often the add-on was enabled before
        assert {k: len(v) for k, v in enabled["hooks"].items()} == {"TOPBAR_MT_file_import": 1, "STATUSBAR_HT_header": 1}
        bpy.app.timers.register(preferences.poll_download, first_interval=3600)  # as a download would
        addon_utils.disable("sapiens_blender", default_set=True, handle_error=None)
        assert _addon_leftovers() == clean
