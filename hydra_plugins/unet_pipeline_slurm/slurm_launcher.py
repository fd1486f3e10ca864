"""`hydra/launcher=slurm`: SLURM via submitit; a job SLURM kills is a failed row, not an aborted sweep.

Why: the stock `hydra/launcher=submitit_slurm` returns `[job.results()[0] for job in jobs]`, so the first
job that SLURM cancelled, timed out or lost raises out of `launch`; Hydra then aborts the sweep before the
results table is written, and jobs still queued are not waited for. Our jobs never raise on their own
(they record failures in result.json), so only SLURM can end one early: here such a job gets a failed
record saying what SLURM reported, the launcher waits for every job, and the sweep ends with its table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf, open_dict

from unet_pipeline.core import write_json
from unet_pipeline.record import RESULT_FILE, JobRecord

log = logging.getLogger(__name__)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """`hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml)."""

    def _executor(self):
        import submitit

        init = {"folder": self.params["submitit_folder"], "slurm_max_num_timeout": self.params["max_num_timeout"]}
        executor = submitit.AutoExecutor(cluster="slurm", **init)
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                (k if k in base else f"slurm_{k}"): v
                for k, v in self.params.items()
                if k not in {"submitit_folder", "max_num_timeout"}
            }
        )
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        params = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = self._executor().map_array(self, *zip(*params, strict=True))
        log.info("submitted SLURM jobs %s; waiting for them", ", ".join(j.job_id for j in jobs))
        returns = []
        for job, (overrides, _, idx, _, _) in zip(jobs, params, strict=True):
            try:
                returns.append(job.results()[0])
            except Exception as exc:  # cancelled, timed out, node lost, killed for memory
                reason = f"SLURM job {job.job_id} ended as {job.state} before finishing ({type(exc).__name__})"
                log.error("job #%d: %s", idx, reason)
                self._record_failure(overrides, idx, reason)
                returns.append(_failed_but_recorded(overrides))
        return returns

    def _record_failure(self, overrides: list[str], idx: int, reason: str) -> None:
        """Mark the job's record failed (keeping what it wrote), or write one if it never started."""
        assert self.hydra_context is not None and self.config is not None
        job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(job_cfg.hydra.job):
            job_cfg.hydra.job.num = idx
        job_dir = Path(str(job_cfg.hydra.sweep.dir)) / str(job_cfg.hydra.sweep.subdir)
        path = job_dir / RESULT_FILE
        try:
            record: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):  # never started: a record from the job's config, so the row is labelled
            task_cfg = job_cfg.copy()
            with open_dict(task_cfg):
                del task_cfg["hydra"]
            record = JobRecord.start(task_cfg, overrides).to_dict()
        if record.get("status") in ("completed", "failed"):
            return  # the job finished and recorded itself; SLURM's verdict came after
        record.update(status="failed", error=reason)
        write_json(path, record)


def _failed_but_recorded(overrides: list[str]) -> JobReturn:
    """A return that does not re-raise in Hydra's sweeper: the failure is in the job's result.json."""
    ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
    ret.return_value = None
    return ret
