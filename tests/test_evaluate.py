"""`station eval` of a .tflite file on the device: the bundled model's scores, and model files it refuses."""

import json
import shutil

import pytest

from edge.cli import main
from edge.core.card import ModelCard
from edge.inference.models import DEFAULT_MODEL


def test_the_bundled_model_scores_the_generators_surfaces_as_its_card_says(surfaces_data, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["eval", "--model", "default", "--data", str(surfaces_data), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    card = ModelCard.load(DEFAULT_MODEL)
    assert report["images"] == 6 and report["threshold"] == card.threshold
    assert report["dice"] > 0.8, report  # the card: 0.94 on 90 test images of 240x320
    assert "results saved to" in capsys.readouterr().out


@pytest.mark.parametrize("damage, message", [
    (lambda m: m.write_bytes(m.read_bytes()[:2000]), "written for another model file"),
    (lambda m: m.with_suffix(".json").unlink(), "model card not found"),
    (lambda m: m.with_suffix(".json").write_text(m.with_suffix(".json").read_text().replace('"height": 128', '"height": 64')),
     "card says input (64, 128, 3), the model takes (128, 128, 3)"),
])
def test_truncated_model_missing_or_mismatched_card_exit_2(surfaces_data, tmp_path, capsys, damage, message):
    model = tmp_path / "model_int8.tflite"
    shutil.copy(DEFAULT_MODEL, model)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), model.with_suffix(".json"))
    damage(model)
    assert main(["eval", "--model", str(model), "--data", str(surfaces_data)]) == 2
    assert message in capsys.readouterr().err
