"""The `station` command line: verbs, options, the config file's defaults, bad input on one line."""

import importlib.util
from pathlib import Path

import pytest

from edge.cli import main, parser


def test_eval_of_a_missing_model_exits_2(synth_rgb, tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "nope.keras"), "--data", str(synth_rgb)]) == 2
    assert "nope.keras: model file not found" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("train:\n  epochs: ten\n", "train.epochs: expected an integer, got 'ten'"),
    ("train:\n  epoch: 3\n", "train.epoch: unknown key"),
    ("train:\n  arch: resnet\n", "train.arch: expected one of ['attention_unet', 'unet', 'attention_unet_ds'], got 'resnet'"),
    ("train:\n  resize: 1\n", "train.resize: expected true or false"),
    ("train:\n  false_reject_budget: 1.0\n", "train.false_reject_budget: expected a rate from 0 to below 1, got 1.0"),
    ("train:\n  ema: 1.0\n", "train.ema: expected a rate from 0 to below 1, got 1.0"),
    ("deploy:\n  x: 1\n", "deploy: unknown section"),
    ("train: [", "not valid YAML"),
])
def test_bad_config_names_the_key_and_exits_2(tmp_path, capsys, text, message):
    (tmp_path / "c.yaml").write_text(text)
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--data", "x", "--out", "y"]) == 2
    assert message in capsys.readouterr().err


def test_config_sets_defaults_and_the_command_line_wins(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  data: d\n  out: o\n  epochs: 7\n  resize: true\n")
    args = parser(str(tmp_path / "c.yaml")).parse_args(["train", "--epochs", "3"])
    assert (args.data, args.out, args.epochs, args.resize) == ("d", "o", 3, True)


def test_shipped_config_sets_the_training_defaults():
    args = parser(str(Path(__file__).parent.parent / "config.yaml")).parse_args(["train", "--data", "d", "--out", "o"])
    assert args.input_size == 128


def test_every_option_of_every_verb_shows_its_default_in_help():
    verbs = next(a for a in parser()._actions if a.dest == "verb").choices
    assert {"train", "eval", "quantize"} <= set(verbs)
    for name, verb in verbs.items():
        for action in verb._actions:
            if action.dest != "help":
                assert action.help, f"station {name} {action.option_strings}: no help"
        assert "(default:" in verb.format_help()


@pytest.mark.parametrize("verb", [["train", "--data", "d", "--out", "o"], ["quantize", "--model", "m.keras", "--calib", "d", "--out", "o"]])
def test_training_verbs_on_a_device_install_say_what_to_install(capsys, verb):
    if importlib.util.find_spec("keras") is not None:
        pytest.skip("Keras is installed: this is what a device install (the edge extra) sees")
    assert main(verb) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install .[train]" in err and "\n" not in err
