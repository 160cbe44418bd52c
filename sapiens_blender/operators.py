"""Operators: run the engine on a photo and import the result, cancel, import an avatar folder.

`sapiens.run` is modal when invoked from the UI (a window timer polls the engine; Blender stays
responsive; Esc or the Cancel button stops it) and blocking when executed from a script, the
batch runner or a test (same code path, waiting in a loop). Either way errors are reported with
`self.report`, so scripts get a RuntimeError with the same words the user sees.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import motion_transfer, user_data, views
from .engine_client import EngineClientError, check_python
from .engine_session import SESSION
from .pipeline import Pipeline, ProgressPrinter, RunRequest, cached_bundle, photo_cache_dir
from .preferences import get_preferences

# the run in progress (one at a time)
ACTIVE: Pipeline | None = None


def _redraw_ui(context) -> None:
    """The sidebar panel and the status bar show the run's progress: redraw them."""
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "STATUSBAR"):
                area.tag_redraw()


def import_avatar_dir(avatar_dir: Path, name: str, context, *, texture: bool = True):
    """Read and import an avatar folder; AvatarError/GlbError say what is wrong with it."""
    from .blender.import_avatar import import_avatar
    from .io.avatar import read_avatar

    avatar = read_avatar(avatar_dir)
    if not texture:
        for material in avatar.materials:
            material.albedo_image = material.normal_image = None
    return import_avatar(avatar, name=name, scene=context.scene)


def import_motion_dir(motion_dir: Path, name: str, context):
    """Import an animate output folder (armature + action); AvatarError says what is wrong with it."""
    from .blender.import_avatar import import_motion

    return import_motion(motion_dir, name=name, scene=context.scene)


def avatar_folder(directory: str, filepath: str) -> Path:
    """The avatar folder a file-browser choice names: the browsed directory, else `filepath`
    itself when it is a folder, else the folder holding the chosen file (avatar.json ...)."""
    if directory:
        return Path(bpy.path.abspath(directory))
    path = Path(bpy.path.abspath(str(filepath)))
    return path if path.is_dir() else path.parent


def sequence_problem(kind: str, path: str) -> str | None:
    """Why the chosen sequence input cannot be animated, in words; None when it can."""
    from .properties import VIDEO_SUFFIXES

    if kind == "SEQUENCE":
        if not path or not Path(path).is_dir():
            return f"Choose a folder of frames first (not a folder: {path or 'nothing chosen'})"
        return None
    if not path or not Path(path).is_file():
        return f"Choose a video file first (not found: {path or 'nothing chosen'})"
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        return f"{Path(path).name} is not a video the engine reads ({', '.join(VIDEO_SUFFIXES)})"
    return None


# --- one run: start it, then poll it until it is over (the timer's job; tests drive it by hand) ---


def start_run(context, report, *, rebuild_only: bool = False, debug_sleep_steps: int = 0) -> bool:
    """Start the engine run for the scene's input on a worker thread; False (reported) if it cannot.

    report(types, message) is an operator's `report` (or any callable with its signature).
    """
    global ACTIVE
    prefs = get_preferences(context)
    status = context.window_manager.sapiens_status
    status.error = ""

    def fail(message: str) -> bool:
        status.error = message
        report({"ERROR"}, message)
        return False

    if ACTIVE is not None and not ACTIVE.finished:
        return fail("A Sapiens run is already in progress: cancel it or wait for it")
    if prefs is None:
        return fail("The Sapiens add-on is not enabled in the preferences")
    try:
        check_python(bpy.path.abspath(prefs.engine_python))
    except EngineClientError as exc:
        return fail(str(exc))
    request = _request(context.scene.sapiens, prefs, rebuild_only, debug_sleep_steps)
    if isinstance(request, str):
        return fail(request)
    engine_settings = prefs.engine_settings()
    if debug_sleep_steps:
        from dataclasses import replace

        engine_settings = replace(engine_settings, debug=True)
    ACTIVE = Pipeline(request, lambda: SESSION.client(engine_settings)).start()
    status.running, status.stage, status.fraction, status.message = True, "engine", 0.0, "starting the engine"
    context.window_manager.progress_begin(0.0, 1.0)
    return True


