"""Engines behind one narrow interface: build -> artifact on disk -> load -> infer a batch.

The interface (`Engine`, `Session`, `BuildSpec`) is all the deployment job sees; each engine (`openvino/`,
`onnxruntime`, `pytorch`, `magicmind/`) is chosen by config (`_target_`) and imports its library only when used."""

from unet_pipeline.engines.base import (
    Capabilities,
    Engine,
    EnginePlan,
    Session,
    Validator,
    budget_error,
    with_overflow_fix,
)
from unet_pipeline.engines.spec import (
    BuildSpec,
    OverflowChoice,
    Precision,
    QuantOptions,
    cyclic_batch,
    resolve_layers,
    resolved_overflow_fix,
)

__all__ = [
    "BuildSpec",
    "Capabilities",
    "Engine",
    "EnginePlan",
    "OverflowChoice",
    "Precision",
    "QuantOptions",
    "Session",
    "Validator",
    "budget_error",
    "cyclic_batch",
    "resolve_layers",
    "resolved_overflow_fix",
    "with_overflow_fix",
]
