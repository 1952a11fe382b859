"""Shared fixtures: folder datasets the tests write themselves.

Two sets of tests. Device tests (everything outside tests/training) run on the bundled int8 model
(`model: {path: default}`) with only what a device installs, the edge extra: their videos and
images come from training.surfaces (the data the bundled model was made from) and
training.synthetic, both numpy and OpenCV only; stations.py configures, runs and reads a station.
tests/training needs the train extra (Keras, TensorFlow): it trains and quantizes, and checks that
the device's code leaves TensorFlow alone where it is installed. Where Keras is not installed, as on
a device, it is not collected (`make test-edge`).
"""

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from training import surfaces, synthetic  # noqa: E402

TRAIN_EXTRA = importlib.util.find_spec("keras") is not None
collect_ignore = [] if TRAIN_EXTRA else ["training"]


def pytest_report_header() -> str | None:
    return None if TRAIN_EXTRA else "Keras is not installed (no train extra): device tests only, tests/training not collected"


@pytest.fixture(scope="session")
def synth_rgb(tmp_path_factory):
    """48 RGB 96x128 images of thin dark cracks and pits on a noisy texture, 70/15/15 split."""
    return synthetic.write_dataset(tmp_path_factory.mktemp("synth_rgb"), images=48, size=(96, 128), channels=3, seed=1)


@pytest.fixture(scope="session")
def surfaces_data(tmp_path_factory):
    """40 RGB 120x160 windows of the surface generator's strips (leather, concrete, metal, tile; 30 % clean),
    the bundled model's kind of data, 70/15/15 split: 6 test images."""
    return surfaces.write_dataset(tmp_path_factory.mktemp("surfaces"), images=40, size=(120, 160), seed=3)
