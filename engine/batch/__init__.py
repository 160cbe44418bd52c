"""`sapiens-engine batch`: many photos (or bundles) to bundles and avatars on Ray Data.

- `inputs`: INPUT arguments (photos, folders, globs, list files with per-item options, bundles)
  -> items with distinct names.
- `items`: what identifies an item's work (its key) and the per-item record that makes a run
  resumable (`batch_item.json`, written last, atomically).
- `stages`: the work on one item or one batch of items (check a photo, predict, build), plain
  functions the Ray pipeline and the serial path both call.
- `pipeline`: the Ray Data pipeline (CPU tasks, an actor pool for the models).
- `report`: batch_report.jsonl, the summary line, batch_report.html.
- `preview`: small front and back renders of an avatar with a numpy z-buffer rasterizer.

docs/batch.md describes the command, the output layout and running on a cluster.
"""
