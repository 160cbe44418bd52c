"""Operators: run the engine on a photo and import the result, cancel, import an avatar folder.

`sapiens.run` is modal when invoked from the UI (a window timer polls the engine; Blender stays
responsive; Esc or the Cancel button stops it) and blocking when executed from a script, the
batch runner or a test (same code path, waiting in a loop). Either way errors are reported with
`self.report`, so scripts get a RuntimeError with the same words the user sees.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import user_data
from .engine_client import EngineClientError, check_python
from .engine_session import SESSION
from .pipeline import Pipeline, RunRequest, photo_cache_dir, cached_bundle
from .preferences import get_preferences

# the run in progress (one at a time)
ACTIVE: Pipeline | None = None


def _redraw_ui(context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
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


class SAPIENS_OT_run(bpy.types.Operator):
    """Run the Sapiens engine on the photo and import the avatar into a new collection"""

    bl_idname = "sapiens.run"
    bl_label = "Build Avatar"
    bl_options = {"REGISTER"}

    rebuild_only: BoolProperty(
        name="Rebuild Only", default=False, options={"SKIP_SAVE"},
        description="Only rebuild the mesh from the cached predictions (no model pass)",
    )
    debug_sleep_steps: IntProperty(default=0, min=0, options={"HIDDEN", "SKIP_SAVE"})

    _timer = None

    @classmethod
    def poll(cls, context):
        return ACTIVE is None or ACTIVE.finished

    # --- starting ---------------------------------------------------------------------------
    def _start(self, context) -> bool:
        global ACTIVE
        settings = context.scene.sapiens
        prefs = get_preferences(context)
        status = context.window_manager.sapiens_status
        status.error = ""
        if prefs is None:
            return self._fail(context, "The Sapiens add-on is not enabled in the preferences")
        try:
            check_python(bpy.path.abspath(prefs.engine_python))
        except EngineClientError as exc:
            return self._fail(context, str(exc))
        photo = bpy.path.abspath(settings.photo)
        if settings.input_kind != "PHOTO":
            return self._fail(context, "Image sequences and videos are not supported by this version yet")
        if not photo or not Path(photo).is_file():
            return self._fail(context, f"Choose a photo first (not found: {photo or 'nothing chosen'})")
        cache_root = user_data.cache_root()
        if self.rebuild_only and cached_bundle(photo_cache_dir(cache_root, photo)) is None:
            return self._fail(context, "No cached predictions for this photo yet: run Build Avatar once first")
        engine_settings = prefs.engine_settings()
        if self.debug_sleep_steps:
            from dataclasses import replace

            engine_settings = replace(engine_settings, debug=True)
        request = RunRequest(
            photos=[photo],
            cache_root=cache_root,
            predict_options=prefs.predict_options(),
            build_options=settings.build_options(),
            reuse_predictions=settings.reuse_predictions or self.rebuild_only,
            debug_sleep_steps=self.debug_sleep_steps,
        )
        ACTIVE = Pipeline(request, lambda: SESSION.client(engine_settings)).start()
        status.running, status.stage, status.fraction, status.message = True, "engine", 0.0, "starting the engine"
        context.window_manager.progress_begin(0.0, 1.0)
        return True

    def _fail(self, context, message: str) -> bool:
        context.window_manager.sapiens_status.error = message
        self.report({"ERROR"}, message)
        return False

    # --- polling ----------------------------------------------------------------------------
    def _tick(self, context) -> set[str] | None:
        """Copy the pipeline's progress to the UI; once it is over, import and report."""
        pipeline = ACTIVE
        status = context.window_manager.sapiens_status
        state, stage, fraction, message = pipeline.poll()
        status.stage, status.fraction, status.message = stage, fraction, message
        context.window_manager.progress_update(fraction)
        _redraw_ui(context)
        if not pipeline.finished:
            return None
        return self._finish(context, pipeline)

    def _finish(self, context, pipeline: Pipeline) -> set[str]:
        global ACTIVE
        ACTIVE = None
        status = context.window_manager.sapiens_status
        status.running = False
        context.window_manager.progress_end()
        if pipeline.state == "cancelled":
            status.message = "cancelled"
            self.report({"WARNING"}, f"Sapiens: {pipeline.message}; the scene is unchanged")
            return {"CANCELLED"}
        if pipeline.state == "error":
            status.error = pipeline.error or "the engine failed"
            self.report({"ERROR"}, status.error)
            return {"CANCELLED"}
        settings = context.scene.sapiens
        try:
            result = import_avatar_dir(
                pipeline.avatar_dir, pipeline.request.name, context, texture=settings.build_texture
            )
        except Exception as exc:  # the importer removed what it made; say why it failed
            status.error = f"Import of {pipeline.avatar_dir} failed: {exc}"
            self.report({"ERROR"}, status.error)
            return {"CANCELLED"}
        status.last_collection = result.collection.name
        cached = " (cached predictions)" if pipeline.used_cache else ""
        status.message = f"imported {result.collection.name}{cached}"
        self.report({"INFO"}, f"Sapiens: imported {result.collection.name}{cached}")
        return {"FINISHED"}

    # --- entry points -------------------------------------------------------------------------
    def execute(self, context):
        if not self._start(context):
            return {"CANCELLED"}
        while True:
            ACTIVE.wait(0.1)
            done = self._tick(context)
            if done is not None:
                return done

    def invoke(self, context, event):
        if not self._start(context):
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
        done = self._tick(context)
        if done is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return done


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
        folder = Path(bpy.path.abspath(self.directory or Path(self.filepath).parent))
        try:
            result = import_avatar_dir(folder, folder.name, context)
        except Exception as exc:
            self.report({"ERROR"}, f"Import of {folder} failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {result.collection.name}")
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


class SAPIENS_OT_batch(bpy.types.Operator, ImportHelper):
    """Rebuild many photos from a YAML/JSON list into .blend files, in a background Blender process"""

    bl_idname = "sapiens.batch"
    bl_label = "Batch Build from List"

    filename_ext = ".yaml"
    filter_glob: StringProperty(default="*.yaml;*.yml;*.json", options={"HIDDEN"})

    def execute(self, context):
        import os
        import subprocess
        import sys

        prefs = get_preferences(context)
        script = Path(__file__).with_name("batch.py")
        args = ["--", self.filepath]
        if prefs is not None and prefs.engine_python:
            args += ["--engine-python", bpy.path.abspath(prefs.engine_python)]
        if prefs is not None and prefs.engine_source:
            args += ["--engine-source", bpy.path.abspath(prefs.engine_source)]
        if bpy.app.binary_path:  # a Blender executable: run the list in a background instance
            command = [bpy.app.binary_path, "--background", "--factory-startup", "--python", str(script), *args]
        else:  # bpy as a Python module
            command = [sys.executable, str(script), *args]
        log = user_data.user_dir("logs") / "batch.log"
        with open(log, "w", encoding="utf-8") as fh:
            process = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ))
        self.report({"INFO"}, f"Batch started (pid {process.pid}); progress in {log}")
        return {"FINISHED"}


CLASSES = (SAPIENS_OT_run, SAPIENS_OT_cancel, SAPIENS_OT_import_avatar, SAPIENS_OT_stop_engine, SAPIENS_OT_batch)


def cancel_active() -> None:
    """On unregister: stop a run in progress so its thread does not outlive the add-on."""
    global ACTIVE
    if ACTIVE is not None and not ACTIVE.finished:
        ACTIVE.cancel()
        ACTIVE.wait(5.0)
    ACTIVE = None
