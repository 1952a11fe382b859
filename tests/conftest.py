"""Shared fixtures: synthetic folder datasets written by the tests themselves."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from training.synthetic import write_dataset  # noqa: E402


@pytest.fixture(scope="session")
def synth_rgb(tmp_path_factory):
    """48 RGB 96x128 images of thin dark cracks and pits on a noisy texture, 70/15/15 split."""
    return write_dataset(tmp_path_factory.mktemp("synth_rgb"), images=48, size=(96, 128), channels=3, seed=1)
