"""`python -m unet_pipeline.segment bundle=<dir> input=<images> output=<dir>`: a mask for every image of a folder
(also `model=... precision=... engine=...` without a bundle); exit status 0, 1 on an error, 3 when images were
skipped as unreadable (listed in <output>/skipped.csv) (unet_pipeline/deploy/segment.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from unet_pipeline import preflight
from unet_pipeline.config.registry import hydra_main, register_segment_configs
from unet_pipeline.core import PipelineError
from unet_pipeline.deploy.segment import SegmentRequest, segment
from unet_pipeline.deploy.segment_io import shard_suffix
from unet_pipeline.deploy.serving import from_bundle, from_config

SKIPPED_EXIT = 3


@hydra_main("segment", register_segment_configs)
def main(cfg: DictConfig) -> None:
    request = SegmentRequest(
        input=Path(cfg.input),
        output=Path(cfg.output),
        masks=Path(cfg.masks) if cfg.masks else None,
        output_format=str(cfg.output_format.value),
        overwrite=cfg.overwrite,
        on_bad_image=str(cfg.on_bad_image.value),
        shard=cfg.shard,
        num_shards=cfg.num_shards,
        workers=cfg.data.workers,
        prefetch_batches=cfg.data.prefetch_batches,
        progress=cfg.progress,
    )
    try:
        if cfg.bundle:
            served = from_bundle(Path(cfg.bundle))
        else:
            served = from_config(cfg, Path(HydraConfig.get().runtime.output_dir))
        result = segment(request, *served)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    done = result.summary()
    dice = f", Dice {done['dice']:.4f} (full resolution {done['dice_full']:.4f})" if result.dice else ""
    print(f"segmented {result.segmented} of {result.images} images ({result.already_done} already there) in "
          f"{result.seconds:.1f} s: {result.throughput_ips:.3g} img/s{dice}; masks: {request.output}")  # fmt: skip
    if result.skipped:
        listed = request.output / f"skipped{shard_suffix(request.shard, request.num_shards)}.csv"
        skipped = f"{len(result.skipped)} unreadable image(s) skipped: {listed}"
        print(f"warning: {skipped}", file=sys.stderr)
        sys.exit(SKIPPED_EXIT)


if __name__ == "__main__":
    preflight.exit_on_error("segment")
    main()
