"""The pipeline's Dice against milesial's own preprocessing and Dice, on every held-out image.

    python benchmark/milesial_reference.py                       # bundled Carvana model on ../shared data
    python benchmark/milesial_reference.py model.resize=cv2_cubic engine=onnxruntime

Runs one pipeline job (fp32, OpenVINO by default, `model.resize=pil_bicubic` unless given) and, for the same
weights and images, PyTorch eager on milesial's `BasicDataset.preprocess` with milesial's Dice
(unet_pipeline/metrics/reference.py). Prints both means, the largest per-image difference and its paired interval;
exits 1 if the means differ by more than 0.0001.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch
from _sweep import data_overrides, run_sweep, script_overrides

from unet_pipeline.metrics import paired_interval
from unet_pipeline.metrics.reference import milesial_dice, milesial_mask, milesial_photo

TOLERANCE = 1e-4


def main(argv: list[str]) -> int:
    argv = script_overrides(argv, __doc__)
    given = {a.split("=", 1)[0] for a in argv}
    argv = [*(["model.resize=pil_bicubic"] if "model.resize" not in given else []), *argv]
    frame = run_sweep("milesial_reference", ["precision=force_float32"], ["benchmark.enabled=false", *argv])
    row = frame.iloc[0]
    if row["status"] != "completed":
        print(f"error: the pipeline job did not complete: {row['error']}", file=sys.stderr)
        return 1
    from hydra import compose, initialize_config_module

    from unet_pipeline.config import register_configs
    from unet_pipeline.model import load_unet

    register_configs()
    with initialize_config_module(version_base="1.3", config_module="unet_pipeline.conf"):
        cfg = compose("pipeline", overrides=[*data_overrides(argv), *(a for a in argv if not a.startswith("hydra."))])
    ours = pd.read_csv(frame.attrs["sweep_dir"] / str(row["job_dir"]) / "per_image.csv")
    net, _ = load_unet(cfg.model, cfg.model.checkpoint)
    net.eval()
    reference = []
    for image, mask in zip(ours["image"], ours["image"].map(_mask_of), strict=True):
        with torch.no_grad():
            logits = net(torch.from_numpy(milesial_photo(image, cfg.model.scale))[None])
        reference += milesial_dice(logits, torch.from_numpy(milesial_mask(mask, cfg.model.scale))[None])
    difference = ours["dice"].to_numpy() - np.asarray(reference)
    interval = paired_interval(difference)
    print(f"model={cfg.model.name} resize={cfg.model.resize.value} engine={row['job.engine']} "
          f"{len(reference)} held-out images")  # fmt: skip
    print(
        f"pipeline Dice {ours['dice'].mean():.6f}; milesial's preprocessing + Dice (PyTorch) {np.mean(reference):.6f}"
    )
    print(f"difference {interval.describe()}; largest per image {np.abs(difference).max():.2g}")
    return 0 if abs(interval.mean) <= TOLERANCE else 1


def _mask_of(image: str) -> str:
    """<root>/imgs/<id>.jpg -> <root>/masks/<id>_mask.gif (Carvana layout)."""
    path = image.replace("/imgs/", "/masks/")
    return path.rsplit(".", 1)[0] + "_mask.gif"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
