"""The pipeline on an NVIDIA GPU: does the host work disappear behind the device?

    python benchmark/cuda.py data.root=/data/carvana              # milesial's full-width UNet, random weights
    python benchmark/cuda.py data.root=/data/carvana model=unet_carvana_small model.checkpoint=...  # any override

On a GPU the engine leaves the CPU cores free, so the feed's worker threads decode and preprocess while the
device computes. Side by side in one run:
1. end to end / engine-only of the same model (PyTorch, device=cuda) at 640x959, fp16 and fp32, batch 1 and 8,
   warm (input cache filled first) and cold (every JPEG and GIF decoded in the timed loop), 256 images each;
2. the feed's worker threads (1, 2 = the default, 4, 8), cold, fp16 batch 8: beside eager PyTorch more threads
   compete with its kernel launches for the GIL.
Needs a CUDA GPU visible to PyTorch; CI has none (see README "What cannot be done here").
"""

from __future__ import annotations

import sys

from _sweep import run_sweep, script_overrides
from pipeline import E2E, HOST, column_table, e2e_sweeps, e2e_table

DEFAULTS = ["device=cuda", "model=unet_carvana", "model.checkpoint=random", "model.scale=0.5", "shape=static"]
LONG = ["data.split=all", "data.num_images=256", "benchmark.repeats=3", "benchmark.async_requests=0"]
TARGET = 0.95  # the host work hidden behind the device: the pipeline at the engine's speed


def main(argv: list[str]) -> int:
    argv = script_overrides(argv, __doc__)
    base = [d for d in DEFAULTS if d.split("=")[0] not in {a.split("=")[0] for a in argv}]
    sweep = [*base, "precision=force_float16,force_float32", "batch=1,8", *LONG]
    prime = [*base, "precision=force_float16", "batch=8", "benchmark.enabled=false", *LONG[:2]]
    cold, warm = e2e_sweeps(sweep, prime, argv)
    table, misses = e2e_table(cold, warm, {320: TARGET, 640: TARGET})
    print("\n## On the GPU: end to end / engine-only (same model), warm and cold input cache\n\n" + table)

    feed = run_sweep(
        "cuda-feed",
        [*base, "precision=force_float16", "batch=8", "data.cache_inputs=false", "data.workers=1,2,4,8", *LONG],
        argv,
    )
    columns = {
        "job.workers": "workers",
        E2E: "img/s e2e cold",
        "benchmark.engine.throughput_ips": "img/s engine",
        "benchmark.end_to_end.vs_engine": "e2e / engine",
        HOST: "host CPU ms/img",
        "benchmark.end_to_end.engine_share": "share of time in the engine",
    }
    table = column_table(feed, columns)
    print("\n## The feed's worker threads on the GPU host (cold, fp16, batch 8)\n\n" + table)
    print("\ne2e on the GPU (warm): " + ("all >= 0.95" if not misses else "below 0.95: " + "; ".join(misses)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
