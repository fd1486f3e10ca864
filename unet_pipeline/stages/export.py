"""Export: the PyTorch model -> the graph format an engine consumes (engine.capabilities.export_format)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..engines.base import BuildSpec
from ..errors import PipelineError


def _openvino_ir(net: torch.nn.Module, spec: BuildSpec, out_dir: Path) -> Path:
    """OpenVINO IR via ov.convert_model; batch static or a [min..max] range, H and W fixed."""
    import openvino as ov

    h, w = spec.input_hw
    low, high = spec.batch_dims
    batch = ov.Dimension(low, high) if spec.shape == "dynamic" else ov.Dimension(spec.batch)
    with torch.no_grad():
        model = ov.convert_model(
            net,
            example_input=torch.zeros(low, spec.channels, h, w),
            input=[ov.PartialShape([batch, spec.channels, h, w])],
        )
    model.inputs[0].get_tensor().set_names({"input"})
    model.outputs[0].get_tensor().set_names({"logits"})
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


EXPORTERS = {"openvino_ir": _openvino_ir}


def export_graph(net: torch.nn.Module, export_format: str, spec: BuildSpec, out_dir: Path) -> Path:
    """Write the graph for `export_format` into out_dir and return its path."""
    try:
        exporter = EXPORTERS[export_format]
    except KeyError:
        raise PipelineError(f"no exporter for format {export_format!r}; known: {', '.join(EXPORTERS)}") from None
    return exporter(net.eval(), spec, out_dir)
