"""The model card: the JSON file beside every model that tells the edge how to use it.

    card = ModelCard.load("runs/crack/model.keras")   # reads runs/crack/model.json
    card.input.height, card.input.channels, card.threshold

Nothing is guessed from a file name: input size, colour order, pixel scaling, the pre-processing
mode and the decision threshold all come from here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import BadInput


@dataclass
class InputSpec:
    """What the model takes: raw pixels of this size, in this colour order."""

    height: int
    width: int
    channels: int  # 1 (grayscale) or 3 (RGB)
    color_order: str = "RGB"  # "RGB" or "GRAY"
    scaling: str = "raw 0-255; the model scales inside"
    dtype: str = "float32"


@dataclass
class Preprocess:
    """How a frame of any size becomes model inputs: `tile` (with overlap) or `resize`."""

    mode: str = "tile"
    overlap: int = 32
    stitch: str = "mean"  # how overlapping tile probabilities are merged: mean or max


@dataclass
class ModelCard:
    """Everything the device needs to run a model and judge its output."""

    name: str
    input: InputSpec
    preprocess: Preprocess = field(default_factory=Preprocess)
    threshold: float = 0.5
    threshold_uint8: int | None = None  # for int8 files: the output value matching `threshold`
    architecture: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = "keras"

    @staticmethod
    def path_for(model_path: str | Path) -> Path:
        """The card's path: the model's sibling with the .json suffix."""
        return Path(model_path).with_suffix(".json")

    @classmethod
    def load(cls, model_path: str | Path) -> "ModelCard":
        """Read the card of `model_path`; BadInput when missing or malformed."""
        path = cls.path_for(model_path)
        if not path.is_file():
            raise BadInput(f"{path}: model card not found (every model needs its .json card beside it)")
        try:
            raw = json.loads(path.read_text())
            return cls(
                **{k: v for k, v in raw.items() if k not in ("input", "preprocess")},
                input=InputSpec(**raw["input"]),
                preprocess=Preprocess(**raw.get("preprocess", {})),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BadInput(f"{path}: not a valid model card ({exc})") from None

    def save(self, model_path: str | Path) -> Path:
        """Write the card beside `model_path` and return its path."""
        path = self.path_for(model_path)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path
