"""The model bundled with the station, so `station run` works right after install.

    path = resolve("default")   # edge/inference/models/surfaces_int8.tflite, its card surfaces_int8.json beside it

An int8 Attention U-Net (128x128 RGB tiles) trained by `make default-model` on the synthetic
surfaces of training.surfaces (leather, concrete, brushed metal, tile); not on any real dataset.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = Path(__file__).with_name("surfaces_int8.tflite")


def resolve(path: str | Path) -> Path:
    """`default` names the bundled model; anything else is a path."""
    return DEFAULT_MODEL if str(path) == "default" else Path(path)
