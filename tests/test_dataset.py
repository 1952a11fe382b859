"""The folder dataset (edge.evaluation.dataset): the split, image and mask pairs, LabelMe shapes, bad pairs named or skipped."""

import json
import shutil

import cv2
import numpy as np
import pytest

from edge.core.errors import BadInput
from edge.evaluation.dataset import list_samples, rasterize_labelme, read_pairs


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_index_csv_decides_the_split(synth_rgb):
    samples = list_samples(synth_rgb)
    assert len(samples) == 48
    assert {s.split for s in samples} == {"train", "val", "test"}
    assert [s.id for s in list_samples(synth_rgb, "test")] == [f"{i:04d}" for i in range(41, 48)]


def test_valid_in_index_csv_means_val(synth_rgb, tmp_path):
    data = _copy(synth_rgb, tmp_path / "d")
    index = data / "index.csv"
    index.write_text(index.read_text().replace(",val\n", ",valid\n"))
    assert "valid" in index.read_text()
    assert [s.id for s in list_samples(data, "val")] == [s.id for s in list_samples(synth_rgb, "val")]


def test_without_index_the_split_is_deterministic(synth_rgb, tmp_path):
    data = _copy(synth_rgb, tmp_path / "d")
    (data / "index.csv").unlink()
    first = [(s.id, s.split) for s in list_samples(data)]
    assert first == [(s.id, s.split) for s in list_samples(data)]
    assert {split for _, split in first} == {"train", "val", "test"}


def test_pairs_are_binary_and_the_same_size_in_rgb_and_gray(synth_rgb):
    for channels in (1, 3):
        pairs, skipped = read_pairs(list_samples(synth_rgb, "val"), channels)
        assert not skipped
        for _, image, mask in pairs:
            assert image.shape == (96, 128, channels) and mask.shape == (96, 128)
            assert set(np.unique(mask)) <= {0, 1}


def test_labelme_shapes_match_a_hand_drawn_mask(tmp_path):
    doc = {"imageHeight": 40, "imageWidth": 50, "shapes": [
        {"shape_type": "polygon", "points": [[2, 2], [10, 2], [10, 6], [2, 6]]},
        {"shape_type": "rectangle", "points": [[30, 20], [20, 10]]},
        {"shape_type": "circle", "points": [[40, 30], [43, 30]]},
        {"shape_type": "line", "points": [[0, 0], [5, 5]]},
    ]}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    expected = np.zeros((40, 50), np.uint8)
    expected[2:7, 2:11] = 1  # polygon corners are inclusive
    expected[10:21, 20:31] = 1  # rectangle, given in the other corner order
    yy, xx = np.mgrid[0:40, 0:50]
    circle = (yy - 30) ** 2 + (xx - 40) ** 2 <= 9
    expected[circle] = 1
    got = rasterize_labelme(path, (40, 50))
    assert np.array_equal(got[:25], expected[:25])  # polygon and rectangle exactly
    assert np.count_nonzero(got[25:] != expected[25:]) <= 8  # circle up to its rim


def test_labelme_json_replaces_a_missing_mask(synth_rgb, tmp_path):
    data = _copy(synth_rgb, tmp_path / "d")
    (data / "masks" / "0041.png").unlink()
    (data / "images" / "0041.json").write_text(json.dumps({"shapes": [
        {"shape_type": "rectangle", "points": [[0, 0], [9, 4]]}]}))
    pairs, _ = read_pairs([s for s in list_samples(data, "test") if s.id == "0041"], 3)
    assert pairs[0][2].sum() == 10 * 5


def _break(data, how):
    if how == "no mask":
        (data / "masks" / "0045.png").unlink()
    elif how == "other size":
        cv2.imwrite(str(data / "masks" / "0045.png"), np.zeros((10, 10), np.uint8))
    elif how == "unreadable":
        (data / "images" / "0045.png").write_bytes(b"not a png")
    elif how == "not binary":
        cv2.imwrite(str(data / "masks" / "0045.png"), np.arange(96 * 128, dtype=np.uint16).reshape(96, 128).astype(np.uint8))


@pytest.mark.parametrize("how, message", [
    ("no mask", "0045.png: no mask"),
    ("other size", "0045.png: mask is 10x10, image is 128x96"),
    ("unreadable", "0045.png: unreadable image"),
    ("not binary", "0045.png: mask is not binary"),
])
def test_bad_pairs_are_named_or_skipped(synth_rgb, tmp_path, how, message):
    data = _copy(synth_rgb, tmp_path / "d")
    _break(data, how)
    samples = list_samples(data, "test")
    with pytest.raises(BadInput, match=message):
        read_pairs(samples, 3)
    pairs, skipped = read_pairs(samples, 3, skip_bad=True)
    assert len(pairs) == len(samples) - 1
    assert [s[0].endswith("0045.png") for s in skipped] == [True]
