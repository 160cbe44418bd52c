"""Add-on preferences: the engine's Python environment, checkpoints, model sizes, device."""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from . import env_setup, user_data
from .engine_session import EngineSettings

PACKAGE = __package__
TASKS = ("pose", "seg", "normal", "pointmap", "albedo")
SIZES = [(s, s, f"Sapiens2 {s}") for s in ("0.1b", "0.4b", "0.8b", "1b", "5b")]
DEVICES = [
    ("auto", "Auto", "The GPU when the engine sees one, else the CPU"),
    ("cpu", "CPU", "Always the CPU"),
    ("cuda", "CUDA GPU", "An NVIDIA GPU (fails when there is none)"),
]

# the environment being created, if any (one at a time)
_ENV_SETUP: env_setup.EnvSetup | None = None


def _size_property(task: str):
    return EnumProperty(name=task.capitalize(), items=SIZES, default="0.4b", description=f"Model size for {task}")


class SapiensPreferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    engine_python: StringProperty(
        name="Engine Python",
        description="Python interpreter (or environment folder) of the engine's environment",
        subtype="FILE_PATH",
    )
    engine_source: StringProperty(
        name="Engine Source",
        description="Optional: a source checkout of the engine to run instead of the installed one",
        subtype="DIR_PATH",
    )
    engine_package: StringProperty(
        name="Engine Package",
        description="What 'Create Environment' installs: a path to the engine's source or wheel, or a pip requirement",
        default="sapiens-blender",
    )
    checkpoint_dir: StringProperty(
        name="Checkpoints", description="Folder with the Sapiens2 checkpoints", subtype="DIR_PATH"
    )
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    size_pose: _size_property("pose")
    size_seg: _size_property("seg")
    size_normal: _size_property("normal")
    size_pointmap: _size_property("pointmap")
    size_albedo: _size_property("albedo")
    env_status: StringProperty(name="Status", default="")
    engine_debug: BoolProperty(
        name="Debug Methods", description="Start the engine with --debug (for testing clients)", default=False,
        options={"HIDDEN"},
    )

    def draw(self, context):
        layout = self.layout
        box = layout.box()
        box.label(text="Engine environment", icon="CONSOLE")
        box.prop(self, "engine_python")
        box.prop(self, "engine_source")
        row = box.row(align=True)
        row.prop(self, "engine_package", text="Install")
        row.operator(SAPIENS_OT_create_engine_env.bl_idname, icon="ADD")
        if self.env_status:
            box.label(text=self.env_status, icon="INFO")
        box = layout.box()
        box.label(text="Models", icon="OUTLINER_OB_ARMATURE")
        box.prop(self, "checkpoint_dir")
        row = box.row(align=True)
        row.operator(SAPIENS_OT_download_checkpoints.bl_idname, icon="IMPORT")
        if not bpy.app.online_access:
            row.enabled = False
            box.label(text="Downloads need online access (Preferences > System > Network)", icon="ERROR")
        box.prop(self, "device")
        col = box.column(align=True)
        for task in TASKS:
            col.prop(self, f"size_{task}")
        layout.label(text=f"User data: {user_data.user_dir()}", icon="FILE_FOLDER")

    # --- what the rest of the add-on reads ----------------------------------------------------
    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            python=bpy.path.abspath(self.engine_python),
            engine_source=bpy.path.abspath(self.engine_source) if self.engine_source else "",
            debug=self.engine_debug,
            log_path=str(user_data.engine_log()),
            cwd=str(user_data.user_dir("engine")),
            checkpoint_dir=bpy.path.abspath(self.checkpoint_dir) if self.checkpoint_dir else "",
        )

    def predict_options(self) -> dict:
        sizes = {task: getattr(self, f"size_{task}") for task in TASKS}
        options: dict = {"device": self.device}
        # one size for all tasks is the common case; per-task sizes go as a task -> size mapping
        options["size"] = sizes["pose"] if len(set(sizes.values())) == 1 else sizes
        return options


def get_preferences(context=None) -> SapiensPreferences | None:
    """The add-on's preferences, or None when it runs without being enabled (bpy as a module)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(PACKAGE)
    return addon.preferences if addon else None


class SAPIENS_OT_create_engine_env(bpy.types.Operator):
    """Create a Python environment in the add-on's user folder and install the engine into it"""

    bl_idname = "sapiens.create_engine_env"
    bl_label = "Create Environment"

    def execute(self, context):
        global _ENV_SETUP
        prefs = get_preferences(context)
        if prefs is None:
            self.report({"ERROR"}, "Enable the Sapiens add-on first")
            return {"CANCELLED"}
        if _ENV_SETUP is not None and _ENV_SETUP.state == "running":
            self.report({"WARNING"}, "An engine environment is already being created")
            return {"CANCELLED"}
        package = prefs.engine_package.strip()
        if os.path.exists(bpy.path.abspath(package)):
            package = bpy.path.abspath(package)
        env_dir = user_data.user_dir("engine-env")
        _ENV_SETUP = env_setup.EnvSetup(env_dir, package).start()
        prefs.env_status = f"Creating {env_dir} and installing {package}..."
        bpy.app.timers.register(_poll_env_setup, first_interval=1.0)
        self.report({"INFO"}, prefs.env_status)
        return {"FINISHED"}


def _poll_env_setup():
    setup = _ENV_SETUP
    prefs = get_preferences()
    if setup is None or prefs is None:
        return None
    if setup.state == "running":
        prefs.env_status = f"Installing... {setup.summary[-90:]}"
        return 1.0
    if setup.state == "done":
        prefs.engine_python = str(setup.env_python)
        prefs.env_status = f"Created {setup.env_dir} with the engine ({setup.log[-2][-60:]})"
    else:
        log = user_data.user_dir("logs") / "engine-env.log"
        log.write_text("\n".join(setup.log), encoding="utf-8")
        prefs.env_status = f"Failed: {setup.summary[-80:]} (full log: {log})"
    print("sapiens_blender:", prefs.env_status)
    return None


class SAPIENS_OT_download_checkpoints(bpy.types.Operator):
    """Download the selected model checkpoints with the engine (needs online access)"""

    bl_idname = "sapiens.download_checkpoints"
    bl_label = "Download Checkpoints"

    @classmethod
    def poll(cls, context):
        return bool(bpy.app.online_access)

    def execute(self, context):
        import subprocess

        from .engine_client import EngineClientError, check_python

        prefs = get_preferences(context)
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Online access is disabled (Preferences > System > Network)")
            return {"CANCELLED"}
        try:
            python = check_python(prefs.engine_python if prefs else None)
        except EngineClientError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        command = [str(python), "-m", "engine", "download"]
        env = dict(os.environ)
        if prefs.checkpoint_dir:
            env["SAPIENS_CHECKPOINTS"] = bpy.path.abspath(prefs.checkpoint_dir)
        log = user_data.user_dir("logs") / "download.log"
        with open(log, "w", encoding="utf-8") as fh:  # the child keeps its own handle
            subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=env)
        self.report({"INFO"}, f"Downloading checkpoints in the background (log: {log})")
        return {"FINISHED"}


CLASSES = (SAPIENS_OT_create_engine_env, SAPIENS_OT_download_checkpoints, SapiensPreferences)
