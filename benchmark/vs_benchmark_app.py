"""Our engine-only figures against OpenVINO's own benchmark_app on the same model, in one run.

    python benchmark/vs_benchmark_app.py           # bundled Carvana model on ../shared data (else the demo)

Each job times the compiled model itself (sync, one request), then runs benchmark_app on the same IR with
the same compile properties (-api sync, same hint and inference precision, same shape) for as long. Prints
both throughputs and median latencies and their ratio: within run-to-run noise means ratios near 1.
"""

from __future__ import annotations

import sys

import pandas as pd
from _sweep import run_sweep, script_overrides

SWEEP = [
    "engine=openvino",
    "precision=force_float32,qint8_mixed_float32",
    "batch=1,4",
    "benchmark.vendor_tool=true",
    "benchmark.min_seconds=10",
    "benchmark.vendor_seconds=10",
    "data.num_images=8",
]


def main(argv: list[str]) -> int:
    argv = script_overrides(argv, __doc__)
    frame = run_sweep("vs_benchmark_app", SWEEP, argv)
    rows = []
    for _, r in frame.iterrows():
        ours, theirs = r.get("benchmark.engine.throughput_ips"), r.get("benchmark.vendor.throughput_ips")
        p50, their_p50 = r.get("benchmark.engine.latency_ms.p50"), r.get("benchmark.vendor.latency_ms_p50")
        rows.append(
            {
                "precision": r["job.precision"],
                "batch": r["job.batch"],
                "status": r["status"],
                "img/s ours": ours,
                "img/s benchmark_app": theirs,
                "ratio": ours / theirs if pd.notna(ours) and pd.notna(theirs) else None,
                "p50 ms ours": p50,
                "median ms benchmark_app": their_p50,
                "latency ratio": p50 / their_p50 if pd.notna(p50) and pd.notna(their_p50) else None,
            }
        )
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g", missingval="-"))
    return 0 if (frame["status"] == "completed").all() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