def _request(settings, prefs, rebuild_only: bool, debug_sleep_steps: int) -> RunRequest | str:
    """What to run for the chosen input, or why the input is not usable (in words). The panel's
    and the preferences' options go as the engine's job parameters."""
    common = dict(cache_root=user_data.cache_root(), debug_sleep_steps=debug_sleep_steps)
    if settings.input_kind != "PHOTO":
        source = settings.sequence_path()
        problem = sequence_problem(settings.input_kind, source)
        if problem:
            return problem
        if rebuild_only:
            return "Rebuild reuses a photo's predictions; for a sequence press Animate"
        params = {**prefs.predict_options("animate"), **settings.animate_params()}
        return RunRequest(photos=[source], method="animate", params=params, **common)
    photo = bpy.path.abspath(settings.photo)
    if not photo or not Path(photo).is_file():
        return f"Choose a photo first (not found: {photo or 'nothing chosen'})"
    params = {**prefs.predict_options("avatar"), **settings.avatar_params()}
    if views.fusing(settings):  # several photos of one person: one avatar (views.py)
        if rebuild_only:
            return "Rebuild takes one photo's predictions; a fused avatar is rebuilt by Build Avatar (predictions cached)"
        problem = views.views_problem(settings, photo)
        if problem:
            return problem
        return RunRequest(photos=[photo, *views.view_photos(settings)], method="avatar", params=params, **common)
    params.pop("fuse", None)
    if rebuild_only and cached_bundle(photo_cache_dir(common["cache_root"], photo)) is None:
        return "No cached predictions for this photo yet: run Build Avatar once first"
    return RunRequest(photos=[photo], method="build" if rebuild_only else "avatar", params=params, **common)


def poll_run(context, report) -> set[str] | None:
    """One timer tick: copy the run's progress to the panel and status bar; once it is over,
    import the result (on this, the main thread) and report. None while it runs, else the
    operator's outcome ({"FINISHED"} or {"CANCELLED"})."""
    pipeline = ACTIVE
    if pipeline is None:
        return {"CANCELLED"}
    wm = context.window_manager
    status = wm.sapiens_status
    _state, status.stage, status.fraction, status.message = pipeline.poll()
    wm.progress_update(status.fraction)
    _redraw_ui(context)
    if not pipeline.finished:
        return None
    return _finish_run(context, pipeline, report)


def _finish_run(context, pipeline: Pipeline, report) -> set[str]:
    global ACTIVE
    ACTIVE = None
    wm = context.window_manager
    status = wm.sapiens_status
    status.running = False
    wm.progress_end()
    _redraw_ui(context)
    if pipeline.state == "cancelled":
        status.message = "cancelled"
        report({"WARNING"}, f"Sapiens: {pipeline.message}; the scene is unchanged")
        return {"CANCELLED"}
    if pipeline.state == "error":
        status.error = pipeline.error or "the engine failed"
        report({"ERROR"}, status.error)
        return {"CANCELLED"}
    if pipeline.request.method == "animate" and motion_transfer.animate_target(context) is not None:
        return motion_transfer.finish_animate_onto(context, pipeline.avatar_dir, report)
    try:
        if pipeline.request.method == "animate":
            result = import_motion_dir(pipeline.avatar_dir, pipeline.request.name, context)
        else:
            texture = context.scene.sapiens.import_textures
            result = import_avatar_dir(pipeline.avatar_dir, pipeline.request.name, context, texture=texture)
    except Exception as exc:  # the importer removed what it made; say why it failed
        status.error = f"Import of {pipeline.avatar_dir} failed: {exc}"
        report({"ERROR"}, status.error)
        return {"CANCELLED"}
    status.last_collection = result.collection.name
    cached = " (cached predictions)" if pipeline.used_cache else ""
    status.message = f"imported {result.collection.name}{cached}"
    report({"INFO"}, f"Sapiens: imported {result.collection.name}{cached}")
    return {"FINISHED"}


def run_blocking(context, report, *, rebuild_only: bool = False) -> set[str]:
    """A whole run for scripts and the batch: start, wait, import; every progress step the engine
    reports (stages, tasks, batches) is printed as the CLI prints it."""
    if not start_run(context, report, rebuild_only=rebuild_only):
        return {"CANCELLED"}
    printer = ProgressPrinter(prefix="sapiens: ")
    pipeline = ACTIVE
    while True:
        pipeline.wait(0.1)
        printer(pipeline)
        done = poll_run(context, report)
        if done is not None:
            printer(pipeline)
            return done


