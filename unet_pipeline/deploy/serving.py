"""What serves masks to `segment`: a bundle's artifact (verified when loaded), or the artifact a configuration
describes, built or taken from the cache exactly as a pipeline job would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from unet_pipeline.data import Preprocessing
from unet_pipeline.deploy.artifacts import export_and_build
from unet_pipeline.deploy.bundle import load_bundle
from unet_pipeline.deploy.job import load_model, prepare
from unet_pipeline.deploy.spec import preprocessing
from unet_pipeline.deploy.stages.evaluate import pad_batch
from unet_pipeline.deploy.stages.image_sets import Selection, select_evaluation, select_quantizer_images
from unet_pipeline.engines import BuildSpec, Session
from unet_pipeline.record import JobRecord


def from_bundle(path: Path) -> tuple[Session, BuildSpec, Preprocessing, dict[str, Any]]:
    """The bundle's session (warmed up), request and preprocessing, and what segment.json says of it."""
    bundle = load_bundle(path)
    session = bundle.engine.load(bundle.artifact, bundle.spec)
    session.infer(pad_batch(bundle.spec.zeros(bundle.spec.batch), bundle.spec))
    about = {"bundle": str(path.resolve()), "engine": bundle.contract["engine"], "notes": bundle.notes}
    return session, bundle.spec, bundle.prep, about


def from_config(cfg: DictConfig, run_dir: Path) -> tuple[Session, BuildSpec, Preprocessing, dict[str, Any]]:
    """The configuration's artifact through the artifact cache (calibration images from data.root for int8), its
    session warmed up, and what segment.json says of it (a job record of the build, kept in the run dir)."""
    record = JobRecord.start(cfg, [])
    engine, spec, int8_kind = prepare(cfg, record)  # as a pipeline job refuses and resolves it
    engine.require_runtime()
    selected = Selection([], {}, [])
    if spec.precision.needs_calibration:
        selected = select_quantizer_images(cfg, spec, select_evaluation(cfg, spec))
    net = load_model(cfg.model, record)
    artifact = export_and_build(cfg, engine, spec, net, selected, run_dir, record, int8_kind)
    session = engine.load(artifact, spec)
    session.infer(pad_batch(spec.zeros(spec.batch), spec))
    about = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "engine": {"name": engine.name, "version": engine.version(), "artifact": str(artifact)},
        "cache": {"export": record.cache.export, "engine": record.cache.engine},
    }
    return session, spec, preprocessing(cfg), about
