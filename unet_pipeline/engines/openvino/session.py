"""A loaded OpenVINO model: synchronous inference without input copies, asynchronous requests for the throughput
figure, and what really runs (inference precision, int8 share of the compute layers, streams, threads).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np

from unet_pipeline.core import CallLimits
from unet_pipeline.engines.base import Session

_TYPE_NAMES = {
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "float32": "float32",
    "float16": "float16",
    "bfloat16": "bfloat16",
}
_COMPUTE_LAYERS = {"Convolution", "Deconvolution", "FullyConnected", "MatMul"}
_INT_PRECISIONS = {"i8", "u8"}


def _type_name(ov_type: Any) -> str:
    """'<Type: float32>' / 'bf16' -> 'float32' / 'bfloat16'."""
    text = getattr(ov_type, "to_string", lambda: str(ov_type))()
    return _TYPE_NAMES.get(text, text)


class OpenVINOSession(Session):
    supports_async = True

    def __init__(self, compiled):
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._turns = [compiled.create_infer_request() for _ in range(2)]  # start / finish: two in turn
        self._started = 0
        self._in_flight: deque = deque()

    def run_async(
        self, batch: np.ndarray, requests: int, limits: CallLimits, on_call: Callable[[], object] | None = None
    ) -> tuple[int, float]:
        import openvino as ov

        queue = ov.AsyncInferQueue(self._compiled, requests)
        finished = threading.Condition()
        done = [0]  # completions, counted in OpenVINO's callback thread: the limits' mean is per finished call

        def completed(_request: object, _data: object) -> None:
            with finished:
                done[0] += 1
                finished.notify()

        queue.set_callback(completed)
        count, start = 0, time.perf_counter()
        while True:
            with finished:  # all requests busy: decide on the next start only once one has finished
                finished.wait_for(lambda started=count: started - done[0] < requests)
                ended = done[0]
            if not limits.more(ended, time.perf_counter() - start, in_flight=count - ended):
                break
            queue.start_async({0: batch}, share_inputs=True)  # no copy per call: the batch is read-only here
            count += 1
            if on_call is not None:
                on_call()
        queue.wait_all()
        return count, time.perf_counter() - start

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_shared(batch).copy()

    def infer_shared(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer({0: batch}, share_inputs=True)  # no copy of the input: the call returns when done
        return self._request.get_output_tensor(0).data  # a view of the request's output tensor

    def start(self, batch: np.ndarray) -> None:
        """Run `batch` now, on the request not holding the previous batch's logits."""
        request = self._turns[self._started % 2]
        self._started += 1
        request.start_async({0: batch}, share_inputs=True)
        self._in_flight.append(request)

    def finish(self) -> np.ndarray:
        request = self._in_flight.popleft()
        request.wait()
        return request.get_output_tensor(0).data  # a view: valid until this request is started again

    def describe(self) -> dict[str, Any]:
        compiled = self._compiled
        layers: Counter[str] = Counter()
        floats: list[str] = []  # compute layers not running int8, by runtime name
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in _COMPUTE_LAYERS:
                precision = info["runtimePrecision"].astype(str)
                layers[precision] += 1
                if precision not in _INT_PRECISIONS:
                    floats.append(op.get_friendly_name())
        total = sum(layers.values())
        int8 = sum(n for p, n in layers.items() if p in _INT_PRECISIONS)
        return {
            "inference_precision": _type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
            "quantized_layer_share": round(int8 / total, 4) if total else None,
            "compute_layers_by_precision": dict(layers),
            "float_compute_layers": floats if int8 else [],
            "num_streams": int(compiled.get_property("NUM_STREAMS")),
            "num_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "input_shape": str(compiled.input(0).get_partial_shape()),
        }
