"""Add-on preferences: the engine's Python environment, checkpoints, model sizes, device."""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, PointerProperty, StringProperty

from . import checkpoint_download, env_setup, option_props, option_table, user_data
from .engine_session import EngineSettings

PACKAGE = __package__
TASKS = ("pose", "seg", "normal", "pointmap", "albedo")
# the sizes with task checkpoints (engine.checkpoints.TASK_SIZES; 0.1b exists only as a backbone)
SIZES = [(s, s, f"Sapiens2 {s}") for s in ("0.4b", "0.8b", "1b", "5b")]
DEVICES = [
    ("auto", "Auto", "The GPU when the engine sees one, else the CPU"),
    ("cpu", "CPU", "Always the CPU"),
    ("cuda", "CUDA GPU", "An NVIDIA GPU (fails when there is none)"),
]

# the environment being created and the download running, if any (one of each at a time)
_ENV_SETUP: env_setup.EnvSetup | None = None
_DOWNLOAD: checkpoint_download.CheckpointDownload | None = None


# model options with their own settings here (per-task sizes, a device menu, the checkpoint
# folder the downloads fill); every other model option comes from the engine's table
_OWN_MODEL_OPTIONS = ("size", "device", "checkpoints")


def _model_specs() -> list:
    return [s for s in option_table.job_options("avatar", groups=(option_table.MODEL_GROUP,))
            if s.name not in _OWN_MODEL_OPTIONS]


ModelOptions = option_props.make_group("SapiensModelOptions", _model_specs(), "avatar")


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
    model: PointerProperty(type=ModelOptions)
    env_status: StringProperty(name="Status", default="")
    download_status: StringProperty(name="Download", default="")
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
        if self.download_status:
            box.label(text=self.download_status, icon="INFO")
        box.prop(self, "device")
        col = box.column(align=True)
        for task in TASKS:
            col.prop(self, f"size_{task}")
        option_props.draw_options(box, self.model, _model_specs())
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

    def task_sizes(self) -> dict[str, str]:
        return {task: getattr(self, f"size_{task}") for task in TASKS}

    def predict_options(self, job: str = "avatar") -> dict:
        """The model parameters of `job` (avatar, predict, animate, batch) from these preferences.

        `size` goes as one size for every task, or a task -> size mapping when sizes differ (both
        forms the engine's `size` option takes); the checkpoint folder goes to the engine as
        $SAPIENS_CHECKPOINTS (engine_settings)."""
        sizes = self.task_sizes()
        options: dict = {"device": self.device}
        options["size"] = sizes["pose"] if len(set(sizes.values())) == 1 else sizes
        options.update(option_props.params_of(self.model, _model_specs(), job))
        return options

    def download_commands(self) -> list[list[str]]:
        """The engine download calls that fetch every published checkpoint these preferences use."""
        from .engine_client import check_python

        python = check_python(bpy.path.abspath(self.engine_python))
        folder = bpy.path.abspath(self.checkpoint_dir) if self.checkpoint_dir else ""
        return checkpoint_download.download_commands(python, self.task_sizes(), folder)


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
        global _DOWNLOAD
        from .engine_client import EngineClientError

        prefs = get_preferences(context)
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Online access is disabled (Preferences > System > Network)")
            return {"CANCELLED"}
        if prefs is None:
            self.report({"ERROR"}, "Enable the Sapiens add-on first")
            return {"CANCELLED"}
        if _DOWNLOAD is not None and _DOWNLOAD.state == "running":
            self.report({"WARNING"}, "A checkpoint download is already running")
            return {"CANCELLED"}
        try:
            commands = prefs.download_commands()
        except EngineClientError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        source = bpy.path.abspath(prefs.engine_source) if prefs.engine_source else ""
        log = user_data.user_dir("logs") / "download.log"
        _DOWNLOAD = checkpoint_download.CheckpointDownload(commands, log, checkpoint_download.engine_env(source)).start()
        prefs.download_status = f"Downloading... (log: {log})"
        if not bpy.app.timers.is_registered(poll_download):
            bpy.app.timers.register(poll_download, first_interval=1.0)
        self.report({"INFO"}, f"Downloading checkpoints in the background (log: {log})")
        return {"FINISHED"}


def poll_download():
    """Timer: copy the download's progress into the preferences; stops once it is over."""
    download = _DOWNLOAD
    prefs = get_preferences()
    if download is None or prefs is None:
        return None
    prefs.download_status = download.summary[-100:]
    return 1.0 if download.state == "running" else None


def stop_background_work() -> None:
    """On unregister: no timer of this module may outlive the add-on (its work threads are daemons)."""
    for timer in (poll_download, _poll_env_setup):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)


CLASSES = (ModelOptions, SAPIENS_OT_create_engine_env, SAPIENS_OT_download_checkpoints, SapiensPreferences)
