"""The exported graph and the engine artifact of a job, from the content-addressed cache, built only on a miss.

Why here and not in the engines: what an artifact depends on (`keys`), where it is kept (`cache`) and what its
build needs from the data (calibration and validation images, decoded under the model's preprocessing) are the
job's business; an engine only turns a graph and images into an artifact.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from unet_pipeline.deploy.cache import ArtifactCache, CacheResult, NoCache
from unet_pipeline.deploy.keys import engine_parts, export_parts, weights_identity
from unet_pipeline.deploy.spec import preprocessing, skips_bad_samples
from unet_pipeline.deploy.stages.calibrate import load_quantizer_data
from unet_pipeline.deploy.stages.export import export_graph
from unet_pipeline.deploy.stages.image_sets import Selection
from unet_pipeline.deploy.stages.quantize import ValidationSet, build_quantized, read_quantization_file
from unet_pipeline.engines import BuildSpec, Engine
from unet_pipeline.record import JobRecord


def export_and_build(
    cfg: DictConfig,
    engine: Engine,
    spec: BuildSpec,
    net: torch.nn.Module,
    selected: Selection,
    out_dir: Path,
    record: JobRecord,
    int8_kind: str,
) -> Path:
    """The artifact the engine loads. A quantized artifact's key holds the CPU's int8 kernel class (`int8_kind`):
    one built where u8 x s8 does not saturate is never reused on a CPU where it would."""
    cache = ArtifactCache(cfg.cache.dir) if cfg.cache.enabled else NoCache(out_dir)
    export_format = engine.capabilities.export_format
    with record.timed("export"):
        exported = cache.get_or_build(
            "export",
            export_parts(cfg.model, weights_identity(record.job.checkpoint_sha256), spec, export_format),
            lambda out: export_graph(net, export_format, spec, out),
        )
    record.cache.export = exported.record()
    parts = engine_parts(
        exported.key,
        engine,
        spec,
        cfg.calibration,
        selected.calibration,
        selected.validation,
        int8_kind,
        preprocessing(cfg),
    )
    with record.timed("build"):
        built = cache.get_or_build(
            "engine", parts, lambda out: _build(cfg, engine, spec, exported, selected, out, record)
        )
    record.cache.engine = built.record()
    record.add_quantization(read_quantization_file(built.artifact))
    for stage, result in (("export", exported), ("engine", built)):
        if result.rebuilt_corrupt:
            record.notes.append(f"cache: the {stage} entry failed its integrity check and was rebuilt")
    return built.artifact


def _build(
    cfg: DictConfig,
    engine: Engine,
    spec: BuildSpec,
    exported: CacheResult,
    selected: Selection,
    out: Path,
    record: JobRecord,
) -> Path:
    """A cache miss: float builds straight from the graph; quantized ones decode their calibration (and
    validation) images first, then calibrate, or search within calibration.max_dice_drop."""
    if selected.calibration is None:
        return engine.build(exported.artifact, spec, None, out)
    with record.timed("calibration_data"):
        skipped: list[dict[str, str]] = []
        options = (spec, cfg.progress, skips_bad_samples(cfg), skipped, preprocessing(cfg))
        calibration = load_quantizer_data(selected.calibration, *options)
        validation = None
        if selected.validation is not None:
            validation = ValidationSet(load_quantizer_data(selected.validation, *options, masks=True), spec)
        record.add_skipped("calibration", skipped)
    trials = cfg.calibration.search_trials
    return build_quantized(engine, exported.artifact, spec, calibration, validation, out, trials)
