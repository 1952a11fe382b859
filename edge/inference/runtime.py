"""TFLite interpreters: LiteRT first, then tflite_runtime, then tensorflow.lite.

    model = TFLiteModel("model_int8.tflite", num_threads=2, delegate=None)   # or "edgetpu", or a .so
    probs = model.predict(tiles_uint8)       # (N, h, w) float32 in [0, 1]
    model.describe(), model.op_types(), model.delegate_partitions()

Inputs are quantized and outputs dequantized with the tensor's own scale and zero point, so int8,
float16 and float32 files are used the same way. All tiles of a frame go through one invoke: the
input's batch dimension is resized to the tile count (once, while the frame size stays the same)
on LiteRT; where the runtime refuses, and on the older runtimes, they go one by one.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import time
from pathlib import Path

import numpy as np

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

RUNTIMES = {  # name -> (module, its Interpreter, its load_delegate), in order of preference
    "litert": ("ai_edge_litert.interpreter", "Interpreter", "load_delegate"),
    "tflite_runtime": ("tflite_runtime.interpreter", "Interpreter", "load_delegate"),
    "tf": ("tensorflow", "lite.Interpreter", "lite.experimental.load_delegate"),  # gone from TensorFlow 2.20+
}
EDGETPU_LIBRARY = "libedgetpu.so.1"


def runtime_module(runtime: str | None = None):
    """The Interpreter and load_delegate of `runtime`, or of the first installed one; with its name."""
    names = [runtime] if runtime and runtime != "auto" else list(RUNTIMES)
    for name in names:
        module_name, *attributes = RUNTIMES[name]
        try:
            module = importlib.import_module(module_name)
            interpreter, load_delegate = (functools.reduce(getattr, a.split("."), module) for a in attributes)
            return interpreter, load_delegate, name
        except (ImportError, AttributeError):
            continue
    raise BadInput(f"no TFLite runtime installed (tried {', '.join(names)}); pip install ai-edge-litert")


MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED")


def multiply_accumulates(path: str | Path) -> int:
    """Multiply-accumulates of one invoke of a .tflite file at its own input shape, counted from its graph
    as the converter does (its estimate also counts bias adds): a (depthwise) convolution's weight count per output pixel, a transposed
    one's per input pixel, a dense layer's per row."""
    interpreter_class, _, _ = runtime_module()
    interpreter = interpreter_class(model_path=str(path))
    shapes = [tensor["shape"] for tensor in interpreter.get_tensor_details()]
    total = 0
    for op in interpreter._get_ops_details():  # the one public way to the graph: LiteRT's own analyzer uses it
        name = op["op_name"]
        if name not in MAC_OPS:
            continue
        weights = int(np.prod(shapes[op["inputs"][1]]))
        if name == "TRANSPOSE_CONV":
            pixels = np.prod(shapes[op["inputs"][2]][:-1])  # inputs: output shape, weights, the input
        else:
            pixels = np.prod(shapes[op["outputs"][0]][:-1])  # batch x height x width (rows for a dense layer)
        total += int(pixels) * weights
    return total


OTHER_RUNTIMES = {"openvino": "openvino"}  # name -> module: runtimes that read .tflite files but are not TFLite's


def runtime_installed(name: str) -> bool:
    """Whether the runtime's package is installed, found without importing it."""
    module = OTHER_RUNTIMES[name] if name in OTHER_RUNTIMES else RUNTIMES[name][0]
    return importlib.util.find_spec(module.split(".")[0]) is not None


def runtime_version(name: str) -> str:
    """The installed version of a runtime's distribution, or '?'."""
    from importlib.metadata import PackageNotFoundError, version

    dists = {"litert": ["ai-edge-litert"], "tflite_runtime": ["tflite-runtime"], "tf": ["tensorflow", "tensorflow-cpu"],
             "openvino": ["openvino"]}
    for dist in dists[name]:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "?"


