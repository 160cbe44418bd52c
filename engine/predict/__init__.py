"""The predict pipeline: photos -> Sapiens2 task models -> one predictions bundle per photo (and person).

engine.predict.Predictor loads the models once and runs many photos; predict_photos is the
one-call form. The package splits along the pipeline's seams: selection (tasks, checkpoints,
device and number format), photos (names, output check, loading), people, ops (CPU recipe or GPU
operations, chosen once), tasks (one task on a batch), writing (bundles, the writer thread),
provenance.
"""

from engine.predict.photos import bundle_names
from engine.predict.predictor import DEFAULT_BATCH, PhotoResult, Predictor, predict_photos
from engine.predict.selection import TASK_ORDER, parse_sizes, resolve_tasks

__all__ = ["DEFAULT_BATCH", "TASK_ORDER", "PhotoResult", "Predictor", "bundle_names", "parse_sizes",
           "predict_photos", "resolve_tasks"]
