"""The device's code never imports TensorFlow or Keras, even where they are installed.

These need the train extra to mean anything: edge.inference.runtime falls back to tensorflow.lite
when LiteRT is missing, and a device module may import TensorFlow only where it finds it. In an
edge-only venv (make test-edge) no device test could load TensorFlow at all.
"""

import subprocess
import sys

from stations import write_config

from training.synthetic import write_video


def test_edge_modules_import_without_tensorflow_or_keras():
    code = ("import sys, edge.cli, edge.evaluation.evaluate, edge.evaluation.dataset, edge.evaluation.metrics, edge.inference.segment, edge.core.card, edge.inference.predictors, edge.inference.runtime;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'jax')]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_edge_imports_no_tensorflow_even_when_running(tmp_path):
    """The device installs only the edge extra: `station run` must never pull TensorFlow or Keras in."""
    write_video(tmp_path / "line.avi", frames=2)
    config = write_config(tmp_path, tmp_path / "line.avi")
    code = ("import sys; from edge.cli import main; rc = main(['run', '--config', sys.argv[1]]);"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'jax')];"
            "print('LOADED', bad); sys.exit(rc or bool(bad))")
    result = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True)
    assert result.returncode == 0 and "LOADED []" in result.stdout, result.stdout + result.stderr
