"""From a frame of any size to a probability map of the same size, as the model card says.

    prob = probability_map(image, model.predict, card)   # HxW float32 in [0, 1]

`predict` maps a uint8 batch (N, h, w, C) of model-sized inputs to probabilities (N, h, w).
In `tile` mode the frame is cut into model-sized tiles that overlap by `card.preprocess.overlap`
pixels (frames smaller than a tile are reflect-padded), all tiles go through one batched call,
and overlapping probabilities are merged by mean or max; with `card.preprocess.scale` below 1 the
frame is first resized by it (the model was trained at that resolution) and the map resized back.
In `resize` mode the whole frame is resized to the model input and the map resized back.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from edge.core.card import InputSpec, ModelCard

Predict = Callable[[np.ndarray], np.ndarray]


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering `length`, overlapping by at least `overlap`."""
    if length <= tile:
        return [0]
    stride = max(tile - overlap, 1)
    count = -(-(length - tile) // stride) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """An HxW, HxWx1 or HxWx3 RGB image as HxWx`channels`."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == channels:
        return image
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    return np.repeat(image, 3, axis=2)


def scaled(image: np.ndarray, scale: float) -> np.ndarray:
    """An image resized by `scale` with pixel-area averaging (as it is at 1)."""
    if scale == 1:
        return image
    h, w = image.shape[:2]
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], *image.shape[2:])


def scaled_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """A 0/1 mask resized by `scale`: a pixel is defective where defects cover at least half of it."""
    return mask if scale == 1 else (scaled(mask.astype(np.float32), scale) >= 0.5).astype(mask.dtype)


def cut_tiles(image: np.ndarray, card: ModelCard) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Model-sized uint8 tiles (N, h, w, C) of an image and their (y, x) origins, as the card says."""
    spec, pre = card.input, card.preprocess
    image = to_channels(image, spec.channels)
    h, w = image.shape[:2]
    pad_h, pad_w = max(spec.height - h, 0), max(spec.width - w, 0)
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REFLECT_101)
        image = image.reshape(h + pad_h, w + pad_w, spec.channels)
    ys = tile_origins(image.shape[0], spec.height, pre.overlap)
    xs = tile_origins(image.shape[1], spec.width, pre.overlap)
    origins = [(y, x) for y in ys for x in xs]
    return np.stack([image[y : y + spec.height, x : x + spec.width] for y, x in origins]), origins


def stitch(probs: np.ndarray, origins: list[tuple[int, int]], shape: tuple[int, int], how: str = "mean") -> np.ndarray:
    """Tile probabilities (N, h, w) merged by mean or max into a map of `shape` (cropping any padding)."""
    th, tw = probs.shape[1:3]
    out = np.zeros((max(shape[0], th), max(shape[1], tw)), np.float32)
    if how == "max":
        for (y, x), p in zip(origins, probs):
            view = out[y : y + th, x : x + tw]
            np.maximum(view, p, out=view)
    else:
        weight = np.zeros_like(out)
        for (y, x), p in zip(origins, probs):
            out[y : y + th, x : x + tw] += p
            weight[y : y + th, x : x + tw] += 1
        out /= np.maximum(weight, 1)
    return out[: shape[0], : shape[1]]


def resize_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A whole image as one model input (h, w, C): `resize` mode's pre-processing."""
    small = cv2.resize(to_channels(image, spec.channels), (spec.width, spec.height), interpolation=cv2.INTER_AREA)
    return small.reshape(spec.height, spec.width, spec.channels)


def probability_map(image: np.ndarray, predict: Predict, card: ModelCard) -> np.ndarray:
    """The HxW defect probability of an RGB or gray uint8 image."""
    spec = card.input
    if card.preprocess.mode == "resize":
        prob = predict(resize_input(image, spec)[None])[0].astype(np.float32)
    else:
        small = scaled(image, card.preprocess.scale)
        tiles, origins = cut_tiles(small, card)
        prob = stitch(predict(tiles), origins, small.shape[:2], card.preprocess.stitch)
    if prob.shape == image.shape[:2]:
        return prob
    return cv2.resize(prob, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
