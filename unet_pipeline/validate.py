"""`python -m unet_pipeline.validate [train overrides] model.checkpoint=<weights>`: the validation Dice that
`train` would record for any weights, on the same training-validation cars.

Why: runs are compared (and a bundled model picked) on cars that neither trained them nor are evaluated by the
pipeline; this scores weights from elsewhere (a soup, another run, a bundled file) the same way, without
training. Writes validate.json (checkpoint, its SHA-256, Dice, per-image Dice) into its run dir.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import preflight
from .config import register_configs
from .data import Preprocessing, list_samples
from .errors import PipelineError
from .model import file_sha256, input_hw, load_unet
from .records import write_json
from .synthetic import ensure_configured
from .train import load_arrays, train_val_samples, validation_scores


def validation_dice(cfg: DictConfig) -> dict:
    """Per-image and mean Dice of `model.checkpoint` on the validation cars of `train`'s split."""
    checkpoint = cfg.model.checkpoint
    if not checkpoint or checkpoint == "random":
        raise PipelineError("model.checkpoint=<path to a .pth>: the weights to validate")
    net = load_unet(cfg.model, checkpoint)[0]  # fails in one line before minutes of decoding
    hw = input_hw(cfg.model, cfg.data)
    ensure_configured(cfg.data)
    _, val_set = train_val_samples(list_samples(cfg.data.root, cfg.data), cfg)
    if not val_set:
        raise PipelineError("train.val_fraction=0 leaves no validation cars; use the fraction the weights' run used")
    images, masks = load_arrays(val_set, hw, Preprocessing.of(cfg.model, cfg.data), cfg.train.progress, "loading val")
    per_image = validation_scores(net, images, masks, cfg.train.batch_size)
    return {
        "checkpoint": str(checkpoint),
        "sha256": file_sha256(checkpoint),
        "val_dice": float(per_image.mean()),
        "val_images": len(val_set),
        "val_cars": sorted({s.car for s in val_set}),
        "per_image": {s.id: float(d) for s, d in zip(val_set, per_image, strict=True)},
    }


@hydra.main(version_base="1.3", config_path="pkg://unet_pipeline.conf", config_name="validate")
def main(cfg: DictConfig) -> None:
    try:
        record = validation_dice(cfg)
    except PipelineError as exc:
        raise SystemExit(f"error: {exc}") from None
    out = Path(HydraConfig.get().runtime.output_dir) / "validate.json"
    write_json(out, record)
    print(f"validation Dice {record['val_dice']:.5f} on {record['val_images']} images; record: {out}")


register_configs()

if __name__ == "__main__":
    preflight.exit_on_error("validate")
    main()
