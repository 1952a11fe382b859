"""A .tflite file on OpenVINO (the `openvino` extra): Intel's runtime reads TFLite files directly.

    model = OpenVinoModel("model_int8.tflite", num_threads=2)   # model.runtime: openvino
    probs = model.predict(tiles_uint8)                           # as TFLiteModel.predict

For an x86 panel PC beside the line, where OpenVINO may beat LiteRT (`station bench --runtime
litert,openvino` says which). The file's input and output quantization is read once with LiteRT,
so tiles go in and probabilities come out exactly as on LiteRT; a batch of another size is
compiled once and kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.core.errors import BadInput
from edge.inference.runtime import TFLiteModel, runtime_version


class OpenVinoModel(TFLiteModel):
    """TFLiteModel's interface on an OpenVINO compiled model (CPU)."""

    def __init__(self, path: str | Path, num_threads: int = 2, delegate: str | None = None):
        try:
            import openvino
        except ImportError:
            raise BadInput("model.runtime openvino: pip install .[openvino]") from None
        if delegate:
            raise BadInput(f"model.delegate {delegate}: delegates are LiteRT's; OpenVINO runs on its own CPU plugin")
        details = TFLiteModel(path, num_threads=1)  # the file's I/O details and quantization, read once
        self.path, self.num_threads, self.delegate, self.runtime = details.path, num_threads, None, "openvino"
        self.input, self.output = dict(details.input), dict(details.output)
        self._ops = details.op_types()
        self.core = openvino.Core()
        try:
            self.model = self.core.read_model(str(self.path))
        except RuntimeError as exc:
            raise BadInput(f"{self.path}: OpenVINO cannot read it ({str(exc).splitlines()[0]})") from None
        self.compiled: dict[int, object] = {}
        self.batchable = True
        self._resize_batch(int(self.input["shape"][0]))

    def _resize_batch(self, batch: int) -> None:
        if batch not in self.compiled:
            self.model.reshape([batch, *(int(d) for d in self.input["shape"][1:])])
            # unpinned: each stream's model has a Core of its own, and pinned they all take the first cores
            config = {"INFERENCE_NUM_THREADS": self.num_threads, "ENABLE_CPU_PINNING": False}
            self.compiled[batch] = self.core.compile_model(self.model, "CPU", config)
        self.request = self.compiled[batch].create_infer_request()
        self.input["shape"] = np.array([batch, *self.input["shape"][1:]])

    def describe(self) -> str:
        return f"{self.path.name} on openvino {runtime_version('openvino')}, CPU plugin, {self.num_threads} threads"

    def invoke(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: batch})[0]

    def op_types(self) -> dict[str, int]:
        return self._ops

    def delegate_partitions(self) -> int:
        return 0
