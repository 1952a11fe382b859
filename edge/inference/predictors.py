"""The one model loader: a model file as a `predict` function, uint8 batch (N, h, w, C) ->
probabilities (N, h, w), with its card checked against the file (station, eval and bench alike).

    loaded = load_model("runs/crack/model.keras")      # or a .tflite file, or "default"
    loaded.predict(tiles), loaded.card, loaded.tflite   # tflite: the TFLiteModel of a .tflite file

`.tflite` files run on the edge's TFLite runtime; `.keras` files need Keras (the `train` extra),
imported only when asked for, so the edge runtime itself never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.core.card import ModelCard
from edge.core.errors import BadInput
from edge.inference.models import resolve
from edge.inference.runtime import TFLiteModel, open_tflite
from edge.inference.segment import Predict

KERAS_BATCH = 16


def check_card(path: Path, card: ModelCard, shape: tuple) -> None:
    """BadInput when the card's input size and channels are not the model's (H, W, C)."""
    expected, actual = (card.input.height, card.input.width, card.input.channels), tuple(int(v) for v in shape)
    if actual != expected:
        raise BadInput(f"{ModelCard.path_for(path)}: card says input {expected}, the model takes {actual}")


def load_keras(path: str | Path):
    """A trained segmentation model (keras.Model); BadInput when Keras is missing, or the file is no
    Keras model or takes no image. Keras is imported here only: the device never gets here."""
    try:
        import keras
    except ImportError:
        raise BadInput(f"{path}: .keras models need Keras; install the train extra (pip install .[train])") from None
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: model file not found")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a file that is not a model
        raise BadInput(f"{path}: not a loadable Keras model ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else ()
    if len(shape) != 4 or shape[3] not in (1, 3) or None in shape[1:]:
        raise BadInput(f"{path}: input {shape} is not an image (expected (batch, height, width, 1 or 3))")
    return model


def _keras_predictor(path: Path, card: ModelCard) -> Predict:
    model = load_keras(path)
    check_card(path, card, tuple(model.input_shape[1:]))
    return keras_predict(model)


def keras_predict(model) -> Predict:
    """A Keras model as a predict function, run in batches of KERAS_BATCH through its compiled predict
    step (calling the model eagerly tile by tile took 2.7 times as long: a training epoch's validation).
    A short last batch is padded with zeros, so that the step (XLA-compiled in training) sees one shape."""

    def predict(batch: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(batch), KERAS_BATCH):
            chunk = np.zeros((KERAS_BATCH, *batch.shape[1:]), np.float32)
            n = min(KERAS_BATCH, len(batch) - i)
            chunk[:n] = batch[i : i + n]
            out.append(model.predict_on_batch(chunk)[:n])
        return np.concatenate(out)[..., 0]

    return predict


@dataclass
class LoadedModel:
    path: Path
    card: ModelCard
    predict: Predict
    tflite: TFLiteModel | None  # None for a .keras model


def load_model(path: str | Path, num_threads: int = 2, runtime: str | None = None, delegate: str | None = None,
               suffixes: tuple[str, ...] = (".tflite", ".keras")) -> LoadedModel:
    """The model at `path` (or `default`, the bundled one) on the TFLite `runtime` (auto: LiteRT first),
    its card read and checked against it; BadInput for a file of another kind than `suffixes`."""
    path = resolve(path)
    if path.suffix not in suffixes:
        raise BadInput(f"{path}: unsupported model file (expected {' or '.join(suffixes)})")
    if not path.is_file():
        raise BadInput(f"{path}: model file not found")
    card = ModelCard.load(path)
    if path.suffix == ".keras":
        return LoadedModel(path, card, _keras_predictor(path, card), None)
    model = open_tflite(path, num_threads, runtime, delegate)
    check_card(path, card, tuple(model.input["shape"][1:]))
    return LoadedModel(path, card, model.predict, model)