def open_tflite(path: str | Path, num_threads: int = 2, runtime: str | None = None, delegate: str | None = None):
    """A .tflite file ready to invoke on `runtime`: a TFLite interpreter (auto: LiteRT first) or OpenVINO."""
    if runtime == "openvino":
        from edge.inference.openvino import OpenVinoModel

        return OpenVinoModel(path, num_threads, delegate)
    return TFLiteModel(path, num_threads, runtime, delegate)


class TFLiteModel:
    """A .tflite file ready to invoke, batch by batch of the file's fixed batch size."""

    def __init__(self, path: str | Path, num_threads: int = 2, runtime: str | None = None, delegate: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise BadInput(f"{self.path}: model file not found")
        cls, load_delegate, self.runtime = runtime_module(runtime)
        self.num_threads, self.delegate = num_threads, delegate
        delegates = []
        if delegate:
            library = EDGETPU_LIBRARY if delegate == "edgetpu" else delegate
            try:
                delegates.append(load_delegate(library))
            except (ValueError, OSError, RuntimeError) as exc:
                raise BadInput(f"delegate {library}: cannot be loaded ({str(exc).splitlines()[0]})") from None
        try:
            self.interpreter = cls(model_path=str(self.path), num_threads=num_threads, experimental_delegates=delegates)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BadInput(f"{self.path}: not a valid TFLite model ({str(exc).splitlines()[0]})") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        # The older runtimes' XNNPACK crashes (SIGSEGV, SIGFPE) on float files whose batch was
        # resized (seen with tflite_runtime 2.14), so only LiteRT takes a frame's tiles at once.
        self.batchable = self.runtime == "litert"

    def _resize_batch(self, batch: int) -> None:
        try:
            self.interpreter.resize_tensor_input(self.input["index"], [batch, *self.input["shape"][1:]], strict=False)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError):
            log.info("%s: batch size is fixed; tiles are invoked one by one", self.path)
            self.batchable = False
            self.interpreter.resize_tensor_input(self.input["index"], [1, *self.input["shape"][1:]], strict=False)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def describe(self) -> str:
        """Which runtime, version, delegate and threads run this model, in one line."""
        delegate = self.delegate or "XNNPACK (CPU)"
        return f"{self.path.name} on {self.runtime} {runtime_version(self.runtime)}, delegate {delegate}, {self.num_threads} threads"

    def invoke(self, batch: np.ndarray) -> np.ndarray:
        """One invoke on a batch of the model's own input shape; returns the raw output tensor."""
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def invoke_ms(self, runs: int = 20) -> float:
        """Median wall time of one bare invoke() at the current input shape, after one warm-up."""
        x = np.zeros(self.input["shape"], self.input["dtype"])
        self.invoke(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.invoke(x)
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1000)

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """Probabilities (N, h, w) of uint8 tiles (N, h, w, C), any N."""
        if self.batchable and len(tiles) != self.input["shape"][0]:
            self._resize_batch(len(tiles))
        scale, zero = self.input["quantization"]
        dtype, per_call = self.input["dtype"], int(self.input["shape"][0])
        x = tiles
        if x.dtype != dtype or (scale and (scale, zero) != (1.0, 0)):  # int8 models take raw uint8 as is
            x = tiles.astype(np.float32)
            if scale:
                x = np.clip(np.round(x / scale + zero), np.iinfo(dtype).min, np.iinfo(dtype).max)
            x = x.astype(dtype)
        out = np.concatenate([self.invoke(x[i : i + per_call]) for i in range(0, len(x), per_call)])
        scale, zero = self.output["quantization"]
        probs = (out.astype(np.float32) - zero) * scale if scale else out.astype(np.float32)
        return probs[..., 0]

    def op_types(self) -> dict[str, int]:
        """Op type -> count in the file (delegated ops show as DELEGATE nodes)."""
        found: dict[str, int] = {}
        for op in self.interpreter._get_ops_details():
            found[op["op_name"]] = found.get(op["op_name"], 0) + 1
        return dict(sorted(found.items()))

    def delegate_partitions(self) -> int:
        """How many partitions the default delegate (XNNPACK) took; 1 means the whole graph."""
        return self.op_types().get("DELEGATE", 0)
