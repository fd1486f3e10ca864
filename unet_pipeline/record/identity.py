"""A job's identity: the hash of its resolved config minus run-time switches, plus its weights' content. Resume
skips a job whose directory holds a completed record of the same identity.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from unet_pipeline.core import content_key, file_sha256

# Keys that change how a job runs or where it writes, never what it measures: not part of its identity.
# how a job runs, is tracked or is chosen among others, not what it measures
NOT_JOB_IDENTITY = ("progress", "force", "cache", "logger", "select")


def job_identity(cfg: DictConfig) -> str:
    """Hash of the resolved job config minus run-time switches, plus the checkpoint's content.

    Equal identities measure the same thing: retrained weights saved over the same path are another job.
    (The dataset under data.root is trusted not to change between a run and its resume.)
    """
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    for key in NOT_JOB_IDENTITY:
        container.pop(key, None)
    container.get("benchmark", {}).pop("lock_dir", None)
    checkpoint = OmegaConf.select(cfg, "model.checkpoint")
    if checkpoint and Path(checkpoint).is_file():
        container["checkpoint_sha256"] = file_sha256(checkpoint)
    return content_key(container)
