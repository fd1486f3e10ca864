"""Our engine-only figures against OpenVINO's own benchmark_app on the same model, in one run.

    python benchmark/vs_benchmark_app.py           # at 640x959 on ../shared data (else the demo)
    python benchmark/vs_benchmark_app.py save=<machine>   # also commit the table under docs/benchmarks/results

fp32 and int8, batch 1 and 16, under both performance hints: LATENCY (our sync figure against benchmark_app
`-api sync`) and THROUGHPUT (our async figure, `benchmark.async_requests` requests in flight, against
benchmark_app `-api async` with as many requests). Each job times the compiled model itself in
`benchmark.repeats` rounds, then runs benchmark_app on the same IR with the same compile properties (same hint,
inference precision and shape) for as long. Prints both throughputs, their ratio, and the spread of our
rounds (their ratios from the slowest to the fastest round), so a ratio within that spread is noise.
"""

from __future__ import annotations

import ast
import sys

import pandas as pd
from _sweep import data_overrides, run_sweep, save_table, script_overrides

SWEEP = [
    "engine=openvino",
    "precision=force_float32,qint8_mixed_float32",
    "batch=1,16",
    "engine.performance_hint=LATENCY,THROUGHPUT",
    "benchmark.vendor_tool=true",
    "benchmark.repeats=3",
    "benchmark.min_seconds=6",
    "benchmark.vendor_seconds=12",
    "data.num_images=16",
]


def ours(row: pd.Series) -> tuple[float, str]:
    """Our figure the vendor's compares with: sync under LATENCY, async under THROUGHPUT."""
    if str(row.get("engine_settings.performance_hint", "LATENCY")).upper() == "THROUGHPUT":
        return row.get("benchmark.engine_async.throughput_ips"), f"async x{int(row['benchmark.engine_async.requests'])}"
    return row.get("benchmark.engine.throughput_ips"), "sync"


def round_ratios(rounds: object, theirs: float) -> str:
    """Our slowest and fastest round over benchmark_app's figure: the spread a ratio must be read against."""
    values = ast.literal_eval(rounds) if isinstance(rounds, str) else rounds
    if not isinstance(values, list) or not values or pd.isna(theirs):
        return "-"
    return f"{min(values) / theirs:.3f}..{max(values) / theirs:.3f}"


def comparison(frame: pd.DataFrame) -> pd.DataFrame:
    """Per job: our figure, benchmark_app's, their ratio and our rounds' spread."""
    rows = []
    for _, r in frame.iterrows():
        figure, mode = ours(r)
        theirs = r.get("benchmark.vendor.throughput_ips")
        ratio = figure / theirs if pd.notna(figure) and pd.notna(theirs) else None
        spread = round_ratios(r.get("benchmark.engine.rounds_ips"), theirs) if mode == "sync" else "-"
        rows.append(
            {
                "input": r.get("input"),
                "precision": r["job.precision"],
                "batch": r["job.batch"],
                "mode": mode,
                "status": r["status"],
                "img/s ours": figure,
                "img/s benchmark_app": theirs,
                "ratio": ratio,
                "ratio, slowest..fastest round": spread,
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str]) -> int:
    saved = [a.split("=", 1)[1] for a in argv if a.startswith("save=")]
    argv = script_overrides([a for a in argv if not a.startswith("save=")], __doc__)
    found = data_overrides(argv)
    if "model=unet_carvana_small" in found:  # at the sample's shape, where the two were compared
        argv = [*argv, *(a for a in found if not a.startswith("model=")), "model=unet_carvana_medium_640"]
    frame = run_sweep("vs_benchmark_app", SWEEP, argv)
    table = comparison(frame)
    print(table.to_markdown(index=False, floatfmt=".4g", missingval="-"))
    if saved:
        print(f"saved to {save_table(table, saved[-1], 'vs_benchmark_app', 'python benchmark/vs_benchmark_app.py')}")
    rows = table.to_dict("records")
    low = [r for r in rows if pd.notna(r["ratio"]) and r["ratio"] < 1.0]
    print("ours >= benchmark_app: " + ("everywhere" if not low else f"not at {len(low)} of {len(rows)} rows"))
    return 0 if (frame["status"] == "completed").all() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
