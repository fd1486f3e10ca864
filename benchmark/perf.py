"""The MagicMind sample's perf.sh on our engines: 3 precisions x static shape x batch 1 and 16, in one run.

    python benchmark/perf.py                       # bundled Carvana model on ../shared data (else the demo)
    python benchmark/perf.py engine=onnxruntime    # any pipeline override passes through

Prints each job's engine-only and end-to-end throughput with ratios against force_float32 at batch 1.
A precision the device cannot run natively is a failed row saying so (e.g. float16 on a CPU without it).
"""

from __future__ import annotations

import sys

from _sweep import ratio_table, run_sweep, script_overrides

SWEEP = [
    "precision=force_float32,force_float16,qint8_mixed_float16",
    "batch=1,16",
    "shape=static",
    "data.num_images=32",
]


def main(argv: list[str]) -> int:
    argv = script_overrides(argv, __doc__)
    frame = run_sweep("perf", SWEEP, argv)
    ref = frame[
        (frame["job.precision"] == "force_float32") & (frame["job.batch"] == 1) & (frame["status"] == "completed")
    ]
    if ref.empty:
        print("error: the force_float32 batch-1 reference job did not complete", file=sys.stderr)
        return 1
    print(ratio_table(frame, ref.iloc[0], "fp32 b1"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
