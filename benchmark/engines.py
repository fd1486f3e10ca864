"""Side-by-side engines on the same images and model, in one run, against PyTorch eager fp32.

    python benchmark/engines.py                    # bundled Carvana model on ../shared data (else the demo)
    python benchmark/engines.py batch=4 shape=dynamic

Every engine x (fp32, bf16, int8); unsupported pairs are failed rows with their reason. Prints ratios of
engine-only and end-to-end throughput against the torch force_float32 row, and the best pair's speed-up.
"""

from __future__ import annotations

import sys

from _sweep import ratio_table, run_sweep, script_overrides

SWEEP = [
    "engine=torch,onnxruntime,openvino",
    "precision=force_float32,force_bfloat16,qint8_mixed_float32",
    "data.num_images=32",
]


def main(argv: list[str]) -> int:
    argv = script_overrides(argv, __doc__)
    frame = run_sweep("engines", SWEEP, argv)
    done = frame[frame["status"] == "completed"]
    ref = done[(done["job.engine"] == "torch") & (done["job.precision"] == "force_float32")]
    if ref.empty:
        print("error: the PyTorch eager fp32 reference job did not complete", file=sys.stderr)
        return 1
    print(ratio_table(frame, ref.iloc[0], "torch fp32"))
    best = done.loc[done["benchmark.engine.throughput_ips"].idxmax()]
    ratio = best["benchmark.engine.throughput_ips"] / ref.iloc[0]["benchmark.engine.throughput_ips"]
    print(
        f"\nbest: {best['job.engine']} {best['job.precision']} at {best['benchmark.engine.throughput_ips']:.3g} img/s, "
        f"{ratio:.2f}x PyTorch eager fp32 (Dice {best['metrics.dice']:.4f} vs {ref.iloc[0]['metrics.dice']:.4f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
