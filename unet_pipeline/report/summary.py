"""The terminal summary of a run or a sweep: what ran, Dice and its delta, speed, and where the full table is.

Why separate from results.md: the full table has over twenty columns (about 330 characters a row) and is for
reading in a viewer or pandas; a terminal gets at most 100 columns. What every job shares goes on one `ran:`
line, and the table keeps only what differs between jobs plus the figures, one line per job."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pandas as pd

from unet_pipeline.core import isa
from unet_pipeline.report.columns import Col
from unet_pipeline.report.warnings import warnings

WIDTH = 100
# (label, frame column): what a job ran; a column in the table where jobs differ, else on the `ran:` line
_AXES = (
    ("model", Col.MODEL),
    ("engine", Col.ENGINE),
    ("precision", Col.PRECISION),
    ("batch", Col.BATCH),
    ("shape", Col.SHAPE),
    ("input", Col.INPUT),
    ("images", Col.NUM_IMAGES),
    ("on", Col.HARDWARE),
)
_AXIS_OVERRIDES = {"model", "engine", "precision", "batch", "shape", "device"}  # already shown as an axis
_NOT_WHAT_RAN = ("hydra", "progress", "force", "cache")  # where and how a job ran, not what it measured
_OMITTED = "…"


def _number(value: object) -> str:
    """A figure in as few characters as its precision needs: 13012, 412, 30.9, 1.23, 0.0761."""
    if not isinstance(value, int | float) or pd.isna(value):
        return "-"
    size = abs(value)
    if size >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if size >= 10 else f"{value:.3g}" if size >= 0.01 else f"{value:.2g}"


def _hardware(row: pd.Series) -> str:
    """The GPU where one was used, else the CPU and its int8 class, e.g. 'AMD EPYC (avx2)'."""
    gpu = row.get(Col.GPU)
    if isinstance(gpu, str):
        return gpu
    flags = row.get(Col.CPU_FLAGS)
    arch = re.search(r"(x86_64|amd64|aarch64|arm64|ppc64le|s390x)", str(row.get(Col.PLATFORM) or ""))
    kind = isa.classify(flags if isinstance(flags, list) else [], arch.group(1) if arch else None).kind
    return f"{row.get(Col.CPU_MODEL) or 'unknown CPU'} ({kind})"


def _engines(frame: pd.DataFrame) -> str:
    """'openvino 2026.4.1', or every engine with its version where a sweep ran several."""
    pairs = dict.fromkeys(
        f"{n} {v}" if isinstance(v, str) else str(n)
        for n, v in zip(frame[Col.ENGINE], frame[Col.ENGINE_VERSION], strict=True)
        if isinstance(n, str)
    )
    return ", ".join(pairs)


def _override_columns(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The command-line overrides whose value differs between jobs and that no axis shows (recipe=..., ...): one
    column each, headed by the key's last part where that is unambiguous; '-' for a job that did not set it."""
    per_job = []
    for overrides in frame[Col.OVERRIDES]:
        pairs = (o.split("=", 1) for o in (overrides if isinstance(overrides, list) else []) if "=" in o)
        keys = ((k.lstrip("+~"), v) for k, v in pairs)
        per_job.append({k: v for k, v in keys if k not in _AXIS_OVERRIDES and k.split(".")[0] not in _NOT_WHAT_RAN})
    keys = list(dict.fromkeys(k for job in per_job for k in job))
    varying = [k for k in keys if len({job.get(k) for job in per_job}) > 1]
    short = [k.rsplit(".", 1)[-1] for k in varying]
    return {
        (name if short.count(name) == 1 else key): [job.get(key, "-") for job in per_job]
        for key, name in zip(varying, short, strict=True)
    }


def _calls(row: pd.Series) -> str:
    calls = row.get(Col.ENGINE_CALLS)
    if not isinstance(calls, int | float) or pd.isna(calls):
        return "-"
    return f"{int(calls)} cap" if row.get(Col.ENGINE_CAPPED) is True else str(int(calls))


def _shorten(rows: list[list[str]], column: int, width: int, keep_end: bool) -> None:
    for row in rows:
        if len(row[column]) > width:
            cut = max(1, width - 1)
            row[column] = _OMITTED + row[column][-cut:] if keep_end else row[column][:cut] + _OMITTED


_FIGURES = ("dice", "Δ fp32", "full", "img/s", "e2e", "p50 ms", "p99", "calls")
_MARK = "*"  # on a Δ whose paired 95 % interval excludes 0


def _figures(row: pd.Series) -> list[str]:
    delta = row.get(Col.DICE_DELTA)
    return [
        f"{row[Col.DICE]:.4f}" if pd.notna(row.get(Col.DICE)) else "-",
        f"{delta:+.5f}{_MARK if row.get(Col.DICE_DELTA_DISTINGUISHABLE) is True else ' '}" if pd.notna(delta) else "-",
        f"{row[Col.DICE_FULL]:.4f}" if pd.notna(row.get(Col.DICE_FULL)) else "-",
        _number(row.get(Col.ENGINE_IPS)),
        _number(row.get(Col.E2E_IPS)),
        _number(row.get(Col.P50_MS)),
        _number(row.get(Col.P99_MS)),
        _calls(row),
    ]


