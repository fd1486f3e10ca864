"""`python -m unet_pipeline.train [overrides]`: train the UNet on a Carvana-layout dataset (unet_pipeline/training/)."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from unet_pipeline import preflight
from unet_pipeline.config.registry import hydra_main
from unet_pipeline.core import PipelineError
from unet_pipeline.training import register_train_configs, train


@hydra_main("train", register_train_configs)
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = train(cfg, out_dir)
    except PipelineError as exc:
        raise SystemExit(f"error: {exc}") from None
    best = summary["best_val_dice"]
    picked = "last epoch (refit, no validation)" if best is None else f"best validation Dice {best:.4f}"
    print(f"{picked}; checkpoint: {out_dir / 'best.pth'}")


if __name__ == "__main__":
    preflight.exit_on_error("train")
    main()
