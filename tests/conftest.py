"""Shared fixtures: synthetic folder datasets written by the tests themselves."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from edge.cli import main  # noqa: E402
from training.synthetic import write_dataset  # noqa: E402

SMALL = ["--input-size", "64", "--base-filters", "8", "--depth", "3", "--batch", "8", "--verbose", "0"]


@pytest.fixture(scope="session")
def synth_rgb(tmp_path_factory):
    """48 RGB 96x128 images of thin dark cracks and pits on a noisy texture, 70/15/15 split."""
    return write_dataset(tmp_path_factory.mktemp("synth_rgb"), images=48, size=(96, 128), channels=3, seed=1)


@pytest.fixture(scope="session")
def trained_run(synth_rgb, tmp_path_factory):
    """One short Attention U-Net run (64x64 input, 8 base filters, depth 3) on the easy synthetic task."""
    run = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", str(synth_rgb), "--out", str(run), "--epochs", "12", "--epoch-size", "256",
                 "--lr", "3e-3", *SMALL]) == 0
    return run


@pytest.fixture(scope="session")
def int8_model(trained_run, synth_rgb, tmp_path_factory):
    """The trained run quantized to int8, float16 and float32: (exit code, output folder)."""
    out = tmp_path_factory.mktemp("q")
    code = main(["quantize", "--model", str(trained_run / "model.keras"), "--calib", str(synth_rgb), "--out", str(out),
                 "--calib-images", "60"])
    return code, out
