"""Deploy: one job of the pipeline, config -> export -> engine build -> inference -> Dice and speed -> record.

`job` runs the stages (`stages/`) in order; `spec` turns the config into an engine request, `keys` says what
determines each artifact, `cache` stores artifacts by content; `agreement` compares engines image by image."""

from unet_pipeline.deploy.job import run_job
from unet_pipeline.deploy.spec import build_spec

__all__ = ["build_spec", "run_job"]
