"""Recommend: the configuration of a sweep to ship under the user's constraints, and why every other row lost.

Why intervals and spreads: a recommendation must hold up on the next images and the next run. A row meets a
Dice constraint only when the far end of its drop's paired 95 % interval is within it (a point estimate inside the
budget with an interval reaching past it is rejected), and one row beats another on speed only when their repeats'
ranges do not overlap (`benchmark.repeats`); a tie goes to the higher Dice.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from unet_pipeline.config import SelectConfig, check_ranges
from unet_pipeline.core import PipelineError, write_atomic, write_json
from unet_pipeline.record import load_records
from unet_pipeline.report.columns import Col
from unet_pipeline.report.summary import WIDTH

REFERENCE = "force_float32"
# objective -> (figure, its repeats, higher is better, unit)
_OBJECTIVES = {
    "e2e_throughput": (Col.E2E_IPS, Col.E2E_PASSES_IPS, True, "img/s end to end"),
    "engine_throughput": (Col.ENGINE_IPS, Col.ENGINE_ROUNDS_IPS, True, "img/s engine"),
    "latency": (Col.P99_MS, None, False, "ms p99"),
}


@dataclass
class Candidate:
    """One row of the sweep as the recommendation sees it."""

    job: str
    label: str
    precision: str
    status: str
    error: str | None
    dice: float | None
    delta: float | None  # mean Dice difference to the engine's fp32 row, its 95 % interval, the worst image's
    delta_low: float | None
    delta_high: float | None
    worst_image: float | None
    speed: float | None  # the objective's figure (median of the repeats) and the range of the repeats
    speed_low: float | None
    speed_high: float | None
    e2e_ips: float | None
    p99_ms: float | None
    dice_reasons: list[str] = field(default_factory=list)
    speed_reasons: list[str] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return self.dice_reasons + self.speed_reasons


@dataclass
class Recommendation:
    """The chosen row (None when nothing meets the constraints), the other rows that met them with why they lost,
    every rejected row with its reasons, and, when nothing met them, the closest row on each side."""

    constraints: dict[str, Any]
    objective: str
    chosen: Candidate | None
    runners_up: list[tuple[Candidate, str]]
    rejected: list[tuple[Candidate, str]]
    fastest_accurate_enough: Candidate | None = None
    most_accurate_fast_enough: Candidate | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def row(c: Candidate | None, reason: str | None = None) -> dict[str, Any] | None:
            if c is None:
                return None
            out = {k: v for k, v in asdict(c).items() if k not in ("dice_reasons", "speed_reasons")}
            return out if reason is None else {**out, "reason": reason}

        return {
            "constraints": self.constraints,
            "objective": self.objective,
            "met": self.chosen is not None,
            "chosen": row(self.chosen),
            "runners_up": [row(c, why) for c, why in self.runners_up],
            "rejected": [row(c, why) for c, why in self.rejected],
            "closest": {
                "fastest_accurate_enough": row(self.fastest_accurate_enough),
                "most_accurate_fast_enough": row(self.most_accurate_fast_enough),
            },
            "notes": self.notes,
        }


def recommend(frame: pd.DataFrame, select: SelectConfig | Any) -> Recommendation:
    """The recommendation for a sweep's table (report.tables' frame, intervals included) under `select`."""
    objective = str(getattr(select.objective, "value", select.objective))
    candidates = [_candidate(row, objective) for _, row in frame.iterrows()]
    for c in candidates:
        _judge(c, select)
    eligible = [c for c in candidates if not c.reasons]
    chosen, runners_up = _rank(eligible, objective)
    rejected = [(c, "; ".join(c.reasons)) for c in candidates if c.reasons]
    result = Recommendation(_constraints(select), objective, chosen, runners_up, rejected)
    if chosen is None:
        accurate = [c for c in candidates if c.status == "completed" and not c.dice_reasons and c.speed is not None]
        fast = [c for c in candidates if c.status == "completed" and not c.speed_reasons and c.dice is not None]
        better = 1 if _OBJECTIVES[objective][2] else -1
        result.fastest_accurate_enough = max(accurate, key=lambda c: better * c.speed, default=None)
        result.most_accurate_fast_enough = max(fast, key=lambda c: c.dice, default=None)
    if any(c.speed is not None and c.speed_low == c.speed_high for c in eligible) and objective != "latency":
        result.notes.append(
            "some rows were timed once (benchmark.repeats=1): their speeds are compared without a spread; "
            "benchmark.repeats=3 lets a tie within the machine's noise go to the higher Dice"
        )
    return result


def _number(row: pd.Series, column: str) -> float | None:
    value = row.get(column)
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def _candidate(row: pd.Series, objective: str) -> Candidate:
    figure, repeats, _, _ = _OBJECTIVES[objective]
    speed = _number(row, figure)
    spread = row.get(repeats) if repeats else None
    low, high = (min(spread), max(spread)) if isinstance(spread, list) and spread else (speed, speed)
    label = " ".join(str(row.get(c)) for c in (Col.ENGINE, Col.PRECISION) if isinstance(row.get(c), str))
    batch = row.get(Col.BATCH)
    label += f" b{int(batch)}" if isinstance(batch, int | float) and not math.isnan(batch) else ""
    error = row.get(Col.ERROR)
    return Candidate(
        job=str(row[Col.JOB_DIR]),
        label=label,
        precision=str(row.get(Col.PRECISION)),
        status=str(row.get(Col.STATUS)),
        error=error if isinstance(error, str) else None,
        dice=_number(row, Col.DICE),
        delta=_number(row, Col.DICE_DELTA),
        delta_low=_number(row, Col.DICE_DELTA_LOW),
        delta_high=_number(row, Col.DICE_DELTA_HIGH),
        worst_image=_number(row, Col.WORST_IMAGE_DELTA),
        speed=speed,
        speed_low=low,
        speed_high=high,
        e2e_ips=_number(row, Col.E2E_IPS),
        p99_ms=_number(row, Col.P99_MS),
    )


def _judge(c: Candidate, select) -> None:
    """Fill the candidate's reasons: why it cannot be shipped under `select` (none: it meets every constraint)."""
    if c.status != "completed":
        c.dice_reasons.append(f"{c.status}: {c.error or 'no result'}")
        return
    reference = c.precision == REFERENCE  # the row the drops are measured against
    if select.max_dice_drop is not None and not reference:
        if c.delta is None or c.delta_low is None:
            c.dice_reasons.append("no fp32 row of its engine to measure the Dice drop against")
        elif -c.delta_low > select.max_dice_drop:
            c.dice_reasons.append(
                f"Δ {c.delta:+.5f} [{c.delta_low:+.5f}, {c.delta_high:+.5f}] exceeds {select.max_dice_drop:g}"
            )
    if select.max_image_drop is not None and not reference:
        if c.worst_image is None:
            c.dice_reasons.append("no per-image comparison with an fp32 row")
        elif -c.worst_image > select.max_image_drop:
            c.dice_reasons.append(f"worst image Δ {c.worst_image:+.5f} exceeds {select.max_image_drop:g}")
    if select.min_throughput is not None and (c.e2e_ips is None or c.e2e_ips < select.min_throughput):
        shown = "no end-to-end figure" if c.e2e_ips is None else f"{c.e2e_ips:.3g} img/s"
        c.speed_reasons.append(f"e2e {shown} < {select.min_throughput:g} img/s")
    if select.max_p99_ms is not None and (c.p99_ms is None or c.p99_ms > select.max_p99_ms):
        shown = "no latency figure (benchmark.enabled=false)" if c.p99_ms is None else f"{c.p99_ms:.3g} ms"
        c.speed_reasons.append(f"p99 {shown} > {select.max_p99_ms:g} ms")
    if c.speed is None and not c.speed_reasons:
        c.speed_reasons.append("no figure for the objective (benchmark.enabled=false?)")


