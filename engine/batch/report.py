"""What a batch run tells: batch_report.jsonl (one row per item), a summary line, and
batch_report.html, a contact sheet with each avatar's front and back preview."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

REPORT = "batch_report.jsonl"
SHEET = "batch_report.html"


def report_row(row: dict) -> dict:
    """The report's view of a finished row: status, outputs, timings per stage, error in words."""
    out = {"name": row["name"], "input": row["path"], "kind": row["kind"], "status": row["status"],
           "outputs": json.loads(row.get("outputs") or "{}"), "timings": json.loads(row.get("timings") or "{}"),
           "error": row.get("error") or None}
    if row.get("note"):
        out["note"] = row["note"]
    return out


class ReportWriter:
    """Appends rows as they finish (a killed run still leaves the rows it got), then the sheet."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.rows: list[dict] = []
        self._file = open(out_dir / REPORT, "w")

    def add(self, row: dict) -> dict:
        entry = report_row(row)
        self.rows.append(entry)
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        return entry

    def close(self) -> None:
        self._file.close()
        write_sheet(self.out_dir, self.rows)


def counts(rows: list[dict]) -> dict:
    return {status: sum(r["status"] == status for r in rows) for status in ("done", "skipped", "failed")}


def summary_line(rows: list[dict], seconds: float, ran: int) -> str:
    """`ran`: the items this run worked on (skipped ones and ones refused before any work do not
    count towards the rate)."""
    c = counts(rows)
    rate = ran / seconds if seconds > 0 else 0.0
    return (f"{len(rows)} items: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed "
            f"in {seconds:.1f} s ({rate:.2f} items/s)")


def write_sheet(out_dir: Path, rows: list[dict]) -> Path:
    cards = []
    for r in rows:
        preview = r["outputs"].get("preview")
        image = (f'<img src="{html.escape(r["name"])}/{html.escape(preview)}" alt="front and back">'
                 if preview else '<div class="none">no preview</div>')
        words = html.escape(r.get("error") or ", ".join(f"{k} {v:.1f} s" for k, v in r["timings"].items()))
        cards.append(f'<figure class="{r["status"]}">{image}<figcaption><b>{html.escape(r["name"])}</b> '
                     f'{r["status"]}<br>{words}</figcaption></figure>')
    c = counts(rows)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>batch report</title><style>
body{{font:13px sans-serif;margin:16px}} figure{{display:inline-block;width:264px;margin:6px;vertical-align:top}}
img{{width:256px;border:1px solid #ccc}} .failed{{color:#a00}} .none{{width:256px;height:256px;background:#eee}}
</style></head><body><h1>{c['done']} done, {c['skipped']} skipped, {c['failed']} failed</h1>
{''.join(cards)}</body></html>
"""
    path = out_dir / SHEET
    tmp = out_dir / f".{SHEET}.{os.getpid()}.tmp"
    tmp.write_text(page)
    tmp.replace(path)
    return path
