"""Tiling with overlap and stitching (edge.inference.segment), and the runtime taking a frame's tiles in one invoke."""

import numpy as np
import pytest

from edge.core.card import InputSpec, ModelCard, Preprocess
from edge.inference.segment import probability_map, tile_origins


@pytest.mark.parametrize("length, tile, overlap", [(480, 128, 32), (128, 128, 32), (300, 64, 0), (100, 128, 32)])
def test_tiles_cover_the_length_with_the_overlap(length, tile, overlap):
    origins = tile_origins(length, tile, overlap)
    assert origins[0] == 0 and origins[-1] + tile >= length
    assert all(b - a <= tile - overlap for a, b in zip(origins, origins[1:]))


def _card(mode, stitch="mean", channels=1):
    return ModelCard("t", InputSpec(32, 32, channels, "GRAY" if channels == 1 else "RGB"), Preprocess(mode, 8, stitch))


def _brightness(batch):
    assert batch.shape[1:3] == (32, 32) and batch.dtype == np.uint8
    return batch[..., 0].astype(np.float32) / 255.0


@pytest.mark.parametrize("shape", [(20, 25), (32, 32), (70, 101)])
@pytest.mark.parametrize("stitch", ["mean", "max"])
def test_tiled_map_reassembles_the_frame_exactly(shape, stitch):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 1), dtype=np.uint8)
    prob = probability_map(image, _brightness, _card("tile", stitch))
    assert prob.shape == shape
    np.testing.assert_allclose(prob, image[..., 0] / 255.0, atol=1e-6)


def test_tiles_go_through_one_batched_call():
    calls = []
    probability_map(np.zeros((70, 101, 1), np.uint8), lambda b: calls.append(len(b)) or _brightness(b), _card("tile"))
    assert calls == [3 * 4]


def test_a_scaled_card_tiles_the_frame_at_its_scale_and_maps_back_to_the_frame_size():
    image = np.zeros((140, 202, 1), np.uint8)
    image[40:80, 60:120] = 255
    calls = []
    card = _card("tile")
    card.preprocess.scale = 0.5
    prob = probability_map(image, lambda b: calls.append(len(b)) or _brightness(b), card)
    assert calls == [3 * 4]  # the tiles of a 70 x 101 frame, not of 140 x 202 (5 x 7)
    assert prob.shape == (140, 202)
    assert prob[45:75, 65:115].min() > 0.99 and prob[:35].max() < 0.01 and prob[85:].max() < 0.01


def test_resize_mode_maps_back_to_the_frame_size_and_converts_colour():
    image = np.full((60, 90, 3), 255, np.uint8)
    prob = probability_map(image, _brightness, _card("resize", channels=1))
    assert prob.shape == (60, 90)
    np.testing.assert_allclose(prob, 1.0, atol=1e-6)


def test_tiles_of_a_frame_go_through_one_invoke_of_the_model_with_the_same_result():
    from edge.inference.models import DEFAULT_MODEL
    from edge.inference.runtime import TFLiteModel

    tiles = np.random.default_rng(0).integers(0, 256, (6, 128, 128, 3), dtype=np.uint8)
    batched = TFLiteModel(DEFAULT_MODEL)
    calls = []
    invoke = batched.interpreter.invoke
    batched.interpreter.invoke = lambda: calls.append(1) or invoke()
    together = batched.predict(tiles)
    one_by_one = np.concatenate([TFLiteModel(DEFAULT_MODEL).predict(t[None]) for t in tiles])
    assert len(calls) == 1 and tuple(batched.input["shape"]) == (6, 128, 128, 3)
    np.testing.assert_array_equal(together, one_by_one)
