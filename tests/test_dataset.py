import json
import shutil

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.evaluation.dataset import list_samples, rasterize_labelme, read_pairs
from edge.core.errors import BadInput


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


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "dataset folder not found"),
    (lambda d: (d / "images").mkdir(parents=True), "no images found"),
    (lambda d: d.mkdir(), "images: folder not found"),
])
def test_missing_or_empty_folders_exit_2_with_one_line(tmp_path, capsys, setup, message):
    data = tmp_path / "data"
    setup(data)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and str(data) in err and "\n" not in err


def test_eval_of_a_missing_model_exits_2(synth_rgb, tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "nope.keras"), "--data", str(synth_rgb)]) == 2
    assert "nope.keras: model file not found" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("train:\n  epochs: ten\n", "train.epochs: expected an integer, got 'ten'"),
    ("train:\n  epoch: 3\n", "train.epoch: unknown key"),
    ("train:\n  arch: resnet\n", "train.arch: expected one of ['attention_unet', 'unet'], got 'resnet'"),
    ("train:\n  resize: 1\n", "train.resize: expected true or false"),
    ("deploy:\n  x: 1\n", "deploy: unknown section"),
    ("train: [", "not valid YAML"),
])
def test_bad_config_names_the_key_and_exits_2(tmp_path, capsys, text, message):
    (tmp_path / "c.yaml").write_text(text)
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--data", "x", "--out", "y"]) == 2
    assert message in capsys.readouterr().err


def test_config_sets_defaults_and_the_command_line_wins(tmp_path):
    from edge.cli import parser

    (tmp_path / "c.yaml").write_text("train:\n  data: d\n  out: o\n  epochs: 7\n  resize: true\n")
    args = parser(str(tmp_path / "c.yaml")).parse_args(["train", "--epochs", "3"])
    assert (args.data, args.out, args.epochs, args.resize) == ("d", "o", 3, True)


def test_shipped_config_is_valid():
    from pathlib import Path

    from edge.cli import parser

    args = parser(str(Path(__file__).parent.parent / "config.yaml")).parse_args(["train", "--data", "d", "--out", "o"])
    assert args.input_size == 128


def test_every_option_of_every_verb_shows_its_default_in_help():
    from edge.cli import parser

    verbs = next(a for a in parser()._actions if a.dest == "verb").choices
    assert {"train", "eval", "quantize"} <= set(verbs)
    for name, verb in verbs.items():
        for action in verb._actions:
            if action.dest != "help":
                assert action.help, f"station {name} {action.option_strings}: no help"
        assert "(default:" in verb.format_help()
