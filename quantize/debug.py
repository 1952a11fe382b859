"""Where does int8 lose accuracy? Per-layer error from TFLite's quantization debugger.

    worst = layer_errors(converter, tiles)[:10]   # [{"tensor": ..., "op": ..., "rmse_per_scale": ...}]

`rmse_per_scale` is the root-mean-square difference between the float and the quantized layer
output, in units of the layer's quantization step: about 0.29 (1/sqrt(12)) is pure rounding,
values well above 1 mark the layers worth keeping in float (`--keep-float`).
"""

from __future__ import annotations

import csv
import io

import numpy as np
import tensorflow as tf

from quantize.convert import representative


def layer_errors(converter: tf.lite.TFLiteConverter, tiles: np.ndarray) -> list[dict]:
    """Per-layer quantization error of the converter's int8 model on `tiles`, worst first."""
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative(tiles))
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"] or 0)
        rows.append({
            "tensor": row["tensor_name"],
            "op": row["op_name"],
            "rmse_per_scale": float(np.sqrt(float(row["mean_squared_error"]))) / scale if scale else 0.0,
            "max_abs_error": float(row["max_abs_error"]),
        })
    return sorted(rows, key=lambda r: r["rmse_per_scale"], reverse=True)


def selective_int8(converter: tf.lite.TFLiteConverter, tiles: np.ndarray, keep_float: list[str]) -> bytes:
    """The int8 model with the named tensors (or op types, in capitals) left in float."""
    ops = [name for name in keep_float if name.isupper()]
    nodes = [name for name in keep_float if not name.isupper()]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes, denylisted_ops=ops)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative(tiles), debug_options=options)
    return debugger.get_nondebug_quantized_model()
