"""Load a model file as a `predict` function: uint8 batch (N, h, w, C) -> probabilities (N, h, w).

    predict, card = load_predictor("runs/crack/model.keras")

`.tflite` files run on the edge's TFLite runtime; `.keras` files need Keras (the `train` extra),
imported only when asked for, so the edge runtime itself never imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.core.card import ModelCard
from edge.core.errors import BadInput
from edge.inference.models import resolve
from edge.inference.segment import Predict

KERAS_BATCH = 16


def check_card(path: Path, card: ModelCard, shape: tuple) -> None:
    """BadInput when the card's input size and channels are not the model's (H, W, C)."""
    expected, actual = (card.input.height, card.input.width, card.input.channels), tuple(int(v) for v in shape)
    if actual != expected:
        raise BadInput(f"{ModelCard.path_for(path)}: card says input {expected}, the model takes {actual}")


def _keras_predictor(path: Path, card: ModelCard) -> Predict:
    try:
        import keras
    except ImportError:
        raise BadInput(f"{path}: .keras models need Keras; install the train extra (pip install .[train])") from None
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a file that is not a model
        raise BadInput(f"{path}: not a loadable Keras model ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    check_card(path, card, tuple(model.input_shape[1:]))
    return keras_predict(model)


def keras_predict(model) -> Predict:
    """A Keras model as a predict function, run in batches of KERAS_BATCH."""
    import keras

    def predict(batch: np.ndarray) -> np.ndarray:
        out = [
            keras.ops.convert_to_numpy(model(batch[i : i + KERAS_BATCH].astype(np.float32), training=False))
            for i in range(0, len(batch), KERAS_BATCH)
        ]
        return np.concatenate(out)[..., 0]

    return predict


def load_predictor(path: str | Path, num_threads: int = 2) -> tuple[Predict, ModelCard]:
    """The model at `path` (or `default`, the bundled one) as a predict function, with its card."""
    path = resolve(path)
    if not path.is_file():
        raise BadInput(f"{path}: model file not found")
    card = ModelCard.load(path)
    if path.suffix == ".keras":
        return _keras_predictor(path, card), card
    if path.suffix == ".tflite":
        from edge.inference.runtime import TFLiteModel

        model = TFLiteModel(path, num_threads)
        check_card(path, card, tuple(model.input["shape"][1:]))
        return model.predict, card
    raise BadInput(f"{path}: unsupported model file (expected .keras or .tflite)")
