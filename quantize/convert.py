"""Keras -> TFLite: float32, float16 and full-integer int8 with uint8 input and output.

    model = load_keras("runs/crack/model.keras")      # edge.inference.predictors.load_keras
    saved = export_saved_model(model, tmpdir)                      # fixed batch 1, fixed size
    tiles = calibration_tiles("data/crack", card, count=200)        # as the edge pre-processes
    Path("model_int8.tflite").write_bytes(convert(saved, "int8", tiles))

The export has a fixed batch of 1 and a fixed spatial size, so the graph carries no dynamic-shape
ops (SHAPE, STRIDED_SLICE, PACK around transposed convs) and XNNPACK takes it in one partition.
The int8 file takes raw 0-255 pixels as uint8 (input scale 1, zero point 0: the calibration set
holds one 0-255 ramp tile to pin that range) and gives the probability as uint8 (scale 1/256).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from edge.core.card import ModelCard
from edge.evaluation.dataset import list_samples, read_image, read_mask
from edge.inference.segment import cut_tiles, resize_input, scaled, scaled_mask

FORMATS = ("int8", "float16", "float32")


def export_saved_model(model: keras.Model, directory: str | Path) -> str:
    """Export the model as a SavedModel with a (1, H, W, C) float32 signature."""
    spec = keras.InputSpec(shape=(1, *model.input_shape[1:]), dtype="float32")
    model.export(str(directory), format="tf_saved_model", input_signature=[spec], verbose=False)
    return str(directory)


def calibration_tiles(data: str | Path, card: ModelCard, count: int = 200, seed: int = 0) -> np.ndarray:
    """`count` model inputs from the train split, half with a defect and half clean where possible."""
    spec = card.input
    defective, clean = [], []
    for sample in list_samples(data, "train"):
        image = read_image(sample.image, spec.channels)
        mask = read_mask(sample, image.shape[:2]) if sample.label is not None else np.zeros(image.shape[:2], np.uint8)
        if card.preprocess.mode == "resize":
            tiles, flags = [resize_input(image, spec)], [bool(mask.any())]
        else:
            image, mask = scaled(image, card.preprocess.scale), scaled_mask(mask, card.preprocess.scale)
            tiles, origins = cut_tiles(image, card)
            flags = [bool(mask[y : y + spec.height, x : x + spec.width].any()) for y, x in origins]
        for tile, flag in zip(tiles, flags):
            (defective if flag else clean).append(tile)
    rng = np.random.default_rng(seed)
    half = min(count // 2, len(defective))
    chosen = [defective[i] for i in rng.permutation(len(defective))[:half]]
    chosen += [clean[i] for i in rng.permutation(len(clean))[: count - 1 - len(chosen)]]
    chosen += [defective[i] for i in rng.permutation(len(defective))[half : half + count - 1 - len(chosen)]]
    ramp = np.linspace(0, 255, spec.height * spec.width * spec.channels).reshape(spec.height, spec.width, spec.channels)
    return np.stack([np.round(ramp).astype(np.uint8), *chosen])


def representative(tiles: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's representative dataset: one float32 (1, H, W, C) tile at a time."""
    return lambda: ([tile[None].astype(np.float32)] for tile in tiles)


def converter(saved_model: str, fmt: str, tiles: np.ndarray | None = None) -> tf.lite.TFLiteConverter:
    """A TFLite converter of the SavedModel set up for one format."""
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if fmt == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif fmt == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative(tiles)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.uint8
    return conv

