"""A tight benchmark of int8 multiply-accumulates: a .tflite file that is matrix products and little else.

    python -m quantize.peak --out runs/bench/peak          # writes gemm_int8.tflite and its card
    station bench --model runs/bench/peak/gemm_int8.tflite --runtime litert,openvino --threads 2

Eight 1x1 convolutions of 256 channels on a 64x64 input (each a 4096 x 256 x 256 matrix product,
0.27 GMAC, on activations that fit in a core's cache), between a 3-channel input and a 1-channel
output, int8 as `station quantize` makes them: the rate a runtime reaches on it (bench's GMAC/s) is its int8 peak on this CPU, the ceiling
to set a segmentation model's rate against.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import keras
import numpy as np

from edge.core.card import InputSpec, ModelCard
from quantize.convert import converter, export_saved_model

SIZE, CHANNELS, LAYERS = 64, 256, 8


def gemm_model() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(CHANNELS, 1, activation="relu")(x)
    for _ in range(LAYERS):
        x = keras.layers.Conv2D(CHANNELS, 1, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))


def write(out: Path) -> Path:
    """The int8 file and its card in `out`; returns the file's path."""
    out.mkdir(parents=True, exist_ok=True)
    tiles = np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE, 3), np.uint8)
    path = out / "gemm_int8.tflite"
    with tempfile.TemporaryDirectory() as tmp:
        path.write_bytes(converter(export_saved_model(gemm_model(), Path(tmp) / "saved"), "int8", tiles).convert())
    ModelCard("int8 matrix products (quantize.peak)", InputSpec(SIZE, SIZE, 3), format="tflite-int8").save(path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gemm_int8.tflite and its card")
    print(write(Path(parser.parse_args().out)))
