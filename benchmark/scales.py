"""Which weights score best against 640x959 masks: the 640x959 ones, or the 320x479 ones upsampled?

    python benchmark/scales.py                   # the bundled weights on ../shared data (or data.root=...)

On the held-out cars (the pipeline's evaluation split), PyTorch eager fp32, each model fed its own declared
preprocessing of the same photo: `unet_carvana_small_640` at 640x959; `unet_carvana_small` at 320x479 with its
logits upsampled bilinearly to 640x959 (as the full-resolution Dice upsamples, at a quarter of the FLOPs); and the
mean of the two models' logits (a two-scale ensemble: 1.25x the FLOPs). All three are scored against the same
centre-aligned 640x959 masks with the pipeline's Dice; each row's difference to the 640x959 weights carries its
paired 95 % interval over images. The UNet's receptive field is fixed in pixels, so at 640x959 it sees half
the car it sees at 320x479: this script shows what that costs.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from _sweep import data_overrides, script_overrides


def main(argv: list[str]) -> int:
    argv = script_overrides(argv, __doc__)
    from hydra import compose, initialize_config_module

    from unet_pipeline.config import register_configs
    from unet_pipeline.data import Preprocessing, input_hw, list_samples, load_pair, select_eval, to_model_input
    from unet_pipeline.metrics import dice_per_image, paired_interval
    from unet_pipeline.model import load_unet

    register_configs()
    data = [a for a in data_overrides(argv) if not a.startswith("model=")] + argv
    with initialize_config_module(version_base="1.3", config_module="unet_pipeline.conf"):
        small, large = (compose("pipeline", [f"model={name}", "data=carvana", *data]) for name in MODELS)
    nets = [load_unet(c.model, c.model.checkpoint)[0].eval() for c in (small, large)]
    sizes = [input_hw(c.model, c.data) for c in (small, large)]
    preps = [Preprocessing.of(c.model, c.data) for c in (small, large)]
    samples = select_eval(list_samples(large.data.root, large.data), large.data)
    scores = []
    for sample in samples:
        (photo_small, _), (photo_large, mask) = (
            load_pair(sample, hw, p, uint8_nhwc=True) for hw, p in zip(sizes, preps, strict=True)
        )
        with torch.no_grad():
            low = nets[0](torch.from_numpy(to_model_input(photo_small)[None]))
            low = F.interpolate(low, size=sizes[1], mode="bilinear", align_corners=False)
            high = nets[1](torch.from_numpy(to_model_input(photo_large)[None]))
        labels = [(logits.argmax(1)).numpy().astype(np.uint8) for logits in (high, low, high + low)]
        scores.append([dice_per_image(pred, mask[None])[0] for pred in labels])
    table = np.array(scores)
    print(f"{len(samples)} held-out images, Dice against {sizes[1][0]}x{sizes[1][1]} masks (PyTorch eager fp32)")
    print(f"{ROWS[0]:<46} {table[:, 0].mean():.5f}")
    for column, name in list(enumerate(ROWS))[1:]:
        difference = table[:, column] - table[:, 0]
        interval = paired_interval(difference).describe()
        better = f"better on {(difference > 0).sum()} of {len(difference)}"
        print(f"{name:<46} {table[:, column].mean():.5f}   vs the 640x959 weights {interval}, {better}")
    return 0


MODELS = ("unet_carvana_small", "unet_carvana_small_640")
ROWS = (
    "unet_carvana_small_640 at 640x959",
    "unet_carvana_small at 320x479, upsampled",
    "both, logits averaged (two-scale ensemble)",
)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