def _table(frame: pd.DataFrame, varying: list[tuple[str, str]], width: int) -> str:
    """One line per job: the job, what differs between jobs, the figures; status only where not all completed."""
    several = len(frame) > 1
    overrides = _override_columns(frame)
    with_status = not frame[Col.STATUS].eq("completed").all() or not several
    headers = ["job"] if several else []
    headers += [label for label, _ in varying] + list(overrides)
    text_columns = len(headers)
    headers += [*_FIGURES, *(["status"] if with_status else [])]
    rows = []
    for index, (_, row) in enumerate(frame.iterrows()):
        cells = [str(row[Col.JOB_DIR])] if several else []
        cells += [str(row[key]) for _, key in varying] + [values[index] for values in overrides.values()]
        rows.append(cells + _figures(row) + ([str(row.get(Col.STATUS))] if with_status else []))
    # too wide: shorten the job names first (keeping their ends), then the widest of what ran (its header too),
    # to 8 characters, then to 4: in a 100-column terminal a shortened cell beats a wrapped table
    table = [headers, *rows]
    right = set(range(text_columns, text_columns + len(_FIGURES)))
    for columns, floor in (([0] if several else [], 4), (range(text_columns), 8), (range(text_columns), 4)):
        while (excess := _width(table) - width) > 0:
            widths = {c: max(len(r[c]) for r in table) for c in columns}
            candidates = [c for c, w in widths.items() if w > floor]
            if not candidates:
                break
            column = max(candidates, key=widths.__getitem__)
            _shorten(table, column, max(floor, widths[column] - excess), keep_end=several and column == 0)
    return _render(table[0], table[1:], right)


def _width(table: list[list[str]]) -> int:
    return sum(max(len(r[c]) for r in table) for c in range(len(table[0]))) + 2 * (len(table[0]) - 1)


def _render(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    """Columns two spaces apart, figures right-aligned, a dashed rule under the header (no padding beyond the
    widest cell, which tabulate's formats add)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def _ran_line(frame: pd.DataFrame, shared: list[tuple[str, str]], width: int) -> str:
    """`ran: unet_demo · openvino 2026.4.1 · ...`: what every job shared (and the engines with their versions),
    folded between parts where it would pass the width."""
    first = frame.iloc[0]
    words = {"batch": "batch {}", "images": "{} images", "on": "on {}"}
    parts = [
        _engines(frame) if label == "engine" else words.get(label, "{}").format(first[key]) for label, key in shared
    ]
    if not any(label == "engine" for label, _ in shared) and _engines(frame):
        parts.insert(min(1, len(parts)), _engines(frame))
    lines, line = [], "ran:"
    for part in parts:
        if line != "ran:" and len(f"{line} · {part}") > width:
            lines.append(f"{line} ·")
            line = f"     {part}"
        else:
            line = f"{line} {part}" if line == "ran:" or line.isspace() else f"{line} · {part}"
    return "\n".join([*lines, line])


def _notes(frame: pd.DataFrame, width: int) -> list[str]:
    """Each job's notes (not warnings or errors: those go to stderr), folded to the width."""
    lines = []
    for job, notes in zip(frame[Col.JOB_DIR], frame[Col.NOTES], strict=True):
        for note in notes if isinstance(notes, list) else []:
            prefix = f"{job}: " if len(frame) > 1 else ""
            lines.append(textwrap.fill(note, width, initial_indent=f"note: {prefix}", subsequent_indent="  "))
    return lines


def summary(frame: pd.DataFrame, root: Path, width: int = WIDTH) -> str:
    """The run's or the sweep's summary, every line at most `width` characters (paths excepted)."""
    frame = frame.copy()
    frame[Col.HARDWARE] = frame.apply(_hardware, axis=1)
    for _, key in _AXES:
        frame[key] = frame[key].astype(object).where(frame[key].notna(), "-")
    varying = [(label, key) for label, key in _AXES if frame[key].astype(str).nunique() > 1]
    shared = [(label, key) for label, key in _AXES if (label, key) not in varying and frame.iloc[0][key] != "-"]
    lines = [_ran_line(frame, shared, width), "", _table(frame, varying, width), ""]
    lines += _notes(frame, width)
    if frame.get(Col.DICE_DELTA_DISTINGUISHABLE, pd.Series(dtype=object)).notna().any():
        lines.append(f"Δ fp32: mean per-image difference; {_MARK}: its paired 95 % interval excludes 0 (results.md)")
    done = int(frame[Col.STATUS].eq("completed").sum())
    if len(frame) > 1:
        left = len(frame) - done
        lines.append(
            f"{len(frame)} jobs, " + (f"{done} completed, {left} not (see status)" if left else "all completed")
        )
    lines.append(f"full table: {root / 'results.md'} (every field: results.csv)")
    return "\n".join(lines)


def print_report(frame: pd.DataFrame, root: Path, record: Path | None = None) -> None:
    """The summary on stdout (and the job's result.json for a single run); warnings on stderr."""
    print(summary(frame, root))
    if record is not None:
        print(f"record: {record}")
    for line in warnings(frame):
        print(line, file=sys.stderr)
