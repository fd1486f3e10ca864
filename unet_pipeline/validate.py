"""`python -m unet_pipeline.validate [train overrides] model.checkpoint=<weights>`: the validation Dice that
`train` would record for any weights, on the same training-validation cars (unet_pipeline/training/validation.py).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from unet_pipeline import preflight
from unet_pipeline.config.registry import hydra_main
from unet_pipeline.core import PipelineError, write_json
from unet_pipeline.training import register_train_configs, validation_dice


@hydra_main("validate", register_train_configs)
def main(cfg: DictConfig) -> None:
    try:
        record = validation_dice(cfg)
    except PipelineError as exc:
        raise SystemExit(f"error: {exc}") from None
    out = Path(HydraConfig.get().runtime.output_dir) / "validate.json"
    write_json(out, record)
    print(f"validation Dice {record['val_dice']:.5f} on {record['val_images']} images; record: {out}")


if __name__ == "__main__":
    preflight.exit_on_error("validate")
    main()
