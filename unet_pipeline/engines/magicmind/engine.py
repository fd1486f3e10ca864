"""MagicMind on Cambricon MLU: the thin SDK adapter around the plan in plan.py.

Written against the Python API as Cambricon's samples use it (`magicmind.python.runtime`); the SDK ships
only in Cambricon's images, so this project has not run it on MLU hardware. Its call sequence is tested
against a test double of that API (tests/fake_magicmind.py)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from unet_pipeline.core import PipelineError, package_version
from unet_pipeline.engines.base import Capabilities, Engine, EnginePlan, Session
from unet_pipeline.engines.magicmind.plan import (
    PREFERENCES,
    QUANT_ALGORITHMS,
    CalibrationFeed,
    MagicMindSettings,
    build_plan,
    to_engine_input,
)
from unet_pipeline.engines.spec import BuildSpec

MODEL, PLAN = "model.mm", "build_plan.json"
SDK_MODULE = "magicmind.python.runtime"
MISSING_SDK = (
    "MagicMind is not importable (magicmind.python.runtime): its SDK ships only in Cambricon's MagicMind "
    "Docker images for MLU hosts; run there, or pass dry_run=true to write the build plan"
)


def load_sdk() -> SimpleNamespace:
    """The SDK modules the adapter uses, or a one-line PipelineError where they are absent."""
    try:
        mm = importlib.import_module(SDK_MODULE)
        parser = importlib.import_module(f"{SDK_MODULE}.parser")
    except ImportError as exc:
        raise PipelineError(MISSING_SDK) from exc
    return SimpleNamespace(mm=mm, Parser=parser.Parser)


def _ok(status: Any, what: str) -> None:
    if not status.ok():
        raise PipelineError(f"MagicMind {what} failed: {status}")


def calib_data(mm: Any, feed: CalibrationFeed) -> Any:
    """A `mm.CalibDataInterface` serving `feed` (its protocol: get_shape/get_data_type/get_sample/next/reset)."""

    class _CalibData(mm.CalibDataInterface):
        def __init__(self) -> None:
            super().__init__()

        def get_shape(self):
            return mm.Dims(feed.shape())

        def get_data_type(self):
            return mm.DataType.FLOAT32

        def get_sample(self):
            return feed.sample()

        def next(self):
            return mm.Status.OK() if feed.next() else mm.Status(mm.Code.OUT_OF_RANGE, "Data end reached")

        def reset(self):
            feed.reset()
            return mm.Status.OK()

    return _CalibData()


def _activate(mm: Any, device_id: int) -> Any:
    with mm.System() as system:
        if device_id >= system.device_count():
            raise PipelineError(
                f"MLU device {device_id} not found ({system.device_count()} visible); set engine.device_id"
            )
        device = mm.Device()
        device.id = device_id
        _ok(device.active(), f"activating MLU device {device_id}")
    return device


def build_model(
    sdk: SimpleNamespace, graph: Path, plan: dict[str, Any], feed: CalibrationFeed | None, out: Path
) -> Path:
    """Parser -> Network, BuilderConfig from the plan's fragments, calibration, build, serialize."""
    mm = sdk.mm
    network = mm.Network()
    parser = sdk.Parser(mm.ModelKind.kPytorch)
    parser.set_model_param("pytorch-input-dtypes", [mm.DataType.FLOAT32])
    parser.parse(network, str(graph))
    _ok(network.get_input(0).set_dimension(mm.Dims(plan["input_dims"])), "setting the input dimension")
    config = mm.BuilderConfig()
    config.mlu_archs = plan["mlu_archs"]
    for fragment in plan["builder_config_fragments"]:
        _ok(config.parse_from_string(json.dumps(fragment)), f"BuilderConfig.parse_from_string({fragment})")
    if "calibration" in plan:
        calibrator = mm.Calibrator([calib_data(mm, feed)])
        algorithm = getattr(mm.QuantizationAlgorithm, plan["calibration"]["quantization_algorithm"])
        _ok(calibrator.set_quantization_algorithm(algorithm), "setting the quantization algorithm")
        _activate(mm, plan["device_id"])
        _ok(calibrator.calibrate(network, config), "calibration")
    model = mm.Builder().build_model("unet", network, config)
    if model is None:
        raise PipelineError("MagicMind build_model returned no model; see the MagicMind log above")
    _ok(model.serialize_to_file(str(out)), f"serializing to {out}")
    return out


