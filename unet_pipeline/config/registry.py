"""What conf/*.yaml needs registered before Hydra composes it: the structured schemas and the resolvers.

Registration is idempotent; each entry point calls it once before composing (`entry.hydra_entry`).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from unet_pipeline.config.schema import (
    MagicMindEngineConfig,
    OnnxRuntimeEngineConfig,
    OpenVINOEngineConfig,
    PipelineConfig,
    SegmentConfig,
    TorchEngineConfig,
)
from unet_pipeline.core import isa


def bundled_checkpoint(name: str) -> str:
    """Absolute path of a checkpoint shipped in the package (unet_pipeline/checkpoints/)."""
    return str(files("unet_pipeline") / "checkpoints" / name)


def engine_module(target: str) -> str:
    """`unet_pipeline.engines.openvino.OpenVINOEngine` -> `openvino`: names sweep dirs per engine."""
    return target.rsplit(".", 2)[-2]


def if_quantized(mode: object, quantized: object, floating: object) -> object:
    """`${if_quantized:${precision.mode},a,b}`: `a` for the qint* precisions, else `b` (a default that only helps
    int8, such as model.align on the compact models). No precision (training configs) counts as float."""
    return quantized if str(getattr(mode, "name", mode)).startswith("qint") else floating


def default_align(mode: object, flags: list[str] | None = None) -> tuple[int, str]:
    """The compact models' model.align default for a precision on this CPU (or `flags`), and why: padding the
    input to a multiple of 32 inside the graph, cropped back after (fed and scored unchanged)."""
    name = str(getattr(mode, "name", mode))
    flags = isa.cpu_flags() if flags is None else flags
    if name.startswith("qint"):
        return 32, "int8: its convolutions ran 1.8-2.0x faster on a multiple of 32, on every CPU measured"
    if "bfloat16" in name and isa.fast_aligned_bfloat16(flags):
        return 32, "bf16 on AMX (amx_bf16): 1.46-1.58x faster aligned"
    if "bfloat16" in name:
        return 0, "bf16 without AMX: aligned 0.85-1.08x, no gain"
    return 0, "float: no faster aligned (fp32 slower)"


def align_default(mode: object) -> int:
    """`${align_default:${precision.mode}}`: default_align's value (the job records its reason)."""
    return default_align(mode)[0]


def fed_format(mode: object, engine_target: object) -> str:
    """`${fed_format:${precision.mode},${engine._target_}}`, the compact models' model.input_format default:
    uint8_nhwc (/255 and layout in the graph) for int8, measured with Dice identical and less host work per frame;
    float_nchw for float precisions (folded in bf16 it moved Dice for no speed), and on MagicMind, which folds
    both with its own builder options (engine.fold_normalization, engine.input_layout) instead."""
    if str(engine_target).endswith("MagicMindEngine"):
        return "float_nchw"
    return str(if_quantized(mode, "uint8_nhwc", "float_nchw"))


def _groups_help(config_name: str) -> str:
    from unet_pipeline.config.help import groups_help  # only --help needs it

    return groups_help(config_name)


def register_configs() -> None:
    """Register the schemas and the `${bundled:<file>}` / `${engine_module:...}` / `${if_quantized:...}` /
    `${align_default:...}` / `${fed_format:...}` / `${groups_help:<config>}` resolvers; conf/*.yaml use them."""
    OmegaConf.register_new_resolver("bundled", bundled_checkpoint, replace=True)
    OmegaConf.register_new_resolver("if_quantized", if_quantized, replace=True)
    OmegaConf.register_new_resolver("align_default", align_default, replace=True)
    OmegaConf.register_new_resolver("fed_format", fed_format, replace=True)
    OmegaConf.register_new_resolver("engine_module", engine_module, replace=True)
    OmegaConf.register_new_resolver("groups_help", _groups_help, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="pipeline_schema", node=PipelineConfig)
    # Engines differ in their settings, so each engine option names its own schema (stored outside any group,
    # so that --help lists only the groups a user picks).
    cs.store(name="engine_openvino_schema", node=OpenVINOEngineConfig)
    cs.store(name="engine_onnxruntime_schema", node=OnnxRuntimeEngineConfig)
    cs.store(name="engine_torch_schema", node=TorchEngineConfig)
    cs.store(name="engine_magicmind_schema", node=MagicMindEngineConfig)


def register_segment_configs() -> None:
    """`segment`'s schema in the pipeline schema's place: conf/segment.yaml includes the pipeline's primary config
    (every group, its values) and adds its own keys, which the pipeline's schema would refuse."""
    register_configs()
    ConfigStore.instance().store(name="pipeline_schema", node=SegmentConfig)


def hydra_main(config_name: str, register: Callable[[], None] = register_configs):
    """`@hydra_main("pipeline")` on an entry point: registers the schemas and resolvers, then Hydra's decorator.

    Registration happens when the decorated module is imported, which is also when a launcher that pickles the
    job (SLURM) imports it on the node: the one place it happens for every entry point."""
    register()
    return hydra.main(version_base="1.3", config_path="pkg://unet_pipeline.conf", config_name=config_name)