def _beats(a: Candidate, b: Candidate, higher: bool) -> bool:
    """`a` is faster than `b` by more than their repeats' spread."""
    return a.speed_low > b.speed_high if higher else a.speed_high < b.speed_low


def _rank(eligible: list[Candidate], objective: str) -> tuple[Candidate | None, list[tuple[Candidate, str]]]:
    """The fastest eligible row, ties within the spread going to the higher Dice; the others with why they lost."""
    if not eligible:
        return None, []
    _, _, higher, unit = _OBJECTIVES[objective]
    sign = 1 if higher else -1
    fastest = max(eligible, key=lambda c: sign * c.speed)
    tied = [c for c in eligible if not _beats(fastest, c, higher)]
    chosen = max(tied, key=lambda c: (c.dice if c.dice is not None else -1.0, sign * c.speed))
    others = sorted((c for c in eligible if c is not chosen), key=lambda c: -sign * c.speed)
    runners_up = []
    for c in others:
        if _beats(chosen, c, higher):
            why = f"slower: {_speed(c)} against {_speed(chosen)} {unit}"
        else:
            why = f"as fast within the repeats' spread ({_speed(c)} against {_speed(chosen)} {unit}), lower Dice"
        runners_up.append((c, why))
    return chosen, runners_up


def _speed(c: Candidate) -> str:
    if c.speed_low == c.speed_high:
        return f"{c.speed:.3g}"
    return f"{c.speed:.3g} [{c.speed_low:.3g}..{c.speed_high:.3g}]"


def _constraints(select) -> dict[str, Any]:
    keys = ("max_dice_drop", "max_image_drop", "min_throughput", "max_p99_ms")  # (select.bundle: where, not which)
    return {key: getattr(select, key) for key in keys}


RECOMMENDATION_MD, RECOMMENDATION_JSON = "recommendation.md", "recommendation.json"