class MagicMindEngine(Engine):
    name = "magicmind"
    capabilities = Capabilities(
        precisions=(
            "force_float32",
            "force_float16",
            "qint8_mixed_float32",
            "qint8_mixed_float16",
            "qint16_mixed_float32",
            "qint16_mixed_float16",
        ),
        shapes=("static", "dynamic"),
        devices=("mlu",),
        export_format="torchscript",
        calibration_methods=tuple(QUANT_ALGORITHMS),
    )

    def __init__(
        self,
        arch: str | None = None,
        cluster_num: list[int] | None = None,
        device_id: int = 0,
        fold_normalization: bool = True,
        input_layout: str = "NCHW",
        computation_preference: str = "auto",
        type64to32_conversion: bool = True,
        conv_scale_fold: bool = False,
        user_json: str | None = None,
    ):
        for key, value, allowed in (
            ("input_layout", input_layout, ("NCHW", "NHWC")),
            ("computation_preference", computation_preference, PREFERENCES),
        ):
            if value not in allowed:
                raise PipelineError(f"engine.{key}={value}; choose one of {', '.join(allowed)}")
        self.user_json_path = user_json
        self.settings_ = MagicMindSettings(
            arch=arch or "mtp_372",
            cluster_num=tuple(cluster_num or (2, 6, 8)),
            device_id=device_id,
            fold_normalization=fold_normalization,
            input_layout=input_layout,
            computation_preference=computation_preference,
            type64to32_conversion=type64to32_conversion,
            conv_scale_fold=conv_scale_fold,
            user_json=_read_user_json(user_json),
        )

    def version(self) -> str:
        return package_version("magicmind") or "not installed"

    def settings(self) -> dict[str, Any]:
        settings = {k: v for k, v in vars(self.settings_).items() if k != "user_json"}
        return {**settings, "cluster_num": list(self.settings_.cluster_num), "user_json": self.user_json_path}

    def plan(self, spec: BuildSpec) -> EnginePlan:
        """The common plan, MagicMind's builder configuration and calibration (its cache key takes them from the
        calibration settings, as MagicMind has no quantizer settings of its own to map), and mm_run's command."""
        plan = super().plan(spec)
        plan.details.update(build_plan(spec, self.settings_))
        plan.details["mm_run"] = mm_run_command(Path(MODEL), spec.batch, self.settings_.device_id)
        return plan

    def check(self, spec: BuildSpec) -> None:
        super().check(spec)
        if spec.precision.needs_calibration and spec.quant.method == "eqnm" and spec.quant.activations == "asymmetric":
            raise PipelineError(
                "MagicMind's EQNM calibration works with symmetric activations only; "
                "set calibration.activations=symmetric or calibration.method=minmax"
            )
        if spec.uint8_nhwc:
            raise PipelineError(
                "engine=magicmind folds normalization and layout with its own builder options "
                "(engine.fold_normalization, engine.input_layout=NHWC); keep model.input_format=float_nchw"
            )

    def require_runtime(self) -> None:
        load_sdk()

    def vendor_benchmark(self, artifact: Path, spec: BuildSpec, seconds: float, requests: int = 1):
        """Cambricon's mm_run on the built model, as the sample's perf.sh runs it."""
        return mm_run_command(artifact, spec.batch, self.settings_.device_id), parse_mm_run

    def build(self, graph: Path, spec: BuildSpec, calibration: list[np.ndarray] | None, out_dir: Path) -> Path:
        sdk = load_sdk()
        out_dir.mkdir(parents=True, exist_ok=True)
        plan = build_plan(spec, self.settings_)
        (out_dir / PLAN).write_text(json.dumps(plan, indent=2))
        feed = CalibrationFeed(calibration, spec.build_batch, self.settings_) if "calibration" in plan else None
        return build_model(sdk, graph, plan, feed, out_dir / MODEL)

    def load(self, artifact: Path, spec: BuildSpec) -> Session:
        return MagicMindSession(load_sdk().mm, artifact, spec, self.settings_)


def mm_run_command(model: Path, batch: int, device_id: int, iterations: int = 1000) -> list[str]:
    """Cambricon's benchmark tool, as the sample's README invokes it."""
    return [
        "mm_run",
        "--magicmind_model",
        str(model),
        "--batch_size",
        str(batch),
        "--devices",
        str(device_id),
        "--threads",
        "1",
        "--iterations",
        str(iterations),
    ]


def parse_mm_run(output: str) -> dict[str, Any]:
    """mm_run's report is not documented here: keep its tail, and a throughput figure where one is printed."""
    match = re.search(r"[Tt]hroughput[^0-9\n]*([\d.]+)", output)
    return {"throughput_ips": float(match.group(1)) if match else None, "raw_tail": output.strip().splitlines()[-20:]}


def _read_user_json(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PipelineError(f"engine.user_json={path} is not a readable JSON file ({type(exc).__name__})") from exc


class MagicMindSession(Session):
    """Model.deserialize_from_file -> Device -> IEngine -> IContext -> queue; one enqueue per batch."""

    def __init__(self, mm: Any, artifact: Path, spec: BuildSpec, settings: MagicMindSettings):
        self._mm, self._spec, self._settings = mm, spec, settings
        self._model = mm.Model()
        _ok(self._model.deserialize_from_file(str(artifact)), f"loading {artifact}")
        self._device = _activate(mm, settings.device_id)
        engine_config = mm.Model.EngineConfig()
        engine_config.device_type = "MLU"
        self._engine = self._model.create_i_engine(engine_config)
        self._context = self._engine.create_i_context()
        self._queue = self._device.create_queue()
        self._inputs = self._context.create_inputs()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._inputs[0].from_numpy(to_engine_input(batch, self._settings))
        self._inputs[0].to(self._device)
        outputs: list[Any] = []
        _ok(self._context.enqueue(self._inputs, outputs, self._queue), "enqueue")
        _ok(self._queue.sync(), "queue sync")
        return outputs[0].asnumpy()

    def describe(self) -> dict[str, Any]:
        precision = self._spec.precision
        return {
            "inference_precision": precision.float_type,
            "quantized_layer_share": None,  # MagicMind reports no per-layer precision through this API
            "precision_mode": precision.mode,
            "arch": self._settings.arch,
            "device_id": self._settings.device_id,
        }
