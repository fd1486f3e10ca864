"""A test double of `magicmind.python.runtime`, shaped after Cambricon's samples (python_common/*.py).

It records every call in `CALLS` and drives the calibration protocol as a calibrator would. Lives only under
tests/: the package never imports it. `install(monkeypatch)` registers it as the SDK modules.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np

CALLS: list[tuple] = []
CALIBRATION_SAMPLES: list[np.ndarray] = []
ENQUEUED: list[np.ndarray] = []


class Status:
    def __init__(self, code=None, message=""):
        self.code, self.message = code, message

    @staticmethod
    def OK():
        return Status()

    def ok(self):
        return self.code is None

    def __str__(self):
        return f"{self.code}: {self.message}"


class Code:
    OUT_OF_RANGE = "OUT_OF_RANGE"


class DataType:
    FLOAT32 = "FLOAT32"


class ModelKind:
    kPytorch = "kPytorch"


class QuantizationAlgorithm:
    LINEAR_ALGORITHM = "LINEAR_ALGORITHM"
    EQNM_ALGORITHM = "EQNM_ALGORITHM"


class Dims:
    def __init__(self, dims):
        self.dims = list(dims)

    def GetDims(self):
        return self.dims


class _NetworkInput:
    def set_dimension(self, dims):
        CALLS.append(("set_dimension", dims.GetDims()))
        return Status.OK()


class Network:
    def __init__(self):
        CALLS.append(("Network",))

    def get_input(self, index):
        return _NetworkInput()


class Parser:
    def __init__(self, kind):
        CALLS.append(("Parser", kind))

    def set_model_param(self, name, value):
        CALLS.append(("set_model_param", name, value))
        return Status.OK()

    def parse(self, network, path):
        assert Path(path).is_file(), path
        CALLS.append(("parse", Path(path).name))
        return Status.OK()


class BuilderConfig:
    def __init__(self):
        self.fragments = []
        CALLS.append(("BuilderConfig",))

    def __setattr__(self, name, value):
        if name == "mlu_archs":
            CALLS.append(("mlu_archs", value))
        super().__setattr__(name, value)

    def parse_from_string(self, text):
        self.fragments.append(json.loads(text))
        CALLS.append(("parse_from_string", json.loads(text)))
        return Status.OK()


class CalibDataInterface:
    def __init__(self):
        pass


class Calibrator:
    def __init__(self, data):
        assert len(data) == 1 and isinstance(data[0], CalibDataInterface)
        self.data = data[0]
        CALLS.append(("Calibrator",))

    def set_quantization_algorithm(self, algorithm):
        CALLS.append(("set_quantization_algorithm", algorithm))
        return Status.OK()

    def calibrate(self, network, config):
        CALLS.append(("calibrate",))
        assert self.data.get_data_type() == DataType.FLOAT32
        assert self.data.reset().ok()
        while self.data.next().ok():
            sample = self.data.get_sample()
            assert list(sample.shape) == self.data.get_shape().GetDims() and sample.dtype == np.float32
            CALIBRATION_SAMPLES.append(sample)
        return Status.OK()


class Model:
    class EngineConfig:
        device_type = None

    def serialize_to_file(self, path):
        CALLS.append(("serialize_to_file", Path(path).name))
        Path(path).write_text("fake magicmind model")
        return Status.OK()

    def deserialize_from_file(self, path):
        CALLS.append(("deserialize_from_file", Path(path).name))
        return Status.OK() if Path(path).is_file() else Status("NOT_FOUND", path)

    def create_i_engine(self, config):
        assert config.device_type == "MLU"
        CALLS.append(("create_i_engine",))
        return _IEngine()


class Builder:
    def build_model(self, name, network, config):
        CALLS.append(("build_model", name))
        return Model()


class System:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def device_count(self):
        return 1


class _Queue:
    def sync(self):
        CALLS.append(("sync",))
        return Status.OK()


class Device:
    id = None

    def active(self):
        CALLS.append(("active", self.id))
        return Status.OK()

    def create_queue(self):
        return _Queue()


class _Tensor:
    def __init__(self, data=None):
        self.data = data

    def from_numpy(self, array):
        self.data = array

    def to(self, device):
        CALLS.append(("to_device",))

    def asnumpy(self):
        return self.data


class _IContext:
    def create_inputs(self):
        return [_Tensor()]

    def enqueue(self, inputs, outputs, queue):
        """Fake logits: 'car' where a pixel is brighter than mid-grey, on 0-255 input."""
        x = inputs[0].data
        ENQUEUED.append(x)
        score = x.mean(axis=1, keepdims=True) - 127.5
        outputs.append(_Tensor(np.concatenate([-score, score], axis=1).astype(np.float32)))
        return Status.OK()


class _IEngine:
    def create_i_context(self):
        return _IContext()


def install(monkeypatch) -> None:
    """Register this double as magicmind.python.runtime (and .parser) for one test."""
    CALLS.clear()
    CALIBRATION_SAMPLES.clear()
    ENQUEUED.clear()
    runtime = sys.modules[__name__]
    parser = types.ModuleType("magicmind.python.runtime.parser")
    parser.Parser = Parser
    for name, module in {
        "magicmind": types.ModuleType("magicmind"),
        "magicmind.python": types.ModuleType("magicmind.python"),
        "magicmind.python.runtime": runtime,
        "magicmind.python.runtime.parser": parser,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