class SAPIENS_OT_run(bpy.types.Operator):
    """Run the Sapiens engine on the photo (or animate the sequence) and import the result into a new collection"""

    bl_idname = "sapiens.run"
    bl_label = "Build Avatar"
    # an undo step once the avatar is imported; a cancelled or failed run adds none and changes nothing
    bl_options = {"REGISTER", "UNDO"}

    rebuild_only: BoolProperty(
        name="Rebuild Only", default=False, options={"SKIP_SAVE"},
        description="Only rebuild the mesh from the cached predictions (no model pass)",
    )

    _timer = None

    @classmethod
    def poll(cls, context):
        return ACTIVE is None or ACTIVE.finished

    def execute(self, context):  # scripts, batch, tests: the same steps, waiting here
        return run_blocking(context, self.report, rebuild_only=self.rebuild_only)

    def invoke(self, context, event):
        if context.window is None:  # no window to own a timer (background Blender)
            return self.execute(context)
        if not start_run(context, self.report, rebuild_only=self.rebuild_only):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and ACTIVE is not None:
            ACTIVE.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        done = poll_run(context, self.report)
        if done is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        return done

    def cancel(self, context):  # Blender ends the modal operator (file load, quit)
        if ACTIVE is not None:
            ACTIVE.cancel()
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None


class SAPIENS_OT_cancel(bpy.types.Operator):
    """Stop the running engine job; nothing is imported"""

    bl_idname = "sapiens.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return ACTIVE is not None and not ACTIVE.finished

    def execute(self, context):
        ACTIVE.cancel()
        context.window_manager.sapiens_status.message = "cancelling..."
        return {"FINISHED"}


class SAPIENS_OT_import_avatar(bpy.types.Operator, ImportHelper):
    """Import an avatar folder written by the engine (avatar.glb, avatar.json, skeleton.json)"""

    bl_idname = "sapiens.import_avatar"
    bl_label = "Import Sapiens Avatar"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ""
    use_filter_folder = True
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    filter_glob: StringProperty(default="avatar.json;avatar.glb", options={"HIDDEN"})

    def execute(self, context):
        folder = avatar_folder(self.directory, self.filepath)
        try:
            result = import_avatar_dir(folder, folder.name, context)
        except Exception as exc:
            self.report({"ERROR"}, f"Import of {folder} failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {result.collection.name}")
        return {"FINISHED"}


class SAPIENS_OT_bind_generated_rig(bpy.types.Operator):
    """Bind the avatar's mesh to the rig Rigify generated from its armature (the DEF- deform bones)"""

    bl_idname = "sapiens.bind_generated_rig"
    bl_label = "Bind Mesh to Generated Rig"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        from .blender.rigify_bind import metarig_of

        return metarig_of(context.active_object) is not None

    def execute(self, context):
        from .blender.rigify_bind import RigifyBindError, bind_to_generated_rig, metarig_of

        try:
            rig, meshes = bind_to_generated_rig(metarig_of(context.active_object))
        except RigifyBindError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Bound {', '.join(m.name for m in meshes)} to {rig.name}")
        return {"FINISHED"}


def _preset_items(self, context):
    from .export_presets import PRESETS

    return [(name, spec["label"], f"Axes and scale as {spec['label']} expects them") for name, spec in PRESETS.items()]


