"""The model card: the JSON file beside every model that tells the edge how to use it.

    card = ModelCard.load("runs/crack/model.keras")   # reads runs/crack/model.json
    card.input.height, card.input.channels, card.threshold

Nothing is guessed from a file name: input size, colour order, pixel scaling, the pre-processing
mode and the decision threshold all come from here. A card is read through its schema (strict
types: no "0.5" for 0.5, no true for 1; every key present, no value assumed) and is tied to its
model file by the file's SHA-256, which `save` writes and `load` checks. Keys this version does not
know are ignored with a warning, so a newer writer's cards still load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, TypeAdapter, ValidationError

from edge.core.errors import BadInput
from edge.core.schema import describe, one_of

log = logging.getLogger(__name__)

# Strict per field: a dataclass made strict as a whole would take only instances, not the JSON's dicts.
Size = Annotated[int, Strict(), Field(ge=1)]
Probability = Annotated[float, Strict(), Field(gt=0, lt=1)]
Sha256 = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]


@dataclass
class InputSpec:
    """What the model takes: raw pixels of this size, in this colour order."""

    height: Size
    width: Size
    channels: one_of(1, 3)  # 1 (grayscale) or 3 (RGB)
    color_order: Literal["RGB", "GRAY"] = "RGB"  # GRAY exactly when channels is 1
    scaling: Literal["raw 0-255; the model scales inside"] = "raw 0-255; the model scales inside"  # all the device does
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if (self.color_order == "GRAY") != (self.channels == 1):
            raise ValueError(f"color_order {self.color_order} does not go with {self.channels} channel(s)")


@dataclass
class Preprocess:
    """How a frame of any size becomes model inputs: `tile` (with overlap) or `resize`."""

    mode: Literal["tile", "resize"] = "tile"
    overlap: Annotated[int, Strict(), Field(ge=0)] = 32
    stitch: Literal["mean", "max"] = "mean"  # how overlapping tile probabilities are merged
    scale: Annotated[float, Strict(), Field(gt=0, le=1)] = 1.0  # tile: the frame is resized by this before tiling (0.5: half resolution)


@dataclass
class ImageDecision:
    """The image-level operating point picked on val for a target catch rate and a false-reject
    budget (edge.evaluation.metrics.threshold_for_recall): reject a frame when its image score, the highest
    defect probability after a `smooth_px` box mean, reaches `image_threshold`."""

    image_threshold: Annotated[float, Strict(), Field(ge=0, le=1)]
    target_recall: Annotated[float, Strict(), Field(gt=0, le=1)]
    recall: float  # on val, at image_threshold
    false_reject_rate: float  # on val (an operating point is only picked with clean val images)
    defective_images: int
    clean_images: int
    recall_lower_95: float | None  # what catching every val defect is worth: 0.05 ** (1 / defective_images)
    smooth_px: Annotated[int, Strict(), Field(ge=0)] = 0
    score: Literal["max probability"] = "max probability"
    false_reject_budget: Annotated[float, Strict(), Field(ge=0, lt=1)] = 0.0  # val false rejects spent on a catch margin


@dataclass
class ModelCard:
    """Everything the device needs to run a model and judge its output."""

    name: str
    input: InputSpec
    preprocess: Preprocess = field(default_factory=Preprocess)
    threshold: Probability = 0.5
    image_decision: ImageDecision | None = None  # None: the area rule (threshold and min_area_px) alone
    architecture: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = "keras"
    model_sha256: Sha256 | None = None  # of the model file's bytes; written by `save`

    @staticmethod
    def path_for(model_path: str | Path) -> Path:
        """The card's path: the model's sibling with the .json suffix."""
        return Path(model_path).with_suffix(".json")

    @classmethod
    def load(cls, model_path: str | Path) -> "ModelCard":
        """Read and check the card of `model_path`; BadInput naming the card and key when it is wrong."""
        path = cls.path_for(model_path)
        if not path.is_file():
            raise BadInput(f"{path}: model card not found (every model needs its .json card beside it)")
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
            raise BadInput(f"{path}: not a readable JSON model card ({exc})") from None
        try:
            card = SCHEMA.validate_python(raw)
        except ValidationError as exc:
            raise BadInput(f"{path}: {describe(exc.errors()[0])}") from None
        read = dataclasses.asdict(card)
        optional = ("model_sha256", "image_decision", "image_decision.false_reject_budget", "preprocess.scale")  # older cards lack them
        if missing := [key for key in _keys_only_in(read, raw) if key not in optional]:
            raise BadInput(f"{path}: {missing[0]}: missing (a card states every value; none is assumed)")
        if unknown := _keys_only_in(raw, read):
            log.warning("%s: unknown keys ignored: %s", path, ", ".join(unknown))
        if card.preprocess.mode == "resize" and card.preprocess.scale != 1:
            raise BadInput(f"{path}: preprocess.scale: {card.preprocess.scale} goes with tile mode only, not resize")
        if card.preprocess.mode == "tile":
            try:
                check_overlap(card.preprocess.overlap, card.input)
            except ValueError as exc:
                raise BadInput(f"{path}: preprocess.overlap: {exc}") from None
        if card.model_sha256 is None:
            log.warning("%s: no model_sha256 (an older card): not checked against %s", path, model_path)
        elif (actual := file_sha256(model_path)) != card.model_sha256:
            raise BadInput(f"{path}: written for another model file (sha256 {card.model_sha256} != {actual})")
        return card

    def decide(self, decision: "ImageDecision | None") -> None:
        """Set the image decision; figures measured at another image threshold leave the metrics, so
        that every threshold-bound figure the card states is the station's own operating point's."""
        self.image_decision = decision
        for figures in self.metrics.values():
            if figures.get("image_threshold") not in (None, decision and decision.image_threshold):
                for key in DECISION_FIGURES:
                    figures.pop(key, None)

    def save(self, model_path: str | Path) -> Path:
        """Write the card beside `model_path`, with that file's SHA-256, and return the card's path."""
        self.model_sha256 = file_sha256(model_path)
        path = self.path_for(model_path)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path


SCHEMA = TypeAdapter(ModelCard)
DECISION_FIGURES = ("image_threshold", "score_recall", "score_false_reject_rate")  # metrics at one image threshold


def check_overlap(overlap: int, spec: InputSpec) -> None:
    """ValueError unless `overlap` is smaller than the model's input (a tile), so that tiles advance."""
    if overlap >= min(spec.height, spec.width):
        raise ValueError(f"{overlap} is not smaller than the model's {spec.height}x{spec.width} tile")


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _keys_only_in(a: dict, b: dict) -> list[str]:
    """The keys of `a`, dotted at any depth, that `b` lacks."""
    return [key for key in a if key not in b] + [
        f"{key}.{sub}" for key, value in a.items() if isinstance(value, dict) and isinstance(b.get(key), dict)
        for sub in _keys_only_in(value, b[key])]