def lines(rec: Recommendation) -> list[str]:
    """The recommendation as the terminal shows it, after the sweep's summary."""
    wanted = ", ".join(f"{k}={v:g}" for k, v in rec.constraints.items() if v is not None) or "no constraints"
    out = [f"recommendation ({wanted}; objective {rec.objective}):"]
    if rec.chosen is not None:
        out.append(f"  ship {rec.chosen.job}: {rec.chosen.label} ({_figures(rec.chosen)})")
    else:
        out.append("  nothing meets the constraints; closest on each side:")
        for words, c in (
            ("fastest of those accurate enough", rec.fastest_accurate_enough),
            ("most accurate of those fast enough", rec.most_accurate_fast_enough),
        ):
            out.append(f"    {words}: " + (f"{c.job}: {c.label} ({_figures(c)})" if c else "none"))
    out += [f"  {c.job} ({c.label}) lost: {why}" for c, why in [*rec.runners_up, *rec.rejected]]
    out.append("  Dice constraints are met only by the far end of the drop's 95 % interval (recommendation.md)")
    out += [f"  note: {n}" for n in rec.notes]
    return [folded for line in out for folded in _fold(line)]


def _fold(line: str) -> list[str]:
    """A line folded to the terminal summary's width, continuation lines indented under its text."""
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    return textwrap.wrap(line, WIDTH, subsequent_indent=indent, break_on_hyphens=False) or [line]


def markdown(rec: Recommendation) -> str:
    """recommendation.md: the chosen row, the runners-up and every other row's reason."""
    text = ["# Recommendation", ""]
    wanted = [f"`select.{k}={v:g}`" for k, v in rec.constraints.items() if v is not None]
    text.append(
        f"Constraints: {', '.join(wanted) or 'none'}; objective `{rec.objective}`. A Dice constraint is met only"
    )
    text.append(
        "when the far end of the drop's paired 95 % interval is within it; a row is faster than another only by"
    )
    text.append("more than the spread of their repeats, and a tie goes to the higher Dice.")
    text.append("")
    if rec.chosen is not None:
        text += [f"**Ship `{rec.chosen.job}`: {rec.chosen.label}** ({_figures(rec.chosen)}).", ""]
    else:
        text += ["**Nothing meets the constraints.** Closest on each side:", ""]
        for words, c in (
            ("fastest of those accurate enough", rec.fastest_accurate_enough),
            ("most accurate of those fast enough", rec.most_accurate_fast_enough),
        ):
            text.append(f"- {words}: " + (f"`{c.job}` {c.label} ({_figures(c)})" if c else "none"))
        text.append("")
    rows = [*rec.runners_up, *rec.rejected]
    if rows:
        text += ["| job | configuration | why not |", "|---|---|---|"]
        text += [f"| {c.job} | {c.label} | {why.replace('|', '/')} |" for c, why in rows]
    text += [f"\nNote: {n}" for n in rec.notes]
    return "\n".join(text) + "\n"


def _figures(c: Candidate) -> str:
    parts = [f"Dice {c.dice:.4f}" if c.dice is not None else "Dice -"]
    if c.delta is not None and c.delta_low is not None:
        parts.append(f"Δ {c.delta:+.5f} [{c.delta_low:+.5f}, {c.delta_high:+.5f}]")
    parts.append(f"{c.e2e_ips:.3g} img/s e2e" if c.e2e_ips is not None else "e2e -")
    parts.append(f"p99 {c.p99_ms:.3g} ms" if c.p99_ms is not None else "p99 -")
    return ", ".join(parts)


def write_recommendation(root: Path, rec: Recommendation) -> None:
    """recommendation.md and recommendation.json beside the sweep's tables."""
    write_atomic(root / RECOMMENDATION_MD, markdown(rec))
    write_json(root / RECOMMENDATION_JSON, rec.to_dict())


def select_settings(overrides: list[str], recorded: dict[str, Any] | None = None) -> SelectConfig:
    """`select.*` as the sweep recorded it (else conf/select/default.yaml's values), with `select.key=value`
    overrides on top; a key, value or range the schema refuses is a one-line PipelineError."""
    settings = OmegaConf.structured(SelectConfig)
    try:
        if recorded:
            settings = OmegaConf.merge(settings, recorded)
        keys = []
        for override in overrides:
            key, _, value = override.partition("=")
            if not key.startswith("select.") or not value:
                raise PipelineError(
                    f"{override}: only select.<key>=<value> overrides apply here, e.g. select.max_p99_ms=30"
                )
            keys.append(f"{key.removeprefix('select.')}={value}")
        settings = OmegaConf.merge(settings, OmegaConf.from_dotlist(keys))
    except OmegaConfBaseException as exc:
        raise PipelineError(f"select: {str(exc).splitlines()[0]}") from None
    check_ranges(OmegaConf.create({"select": settings}), prefix="select.")
    return OmegaConf.to_object(settings)


def recorded_select(root: Path) -> dict[str, Any] | None:
    """The `select` settings the sweep's jobs were run with (the first record that has them)."""
    for record in load_records(root):
        settings = (record.get("config") or {}).get("select")
        if isinstance(settings, dict):
            return settings
    return None


def recommend_sweep(root: Path, frame: pd.DataFrame, select) -> Recommendation:
    """A sweep's recommendation under `select`: printed after its summary, written beside its tables."""
    rec = recommend(frame, select)
    write_recommendation(root, rec)
    print("\n".join(lines(rec)))
    if rec.chosen is not None:
        print(f"  bundle it: python -m unet_pipeline.bundle {root / rec.chosen.job} -o <dir> (or select.bundle=<dir>)")
    return rec