class SAPIENS_OT_export_avatar(bpy.types.Operator):
    """Export the selected avatar (mesh, armature, action) with Blender's FBX, USD or glTF exporter, set up for a game engine or DCC"""

    bl_idname = "sapiens.export_avatar"
    bl_label = "Export Avatar"

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: StringProperty(default="*.fbx;*.usdc;*.usd;*.usda;*.usdz;*.glb;*.blend", options={"HIDDEN"})
    preset: EnumProperty(name="Preset", items=_preset_items, description="Target application: its axes and units")

    @classmethod
    def poll(cls, context):
        from .blender.export_avatar import avatar_objects

        return bool(avatar_objects(context.active_object))

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = bpy.path.abspath(f"//{context.active_object.name}.fbx")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        from .blender.export_avatar import avatar_objects, export_avatar
        from .export_presets import ExportRequestError

        objects = avatar_objects(context.active_object)
        try:
            path = export_avatar(objects, bpy.path.abspath(self.filepath), self.preset)
        except (ExportRequestError, OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Export failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {', '.join(o.name for o in objects)} to {path}")
        return {"FINISHED"}


class SAPIENS_OT_stop_engine(bpy.types.Operator):
    """Stop the engine process (it starts again on the next run)"""

    bl_idname = "sapiens.stop_engine"
    bl_label = "Stop Engine"

    @classmethod
    def poll(cls, context):
        return (ACTIVE is None or ACTIVE.finished) and SESSION.current is not None

    def execute(self, context):
        SESSION.stop()
        return {"FINISHED"}


def batch_arguments(prefs, list_path: str, runner: str | None = None) -> list[str]:
    """The batch runner's arguments: the list, the engine environment, the runner (when chosen)
    and the preferences' model options (checkpoint folder, device, sizes, ...) under the
    engine's flag names."""
    from .batch import model_arguments

    args = [str(list_path)] + (["--runner", runner] if runner else [])
    if prefs is None:
        return args
    if prefs.engine_python:
        args += ["--engine-python", bpy.path.abspath(prefs.engine_python)]
    if prefs.engine_source:
        args += ["--engine-source", bpy.path.abspath(prefs.engine_source)]
    options = prefs.predict_options("avatar")
    if prefs.checkpoint_dir:
        options["checkpoints"] = bpy.path.abspath(prefs.checkpoint_dir)
    return args + model_arguments(options)


BATCH_RUNNERS = (
    ("LIST", "As the List Says", "The list's runner: key (one by one when it names none)"),
    ("serial", "One by One", "One engine job per item, in turn"),
    ("ray", "Ray (Engine Batch)", "All items to the engine's Ray batch (models loaded once per worker, resumable; "
     "a cluster with the list's ray: address), then each avatar imported and saved"),
)
BATCH = {"process": None, "log": None}   # the background batch this Blender started


def batch_running() -> bool:
    process = BATCH["process"]
    return process is not None and process.poll() is None


class SAPIENS_OT_batch(bpy.types.Operator, ImportHelper):
    """Rebuild many photos from a YAML/JSON list into .blend files, in a background Blender process"""

    bl_idname = "sapiens.batch"
    bl_label = "Batch Build from List"

    filename_ext = ".yaml"
    filter_glob: StringProperty(default="*.yaml;*.yml;*.json", options={"HIDDEN"})
    runner: EnumProperty(name="Runner", items=BATCH_RUNNERS, default="LIST",
                         description="How the list's items are built before their .blend files are saved")

    @classmethod
    def poll(cls, context):
        return not batch_running()

    def execute(self, context):
        import os
        import subprocess
        import sys

        script = Path(__file__).with_name("batch.py")
        runner = None if self.runner == "LIST" else self.runner
        args = ["--", *batch_arguments(get_preferences(context), self.filepath, runner)]
        if bpy.app.binary_path:  # a Blender executable: run the list in a background instance
            command = [bpy.app.binary_path, "--background", "--factory-startup", "--python", str(script), *args]
        else:  # bpy as a Python module
            command = [sys.executable, str(script), *args]
        log = user_data.user_dir("logs") / "batch.log"
        with open(log, "w", encoding="utf-8") as fh:
            process = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ))
        BATCH.update(process=process, log=log)
        self.report({"INFO"}, f"Batch started (pid {process.pid}); progress in {log}")
        return {"FINISHED"}


class SAPIENS_OT_batch_cancel(bpy.types.Operator):
    """Stop the running batch: its engine job is cancelled, the files already saved are kept
    (a rerun of the list does only what is missing)"""

    bl_idname = "sapiens.batch_cancel"
    bl_label = "Cancel Batch"

    @classmethod
    def poll(cls, context):
        return batch_running()

    def execute(self, context):
        BATCH["process"].terminate()   # SIGTERM: the batch cancels its engine job and stops the engine
        self.report({"INFO"}, f"Batch cancelled; its log: {BATCH['log']}")
        return {"FINISHED"}


CLASSES = (
    SAPIENS_OT_run, SAPIENS_OT_cancel, SAPIENS_OT_import_avatar, SAPIENS_OT_bind_generated_rig,
    SAPIENS_OT_export_avatar, SAPIENS_OT_stop_engine, SAPIENS_OT_batch, SAPIENS_OT_batch_cancel,
)


def cancel_active() -> None:
    """On unregister: stop a run in progress so its thread does not outlive the add-on."""
    global ACTIVE
    if ACTIVE is not None and not ACTIVE.finished:
        ACTIVE.cancel()
        ACTIVE.wait(5.0)
    ACTIVE = None
