"""Errors the engine raises on purpose.

Every problem a user can cause (a bad file, a wrong checkpoint, an odd image) is raised as an
EngineError subclass with a message that names the file and the problem; the CLI and the stdio
server turn these into one clear line instead of a traceback.
"""


class EngineError(Exception):
    """Base class: a problem with the user's input or environment, explained in words."""

    code = "engine_error"


class CheckpointError(EngineError):
    """A checkpoint file is missing, unreadable, of an unknown layout or for the wrong task."""

    code = "bad_checkpoint"


class InputImageError(EngineError):
    """A photo cannot be used: not an image, truncated, too small or too large."""

    code = "bad_image"


class BundleError(EngineError):
    """A predictions bundle (or avatar) on disk is incomplete or inconsistent."""

    code = "bad_bundle"


class Cancelled(EngineError):
    """The client asked to stop the job; nothing was written."""

    code = "cancelled"
