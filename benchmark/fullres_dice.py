"""Full-resolution Dice per image: upsampling every frame (before) against deciding by cells (now), same labels.

    python benchmark/fullres_dice.py                 # bundled Carvana models on the held-out cars
    python benchmark/fullres_dice.py images=all      # every held-out image (default: 32 per size)
    python benchmark/fullres_dice.py save=<machine>  # also commit the table: docs/benchmarks/results/<machine>/

For each size the bundled weights trained at it run (PyTorch, fp32) on the held-out cars' images:
`unet_carvana_small` at 320x479 and `unet_carvana_medium_640` at 640x959, against 1918x1280 masks. Per image,
both ways are timed side by side on the same logits, each freshly copied into the engine's output buffer
first (as the inference loop finds them: in cache, not yet read), `repeats` times alternating; the figure is
the median over images of each image's median. Also checked on every image: the label map of the cells is
`upsampled_labels`'s, bit for bit, and the Dice equal to the last digit; exits 1 otherwise. Needs the Carvana
data (`data.root=...` or $CARVANA_DATASETS_PATH).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import torch
from _sweep import data_overrides, save_table

from unet_pipeline.core import machine_info
from unet_pipeline.metrics import (
    FullTruth,
    dice_full,
    dice_full_exact,
    fast_upsampled_labels,
    upsampled_labels,
    warm_up,
)

MODELS = {"320x479": "unet_carvana_small", "640x959": "unet_carvana_medium_640"}
REPEATS = 7


def options(argv: list[str]) -> tuple[int | None, str | None, list[str]]:
    """(`images=N` or all with `images=all`, `save=<machine>`, the Hydra overrides left: data.root=...)."""
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        raise SystemExit(0)
    images = [a.split("=", 1)[1] for a in argv if a.startswith("images=")]
    count = None if images and images[-1] == "all" else int(images[-1]) if images else 32
    save = [a.split("=", 1)[1] for a in argv if a.startswith("save=")]
    return count, save[-1] if save else None, [a for a in argv if not a.startswith(("images=", "save="))]


def held_out(model: str, overrides: list[str], count: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """fp32 logits of the bundled `model` on the held-out cars' images, and their source-size masks."""
    from hydra import compose, initialize_config_module

    from unet_pipeline.config import register_configs
    from unet_pipeline.data import DEFAULT_PREP, input_hw, list_samples, load_pair_full, select_eval, to_model_input
    from unet_pipeline.model import load_unet

    register_configs()
    with initialize_config_module(version_base="1.3", config_module="unet_pipeline.conf"):
        cfg = compose("pipeline", overrides=[*overrides, f"model={model}"])
    samples = select_eval(list_samples(cfg.data.root, cfg.data), cfg.data)[:count]
    net, _ = load_unet(cfg.model, cfg.model.checkpoint)
    logits, masks = [], []
    for sample in samples:
        pixels, _, mask = load_pair_full(sample, input_hw(cfg.model, cfg.data), DEFAULT_PREP)
        with torch.no_grad():
            logits.append(net.eval()(torch.from_numpy(to_model_input(pixels, False))[None])[0].numpy())
        masks.append(mask)
    return np.stack(logits), masks


def timed(function, buffer: np.ndarray, logits: np.ndarray, *args) -> tuple[float, object]:
    """Milliseconds of `function(buffer, *args)` right after `logits` was copied into `buffer`."""
    buffer[...] = logits
    start = time.perf_counter()
    value = function(buffer, *args)
    return 1e3 * (time.perf_counter() - start), value


def measure(logits: np.ndarray, masks: list[np.ndarray]) -> dict[str, object]:
    """Both ways on every image: per-image medians of `REPEATS` alternating runs, and the checks."""
    truths = [FullTruth.of(m, logits.shape[2:]) for m in masks]
    buffer = np.empty_like(logits[:1])
    before, after, same_labels, same_dice = [], [], 0, 0
    for one, mask, truth in zip(logits, masks, [[t] for t in truths], strict=True):
        runs = [(timed(dice_full, buffer, one[None], [mask]), timed(dice_full_exact, buffer, one[None], truth))
                for _ in range(REPEATS)]  # fmt: skip
        before.append(np.median([b[0] for b, _ in runs]))
        after.append(np.median([a[0] for _, a in runs]))
        same_dice += runs[0][0][1].tolist() == runs[0][1][1].tolist()
        same_labels += np.array_equal(fast_upsampled_labels(one, *mask.shape), upsampled_labels(one, *mask.shape))
    return {
        "images": len(masks),
        "ms/img upsampling every frame": float(np.median(before)),
        "ms/img by cells": float(np.median(after)),
        "ratio": float(np.median(before) / np.median(after)),
        "by cells p90 ms": float(np.percentile(after, 90)),
        "identical label maps": f"{same_labels}/{len(masks)}",
        "identical Dice": f"{same_dice}/{len(masks)}",
    }


def main(argv: list[str]) -> int:
    count, save, overrides = options(argv)
    overrides = [*(a for a in data_overrides(overrides) if not a.startswith("model=")), *overrides]
    if not any(a.startswith("data.root=") for a in overrides) and not data_overrides([]):
        print("error: no Carvana data: give data.root=/data/carvana or set CARVANA_DATASETS_PATH", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    warm_up()
    rows = []
    for size, model in MODELS.items():
        logits, masks = held_out(model, overrides, count)
        rows.append({"input": size, "model": model, **measure(logits, masks)})
    machine = machine_info()
    print(f"\n## Full-resolution Dice per image ({machine['cpu_model']}, {machine['cpu_count']} cores)\n")
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".3g"))
    exact = all(r["identical label maps"].split("/")[0] == str(r["images"]) for r in rows) and all(
        r["identical Dice"].split("/")[0] == str(r["images"]) for r in rows
    )
    print("\nlabel maps and Dice: " + ("identical on every image" if exact else "DIFFERENT (see the table)"))
    if save:
        command = f"python benchmark/fullres_dice.py images={'all' if count is None else count}"
        print(f"saved to {save_table(table, save, 'fullres_dice', command)}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
