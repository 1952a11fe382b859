"""The training set's fixtures: one short training run and its quantized files, made once a session.

Everything under tests/training needs the train extra (Keras, TensorFlow); device tests never
depend on these fixtures (they run on the bundled int8 model), so none of them can reach them.
"""

import pytest

from edge.cli import main

# without XLA: its compile takes longer than these runs' training (one test trains with it)
SMALL = ["--input-size", "64", "--base-filters", "8", "--depth", "3", "--batch", "8", "--verbose", "0", "--no-xla"]


@pytest.fixture(scope="session")
def small():
    """`station train` options of the tests' small model: 64x64 input, 8 base filters, depth 3."""
    return list(SMALL)


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
