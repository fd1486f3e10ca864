"""The pipeline at engine speed: end-to-end vs engine-only, aligned vs unaligned, reduced vs full decode.

    python benchmark/pipeline.py                 # bundled Carvana model on ../shared data (else the demo)
    python benchmark/pipeline.py model=unet_carvana model.checkpoint=random   # milesial's full width, speed only

Five comparisons in one run, each printed with its ratios and the Dice of every row:
1. end to end (decode + resize + normalize + infer + argmax + Dice, with the default full decode and prefetch)
   / engine-only of the same compiled model, at 320x479 and 640x959, batch 1 and 4, int8 and bf16 (fp32 without
   native bf16): cold (`data.cache_inputs=false`: every job decodes every JPEG and GIF mask) and warm
   (`data.cache_inputs=true` with the input cache filled by a priming sweep: what every job of a sweep sees
   after the first at its input size); targets >= 0.85 and >= 0.95 checked warm, Dice equal cold and warm;
2. model.align=32 / unaligned at 640x959 (target: >= 1.5x engine throughput, Dice within 0.0005);
3. data.decode=reduced / full and data.prefetch_batches=2 / 0 at 640x959 (end-to-end throughput, Dice);
4. model.input_format=uint8_nhwc (/255 and layout folded into the model) / float NCHW from Python;
5. OpenVINO's performance hint LATENCY (the default: 1 stream on all cores) / THROUGHPUT (streams and
   threads chosen by the plugin): engine sync, engine async and end to end, with the threads/streams used.
The bundled Carvana model was trained at 320x479: its Dice at 640x959 is lower, but every comparison here is
between rows of the same weights and size.
"""

from __future__ import annotations

import sys
import time

import pandas as pd
from _sweep import run_sweep

E2E_TARGET = {320: 0.85, 640: 0.95}
ALIGN_TARGET, DICE_TOLERANCE = 1.5, 0.0005
COMMON = ["data.num_images=32", "calibration.num_samples=16", "shape=static"]


def precisions() -> str:
    """int8 and bf16 as the issue asks, where this CPU runs bf16 natively; else int8 and fp32 (said so)."""
    from unet_pipeline.engines.openvino import OpenVINOEngine

    if "bfloat16" in OpenVINOEngine().native_float_types():
        return "precision=qint8_mixed_float32,force_bfloat16"
    print("this CPU has no native bf16: int8 and fp32 are measured instead of int8 and bf16", flush=True)
    return "precision=qint8_mixed_float32,force_float32"


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "completed"]


def e2e_table(cold: pd.DataFrame, warm: pd.DataFrame) -> tuple[str, list[str]]:
    """End to end / engine-only of each job, cold (inputs decoded) and warm (read from the input cache).

    The targets are checked on the warm figure, what every job of a sweep after the first sees; the cold one
    (the first job, or a single run) is printed beside it.
    """
    key = ["input", "job.precision", "job.batch"]
    both = _ok(cold).merge(_ok(warm), on=key, suffixes=(" cold", " warm"))
    rows, misses = [], []
    for _, r in both.iterrows():
        ratios = {
            w: r[f"benchmark.end_to_end.throughput_ips {w}"] / r[f"benchmark.engine.throughput_ips {w}"]
            for w in ("cold", "warm")
        }
        where = f"{r['input']} {r['job.precision']} b{r['job.batch']}"
        target = E2E_TARGET.get(int(str(r["input"]).split("x")[0]), 0.95)
        rows.append(
            {
                "input": r["input"],
                "precision": r["job.precision"],
                "batch": r["job.batch"],
                "dice": r["metrics.dice warm"],
                "img/s engine": r["benchmark.engine.throughput_ips warm"],
                "img/s e2e warm": r["benchmark.end_to_end.throughput_ips warm"],
                "e2e / engine warm": ratios["warm"],
                "e2e / engine cold": ratios["cold"],
                "host ms/img warm": r["benchmark.end_to_end.preprocess_ms_per_image warm"],
                "host ms/img cold": r["benchmark.end_to_end.preprocess_ms_per_image cold"],
                "target": target,
            }
        )
        if ratios["warm"] < target:
            misses.append(f"e2e/engine {ratios['warm']:.2f} < {target} at {where}")
        if r["metrics.dice cold"] != r["metrics.dice warm"]:
            misses.append(f"warm inputs changed Dice at {where}")
        if r.get("benchmark.end_to_end.input_cache.misses", r.get("benchmark.end_to_end.input_cache.misses warm")):
            misses.append(f"the warm run decoded images at {where}")
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g"), misses


