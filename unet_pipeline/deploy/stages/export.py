"""Export: the PyTorch model -> the graph format an engine consumes (engine.capabilities.export_format)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from unet_pipeline.core import PipelineError
from unet_pipeline.engines import BuildSpec


@contextmanager
def _traced_at_fixed_size() -> Iterator[None]:
    """Tracing turns model.align's padding test (`if pad_h or pad_w`) into a constant, and warns over 280
    characters about it. H and W are fixed in every export (only the batch may vary, and it is part of the cache
    key), so that constant is right and the warning only noise in a user's terminal."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _openvino_ir(net: torch.nn.Module, spec: BuildSpec, out_dir: Path) -> Path:
    """OpenVINO IR via ov.convert_model; batch static or a [min..max] range, H and W fixed."""
    import openvino as ov

    low, high = spec.batch_dims
    batch = ov.Dimension(low, high) if spec.shape == "dynamic" else ov.Dimension(spec.batch)
    element = ov.Type.u8 if spec.uint8_nhwc else ov.Type.f32
    with torch.no_grad(), _traced_at_fixed_size():
        model = ov.convert_model(
            net, example_input=_zeros(spec, low), input=[(ov.PartialShape([batch, *spec.input_shape(1)[1:]]), element)]
        )
    model.inputs[0].get_tensor().set_names({"input"})
    model.outputs[0].get_tensor().set_names({"logits"})
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def _zeros(spec: BuildSpec, batch: int) -> torch.Tensor:
    return torch.from_numpy(spec.zeros(batch))


def _example_and_dims(spec: BuildSpec) -> tuple[torch.Tensor, dict | None]:
    """Example input and torch.export dynamic shapes for the batch dim.

    torch.export specialises a dim whose example size is 1, so a dynamic batch is traced at size >= 2.
    """
    low, high = spec.batch_dims
    if spec.shape != "dynamic" or low == high:
        return _zeros(spec, spec.batch), None
    batch = torch.export.Dim("batch", min=low, max=high)
    return _zeros(spec, max(2, low)), {"x": {0: batch}}


def _onnx(net: torch.nn.Module, spec: BuildSpec, out_dir: Path) -> Path:
    """ONNX (opset 18) via the torch.export-based exporter; H and W fixed, batch static or dynamic."""
    example, dims = _example_and_dims(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=True,
            dynamic_shapes=dims,
            opset_version=18,
            input_names=["input"],
            output_names=["logits"],
            verbose=False,
        )
    return path


def _torch_export(net: torch.nn.Module, spec: BuildSpec, out_dir: Path) -> Path:
    """A torch.export ExportedProgram (.pt2): the graph the torch engine runs or compiles."""
    example, dims = _example_and_dims(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.pt2"
    torch.export.save(torch.export.export(net, (example,), dynamic_shapes=dims), str(path))
    return path


def _torchscript(net: torch.nn.Module, spec: BuildSpec, out_dir: Path) -> Path:
    """A TorchScript trace at the configured input shape, as MagicMind's PyTorch parser consumes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.pt"
    with torch.no_grad(), _traced_at_fixed_size():
        torch.jit.trace(net, _zeros(spec, spec.build_batch)).save(str(path))
    return path


EXPORTERS = {"openvino_ir": _openvino_ir, "onnx": _onnx, "torch_export": _torch_export, "torchscript": _torchscript}


def export_graph(net: torch.nn.Module, export_format: str, spec: BuildSpec, out_dir: Path) -> Path:
    """Write the graph for `export_format` into out_dir and return its path."""
    try:
        exporter = EXPORTERS[export_format]
    except KeyError:
        raise PipelineError(f"no exporter for format {export_format!r}; known: {', '.join(EXPORTERS)}") from None
    return exporter(net.eval(), spec, out_dir)
