"""The recommendation: intervals decide Dice constraints, spreads decide speed ties, and no row goes unexplained."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from unet_pipeline.config import SelectConfig
from unet_pipeline.core import PipelineError
from unet_pipeline.report.columns import Col
from unet_pipeline.report.recommend import lines, markdown, recommend, recorded_select, select_settings

from .conftest import run_cli


def _row(job, precision, dice, delta=None, ci=None, e2e=None, passes=None, p99=10.0, worst=None, status="completed"):
    return {
        Col.JOB_DIR: job,
        Col.ENGINE: "openvino",
        Col.PRECISION: precision,
        Col.BATCH: 1,
        Col.STATUS: status,
        Col.ERROR: "engine=openvino does not support precision=x" if status == "failed" else None,
        Col.DICE: dice,
        Col.DICE_DELTA: delta,
        Col.DICE_DELTA_LOW: ci[0] if ci else None,
        Col.DICE_DELTA_HIGH: ci[1] if ci else None,
        Col.WORST_IMAGE_DELTA: worst,
        Col.E2E_IPS: e2e,
        Col.E2E_PASSES_IPS: passes,
        Col.ENGINE_IPS: e2e,
        Col.ENGINE_ROUNDS_IPS: passes,
        Col.P99_MS: p99,
    }


def _frame(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


FP32 = _row("0", "force_float32", 0.9913, 0.0, None, e2e=20.0, passes=[19.5, 20.0, 20.5], p99=50.0)


def test_a_drop_within_budget_by_its_point_but_not_its_interval_is_rejected():
    frame = _frame(
        FP32,
        _row("1", "qint8_mixed_float32", 0.9910, -0.0003, (-0.0007, 0.0001), e2e=40.0, passes=[39, 40, 41]),
        _row("2", "qint8_mixed_float16", 0.9911, -0.0002, (-0.0004, 0.0000), e2e=38.0, passes=[37, 38, 39]),
    )
    rec = recommend(frame, SelectConfig(max_dice_drop=0.0005))
    assert rec.chosen.job == "2"
    why = dict((c.job, w) for c, w in rec.rejected)
    assert why["1"] == "Δ -0.00030 [-0.00070, +0.00010] exceeds 0.0005"
    assert [c.job for c, _ in rec.runners_up] == ["0"]  # fp32 meets the Dice budget by definition, but is slower


def test_a_speed_tie_within_the_repeats_spread_goes_to_the_higher_dice():
    frame = _frame(
        FP32,
        _row("1", "qint8_mixed_float32", 0.9905, -0.0008, (-0.0009, -0.0007), e2e=52.0, passes=[49, 52, 55]),
        _row("2", "qint8_mixed_bfloat16", 0.9910, -0.0003, (-0.0004, -0.0002), e2e=50.0, passes=[48, 50, 51]),
        _row("3", "force_bfloat16", 0.9912, -0.0001, (-0.0002, 0.0000), e2e=30.0, passes=[29, 30, 31]),
    )
    rec = recommend(frame, SelectConfig(max_dice_drop=0.001))
    assert rec.chosen.job == "2"  # slower by its median, but within job 1's spread, and more accurate
    why = dict((c.job, w) for c, w in rec.runners_up)
    assert why["1"].startswith("as fast within the repeats' spread") and why["1"].endswith("lower Dice")
    assert why["3"].startswith("slower: 30 [29..31] against 50 [48..51]")
    assert not rec.rejected and rec.notes == []


def test_without_repeats_the_single_figures_decide_and_the_output_says_so():
    frame = _frame(
        _row("0", "force_float32", 0.9913, 0.0, None, e2e=20.0, p99=50.0),
        _row("1", "qint8_mixed_float32", 0.9912, -0.0001, (-0.0002, 0.0), e2e=20.5, p99=45.0),
    )
    rec = recommend(frame, SelectConfig())
    assert rec.chosen.job == "1" and "benchmark.repeats=1" in rec.notes[0]


def test_nothing_meeting_the_constraints_names_the_closest_on_each_side():
    frame = _frame(
        FP32,
        _row("1", "qint8_mixed_float32", 0.9900, -0.0013, (-0.0016, -0.0010), e2e=45.0, passes=[44, 45, 46], p99=9),
        _row("2", "force_bfloat16", 0.9912, -0.0001, (-0.0002, 0.0000), e2e=30.0, passes=[29, 30, 31], p99=25),
        _row("3", "qint8_mixed_float16", None, status="failed"),
    )
    rec = recommend(frame, SelectConfig(max_dice_drop=0.0005, max_p99_ms=20.0))
    assert rec.chosen is None and rec.runners_up == []
    assert rec.fastest_accurate_enough.job == "2"  # accurate enough, the faster of 0 and 2
    assert rec.most_accurate_fast_enough.job == "1"  # the only one with p99 <= 20 ms
    why = dict((c.job, w) for c, w in rec.rejected)
    assert why["0"] == "p99 50 ms > 20 ms" and why["2"] == "p99 25 ms > 20 ms"
    assert why["1"] == "Δ -0.00130 [-0.00160, -0.00100] exceeds 0.0005"
    assert why["3"] == "failed: engine=openvino does not support precision=x"
    text = markdown(rec)
    assert "**Nothing meets the constraints.**" in text and "fastest of those accurate enough: `2`" in text
    assert json.loads(json.dumps(rec.to_dict()))["met"] is False
    assert all(len(line) <= 100 for line in lines(rec))


def test_the_worst_image_and_throughput_floor_constraints():
    frame = _frame(
        FP32,
        _row("1", "qint8_mixed_float32", 0.9910, -0.0001, (-0.0002, 0.0), e2e=45.0, worst=-0.003),
        _row("2", "qint8_mixed_float16", 0.9911, -0.0001, (-0.0002, 0.0), e2e=18.0, worst=-0.0005),
    )
    rec = recommend(frame, SelectConfig(max_image_drop=0.001, min_throughput=19.0))
    why = dict((c.job, w) for c, w in rec.rejected)
    assert why == {"1": "worst image Δ -0.00300 exceeds 0.001", "2": "e2e 18 img/s < 19 img/s"}
    assert rec.chosen.job == "0"


def test_a_row_without_an_fp32_row_cannot_meet_a_dice_constraint():
    frame = _frame(_row("0", "qint8_mixed_float32", 0.99, None, None, e2e=45.0))
    rec = recommend(frame, SelectConfig())
    assert rec.chosen is None and "no fp32 row" in rec.rejected[0][1]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("select.objective=fast", "expected one of [e2e_throughput, engine_throughput, latency]"),
        ("select.max_p99=3", "Key 'max_p99' not in 'SelectConfig'"),
        ("select.max_p99_ms=-3", "select.max_p99_ms=-3.0 must be a positive number of milliseconds, or null"),
        ("batch=4", "only select.<key>=<value> overrides apply here"),
    ],
)
def test_bad_select_overrides_are_one_line(override, message):
    with pytest.raises(PipelineError, match=r"^[^\n]*" + message.replace("[", r"\[").replace("]", r"\]")):
        select_settings([override])


def test_a_sweep_recommends_and_results_recomputes_it_after_the_fact(sweep_2x2, tmp_path):
    """A sweep writes recommendation.md/.json under the sweep's select settings; `results <dir> select...`
    recomputes it under others and names every row."""
    assert (sweep_2x2.dir / "recommendation.md").is_file() and "recommendation (" in sweep_2x2.stdout
    written = json.loads((sweep_2x2.dir / "recommendation.json").read_text())
    assert written["constraints"]["max_dice_drop"] == 0.001 and written["objective"] == "e2e_throughput"
    assert len(written["runners_up"]) + len(written["rejected"]) + written["met"] == 4  # every row accounted for
    sweep = shutil.copytree(sweep_2x2.dir, tmp_path / "sweep")
    assert recorded_select(sweep)["max_dice_drop"] == 0.001
    proc = run_cli(str(sweep), "select.max_p99_ms=0.001", module="unet_pipeline.results", cwd=tmp_path)
    assert "recommendation (max_dice_drop=0.001, max_p99_ms=0.001" in proc.stdout
    assert "nothing meets the constraints" in proc.stdout and proc.stdout.count(" lost: p99 ") == 4
    again = json.loads((sweep / "recommendation.json").read_text())
    assert again["met"] is False and len(again["rejected"]) == 4
