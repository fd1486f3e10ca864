"""Aggregate every job's result.json under a directory into results.csv and results.md.

Reads only from disk, so any launcher, a crash or a resume still yields a correct table. Also a CLI:
`python -m unet_pipeline.results <sweep_dir>`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from .job import RESULT_FILE

CSV_FILE, MD_FILE = "results.csv", "results.md"
# (column in the markdown table, flattened result.json key)
MD_COLUMNS = [
    ("job", "job_dir"),
    ("model", "job.model"),
    ("engine", "job.engine"),
    ("precision", "job.precision"),
    ("batch", "job.batch"),
    ("shape", "shape"),
    ("input", "input"),
    ("dice", "metrics.dice"),
    ("dice min", "metrics.dice_min"),
    ("images", "metrics.num_images"),
    ("compiled as", "compiled_as"),
    ("img/s e2e", "throughput.end_to_end_ips"),
    ("img/s engine", "throughput.engine_ips"),
    ("status", "status"),
    ("error / notes", "remarks"),
]
_DROP = ("config", "traceback")


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
        relative = str(job_dir.relative_to(root))
        record["job_dir"] = job_dir.name if relative == "." else relative
        records.append(record)
    return records


def _compiled_as(row: pd.Series) -> str | None:
    """e.g. 'int8 83% + float32': what the engine really compiled."""
    ran = row.get("compiled.inference_precision")
    if not isinstance(ran, str):
        return None
    share = row.get("compiled.quantized_layer_share")
    return f"int8 {share:.0%} + {ran}" if isinstance(share, float) and share > 0 else ran


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Flatten records (dotted keys) and add the derived display columns."""
    trimmed = [{k: v for k, v in r.items() if k not in _DROP} for r in records]
    frame = pd.json_normalize(trimmed)
    for column in {key for _, key in MD_COLUMNS} | {"job.shape", "job.batch_range", "job.input_size", "notes"}:
        if column not in frame:
            frame[column] = None
    frame["shape"] = [
        f"dynamic {r[0]}..{r[1]}" if shape == "dynamic" and isinstance(r, list) else shape
        for shape, r in zip(frame["job.shape"], frame["job.batch_range"], strict=True)
    ]
    frame["input"] = [f"{s[0]}x{s[1]}" if isinstance(s, list) else None for s in frame["job.input_size"]]
    frame["compiled_as"] = frame.apply(_compiled_as, axis=1)
    frame["remarks"] = [
        err if isinstance(err, str) else ("; ".join(notes) if isinstance(notes, list) and notes else "")
        for err, notes in zip(frame["error"], frame["notes"], strict=True)
    ]
    return frame


def markdown(frame: pd.DataFrame) -> str:
    table = frame[[key for _, key in MD_COLUMNS]].copy()
    table.columns = [name for name, _ in MD_COLUMNS]
    table = table.astype(object).where(table.notna(), None)
    return table.to_markdown(index=False, floatfmt=".4g", missingval="-")


def write_tables(root: Path) -> pd.DataFrame:
    """Write root/results.csv (every field) and root/results.md (the summary); return the frame."""
    from .records import write_atomic

    frame = to_frame(load_records(root))
    csv_frame = frame.drop(columns=["remarks"])
    write_atomic(root / CSV_FILE, csv_frame.to_csv(index=False))
    failed = int((~frame["status"].isin(OK_STATUSES)).sum())
    header = (
        f"# Results: {root.name}\n\n{len(frame)} jobs, {len(frame) - failed} completed, {failed} not completed.\n\n"
    )
    write_atomic(root / MD_FILE, header + markdown(frame) + "\n")
    return frame


OK_STATUSES = ("completed", "planned")  # planned: a dry run that wrote its plan


def all_completed(frame: pd.DataFrame) -> bool:
    return bool(len(frame)) and bool(frame["status"].isin(OK_STATUSES).all())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_pipeline.results", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep (or run) dir holding job result.json files")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a directory", file=sys.stderr)
        return 2
    frame = write_tables(args.sweep_dir)
    if frame.empty:
        print(f"error: no jobs (result.json) under {args.sweep_dir}", file=sys.stderr)
        return 1
    print(markdown(frame))
    print(f"\nwrote {args.sweep_dir / CSV_FILE} and {args.sweep_dir / MD_FILE}")
    return 0 if all_completed(frame) else 1


if __name__ == "__main__":
    sys.exit(main())
