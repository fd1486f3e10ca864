"""Records read back from disk: one per job directory under a run or sweep, or a row saying why there is none
(killed, still running, unreadable), so a table never silently drops a job.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from unet_pipeline.record.schema import RESULT_FILE


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def load_records(root: Path) -> list[dict[str, Any]]:
    """One record per job dir under root: its result.json, or a row saying why there is none."""
    job_dirs = {p.parent for p in root.rglob(RESULT_FILE)} | {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    records = []
    for job_dir in sorted(job_dirs, key=_natural_key):
        path = job_dir / RESULT_FILE
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            record = {"status": "missing", "error": "no result.json (job killed or still running)"}
        except (OSError, json.JSONDecodeError) as exc:
            record = {"status": "unreadable", "error": f"result.json unreadable ({type(exc).__name__})"}
        if record.get("status") == "running":
            record["error"] = "did not finish (killed, or still running); re-run the sweep to resume it"
        relative = str(job_dir.relative_to(root))
        record["job_dir"] = job_dir.name if relative == "." else relative
        records.append(record)
    return records