def pair_table(frame: pd.DataFrame, key: str, new: object, old: object, metric: str) -> tuple[str, list[dict]]:
    """Rows with `key == new` against their twin with `key == old` (same precision and batch)."""
    done = _ok(frame)
    rows = []
    for (precision, batch), group in done.groupby(["job.precision", "job.batch"]):
        a, b = group[group[key] == new], group[group[key] == old]
        if a.empty or b.empty:
            continue
        a, b = a.iloc[0], b.iloc[0]
        rows.append(
            {
                "precision": precision,
                "batch": batch,
                f"img/s {key}={old}": b[metric],
                f"img/s {key}={new}": a[metric],
                "ratio": a[metric] / b[metric],
                f"dice {key}={old}": b["metrics.dice"],
                "Δ dice": a["metrics.dice"] - b["metrics.dice"],
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g"), rows


def main(argv: list[str]) -> int:
    misses: list[str] = []
    swept = precisions()
    inputs_dir = f"cache.dir=outputs/benchmark/pipeline-inputs-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    sweep = [swept, "model.scale=0.25,0.5", "batch=1,4", inputs_dir, *COMMON]
    cold = run_sweep("pipeline-e2e-cold", [*sweep, "data.cache_inputs=false"], argv)  # every job decodes
    run_sweep("pipeline-e2e-prime", [*sweep, "data.cache_inputs=true"], argv)  # fills the input cache
    warm = run_sweep("pipeline-e2e-warm", [*sweep, "data.cache_inputs=true"], argv)  # every input from it
    table, found = e2e_table(cold, warm)
    misses += found
    print("\n## End to end / engine-only (same compiled model), warm and cold input cache\n\n" + table)

    align = run_sweep("pipeline-align", [swept, "model.scale=0.5", "model.align=0,32", "batch=1", *COMMON], argv)
    table, rows = pair_table(align, "job.align", 32, 0, "benchmark.engine.throughput_ips")
    print("\n## model.align=32 / unaligned at 640x959 (engine-only)\n\n" + table)
    misses += [
        f"align speed-up {r['ratio']:.2f} < {ALIGN_TARGET} ({r['precision']})"
        for r in rows
        if r["ratio"] < ALIGN_TARGET
    ]
    misses += [f"align Δ dice {r['Δ dice']:+.5f} ({r['precision']})" for r in rows if abs(r["Δ dice"]) > DICE_TOLERANCE]

    host = run_sweep(
        "pipeline-host",
        [
            "precision=qint8_mixed_float32",
            "model.scale=0.5",
            "data.decode=full,reduced",
            "data.prefetch_batches=0,2",
            *COMMON,
        ],
        argv,
    )
    host["decode+prefetch"] = host["job.decode"] + "+" + host["job.prefetch_batches"].astype(str)
    table, _ = pair_table(host, "decode+prefetch", "reduced+2", "full+0", "benchmark.end_to_end.throughput_ips")
    print("\n## Host side at 640x959, end to end: reduced decode + prefetch / full decode, serial\n\n" + table)

    fold = run_sweep(
        "pipeline-fold",
        [swept, "model.scale=0.5", "model.input_format=float_nchw,uint8_nhwc", "data.decode=reduced", *COMMON],
        argv,
    )
    table, _ = pair_table(fold, "job.input_format", "uint8_nhwc", "float_nchw", "benchmark.end_to_end.throughput_ips")
    print("\n## Normalization folded into the model (uint8 NHWC in) / in Python, end to end at 640x959\n\n" + table)

    hints = run_sweep(
        "pipeline-hint",
        ["precision=qint8_mixed_float32", "model.scale=0.5", "engine.performance_hint=LATENCY,THROUGHPUT", *COMMON],
        argv,
    )
    columns = {
        "engine_settings.performance_hint": "hint",
        "compiled.num_streams": "streams",
        "compiled.num_threads": "threads",
        "benchmark.engine.throughput_ips": "img/s engine",
        "benchmark.engine_async.throughput_ips": "img/s async",
        "benchmark.end_to_end.throughput_ips": "img/s e2e",
    }
    table = _ok(hints)[list(columns)].rename(columns=columns).to_markdown(index=False, floatfmt=".4g")
    print("\n## OpenVINO performance hint at 640x959, int8, batch 1\n\n" + table)

    print("\ntargets: " + ("all met" if not misses else "MISSED: " + "; ".join(misses)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
