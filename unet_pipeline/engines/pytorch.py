"""PyTorch: the exported program (torch.export, .pt2) run eagerly or through torch.compile (inductor).

The reference every other engine is checked against. Float precisions are autocast (bf16/fp16 compute
really happens in that type, emulated and slow on CPUs without native support, never silently fp32). No
int8: PyTorch has no quantized path for this model that we would call real, so none is declared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet_pipeline.core import PipelineError
from unet_pipeline.engines.base import Capabilities, Engine, Session
from unet_pipeline.engines.spec import BuildSpec

MODEL, META = "model.pt2", "build.json"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class TorchEngine(Engine):
    name = "torch"
    capabilities = Capabilities(
        precisions=("force_float32", "force_bfloat16", "force_float16"),
        shapes=("static", "dynamic"),
        devices=("cpu", "cuda"),
        export_format="torch_export",
    )

    def __init__(self, compile: bool = False, freezing: bool = True, compile_mode: str = "default"):
        self.compile = compile
        self.freezing = freezing
        self.compile_mode = compile_mode

    def version(self) -> str:
        return torch.__version__

    def settings(self) -> dict[str, Any]:
        return {"compile": self.compile, "freezing": self.freezing, "compile_mode": self.compile_mode}

    def check(self, spec: BuildSpec) -> None:
        super().check(spec)
        if spec.device == "cuda" and not torch.cuda.is_available():
            raise PipelineError(f"device=cuda but torch {torch.__version__} sees no CUDA GPU; use device=cpu")

    def build(self, graph: Path, spec: BuildSpec, calibration: list[np.ndarray] | None, out_dir: Path) -> Path:
        """The exported program is the artifact; compilation (if asked) happens at load, before timing."""
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.export.load(str(graph))  # refuse a graph that does not load, at build time
        shutil.copyfile(graph, out_dir / MODEL)
        (out_dir / META).write_text(
            json.dumps({"precision": spec.precision.mode, "torch": self.version(), **self.settings()}, indent=2)
        )
        return out_dir / MODEL

    def load(self, artifact: Path, spec: BuildSpec) -> Session:
        device = torch.device("cuda" if spec.device == "cuda" else "cpu")
        module = torch.export.load(str(artifact)).module().to(device)
        if self.compile:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = self.freezing
            module = torch.compile(module, mode=self.compile_mode)
        session = TorchSession(module, device, _DTYPES[spec.precision.float_type], self.settings())
        if self.compile:  # compile now, so inference timings do not include it
            session.infer(spec.zeros(spec.batch))
        return session


class TorchSession(Session):
    def __init__(self, module, device: torch.device, dtype: torch.dtype, settings: dict[str, Any]):
        self._module, self._device, self._dtype, self._settings = module, device, dtype, settings

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self._device)
        with torch.autocast(self._device.type, dtype=self._dtype, enabled=self._dtype != torch.float32):
            logits = self._module(x)
        return logits.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "inference_precision": str(self._dtype).removeprefix("torch."),
            "quantized_layer_share": None,
            "device": str(self._device),
            "num_threads": torch.get_num_threads(),
            **self._settings,
        }
