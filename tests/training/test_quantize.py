"""`station quantize`: int8, float16 and float32 files of a trained run, verified against it (the train extra)."""

import json
import shutil

import cv2
import keras
import numpy as np
import pytest

from edge.cli import main
from edge.core.card import ModelCard, file_sha256
from edge.evaluation.evaluate import evaluate_model
from edge.inference.runtime import TFLiteModel


@pytest.fixture
def quantized(int8_model):
    return int8_model


def test_writes_three_files_cards_and_report(quantized):
    code, out = quantized
    assert code == 0
    for fmt in ("int8", "float16", "float32"):
        assert (out / f"model_{fmt}.tflite").is_file()
        card = ModelCard.load(out / f"model_{fmt}.tflite")
        assert card.format == f"tflite-{fmt}" and card.model_sha256 == file_sha256(out / f"model_{fmt}.tflite")
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == {"keras", "int8", "float16", "float32"}
    assert "| int8 |" in (out / "report.md").read_text()


def test_int8_is_full_integer_with_uint8_io_taking_raw_pixels(quantized):
    model = TFLiteModel(quantized[1] / "model_int8.tflite")
    assert model.input["dtype"] == np.uint8 and model.output["dtype"] == np.uint8
    assert model.input["quantization"] == (1.0, 0)  # raw 0-255 pixels, no conversion on the device
    assert tuple(model.input["shape"]) == (1, 64, 64, 3)
    dtypes = {np.dtype(t["dtype"]).name for t in model.interpreter.get_tensor_details()}
    assert dtypes <= {"int8", "uint8", "int32"}, dtypes  # int32 only for biases
    assert model.delegate_partitions() == 1
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(model.op_types())


def test_int8_agrees_with_the_float_model(quantized, trained_run, synth_rgb):
    """Tolerance: mean |p_int8 - p_float| < 0.01 per pixel and Dice drop < 0.005 on synthetic val."""
    int8 = json.loads((quantized[1] / "report.json").read_text())["results"]["int8"]
    assert int8["mean_abs_diff"] < 0.01
    assert int8["dice_drop"] < 0.005
    keras_model = keras.saving.load_model(trained_run / "model.keras", compile=False)
    tile = cv2.imread(str(synth_rgb / "images" / "0041.png"))[:64, :64, ::-1].copy()
    ref = keras.ops.convert_to_numpy(keras_model(tile[None].astype("float32")))[0, ..., 0]
    got = TFLiteModel(quantized[1] / "model_int8.tflite").predict(tile[None])[0]
    assert np.abs(got - ref).mean() < 0.02


def test_int8_card_keeps_the_threshold_and_picks_its_own_image_threshold(quantized, trained_run, synth_rgb):
    """The pixel threshold carries over; the image threshold is picked again on the int8 file's own
    val maps (int8 moves the highest probabilities), for the Keras card's target catch rate."""
    card = ModelCard.load(quantized[1] / "model_int8.tflite")
    keras_card = ModelCard.load(trained_run / "model.keras")
    assert card.threshold == keras_card.threshold
    assert card.input.dtype == "uint8" and "val_int8" in card.metrics
    point = card.image_decision
    assert point.target_recall == keras_card.image_decision.target_recall and point.recall >= point.target_recall
    val = evaluate_model(quantized[1] / "model_int8.tflite", synth_rgb, "val")
    assert val["image_threshold"] == point.image_threshold and val["score_recall"] == point.recall
    assert card.metrics["val_int8"]["score_recall"] == point.recall
    assert card.metrics["val_int8"]["score_false_reject_rate"] == point.false_reject_rate


def test_a_card_states_figures_at_its_own_image_threshold_only(quantized, synth_rgb, tmp_path):
    """`eval --calibrate` picks another image threshold (here one that may reject half the clean val
    images): the figures measured at the old one leave the card's metrics."""
    for suffix in (".tflite", ".json"):
        shutil.copy(quantized[1] / f"model_int8{suffix}", tmp_path / f"model{suffix}")
    before = ModelCard.load(tmp_path / "model.tflite")
    assert main(["eval", "--model", str(tmp_path / "model.tflite"), "--data", str(synth_rgb), "--calibrate",
                 "--false-reject-budget", "0.5"]) == 0
    card = ModelCard.load(tmp_path / "model.tflite")
    assert card.image_decision.image_threshold != before.image_decision.image_threshold
    stated = {name: m["image_threshold"] for name, m in card.metrics.items() if "image_threshold" in m}
    assert set(stated.values()) <= {card.image_decision.image_threshold}
    assert all("score_recall" not in m for name, m in card.metrics.items() if name not in stated)
    assert card.metrics["val"]["dice"] == before.metrics["val"]["dice"]


def test_eval_runs_on_the_tflite_file(quantized, synth_rgb, tmp_path):
    out = tmp_path / "e.json"
    assert main(["eval", "--model", str(quantized[1] / "model_int8.tflite"), "--data", str(synth_rgb), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["dice"] > 0.75


def test_gate_fails_when_calibrated_on_blank_images(trained_run, synth_rgb, tmp_path, capsys):
    """Blank calibration costs about 0.012 Dice here (good calibration: < 0.001); the gate at 0.005 must trip."""
    data = shutil.copytree(synth_rgb, tmp_path / "blank")
    for i in range(34):  # the train split: calibration sees only flat gray
        cv2.imwrite(str(data / "images" / f"{i:04d}.png"), np.full((96, 128, 3), 128, np.uint8))
    code = main(["quantize", "--model", str(trained_run / "model.keras"), "--calib", str(data),
                 "--out", str(tmp_path / "q"), "--formats", "int8", "--calib-images", "20", "--max-drop", "0.005"])
    assert code == 1
    assert "int8 Dice dropped" in capsys.readouterr().out
    assert json.loads((tmp_path / "q" / "report.json").read_text())["results"]["int8"]["dice_drop"] > 0.005


def test_debug_lists_layers_worst_first_and_keep_float_spares_them(trained_run, synth_rgb, tmp_path):
    out = tmp_path / "q"
    assert main(["quantize", "--model", str(trained_run / "model.keras"), "--calib", str(synth_rgb), "--out", str(out),
                 "--formats", "int8", "--calib-images", "20", "--debug", "--keep-float", "LOGISTIC"]) == 0
    report = json.loads((out / "report.json").read_text())
    errors = [r["rmse_per_scale"] for r in report["layer_errors"]]
    assert len(errors) > 10 and errors == sorted(errors, reverse=True)
    assert "Per-layer int8 error" in (out / "report.md").read_text()
    assert "int8 without --keep-float" in report["results"]  # the speed cost of sparing layers is shown
    assert "float32" in {np.dtype(t["dtype"]).name for t in
                         TFLiteModel(out / "model_int8.tflite").interpreter.get_tensor_details()}


def _text_file(path):
    path.write_text("not a model")
    return path


def _dense_model(path):
    inputs = keras.Input((10,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(path)
    return path


@pytest.mark.parametrize("make, message", [
    (_text_file, "not a loadable Keras model"),
    (_dense_model, "is not an image"),
])
def test_bad_models_exit_2(synth_rgb, tmp_path, capsys, make, message):
    model = make(tmp_path / "m.keras")
    assert main(["quantize", "--model", str(model), "--calib", str(synth_rgb), "--out", str(tmp_path / "q")]) == 2
    assert message in capsys.readouterr().err


def test_empty_calibration_folder_exits_2(trained_run, tmp_path, capsys):
    (tmp_path / "calib" / "images").mkdir(parents=True)
    assert main(["quantize", "--model", str(trained_run / "model.keras"), "--calib", str(tmp_path / "calib"),
                 "--out", str(tmp_path / "q")]) == 2
    assert "no images found" in capsys.readouterr().err


def test_edgetpu_without_its_compiler_is_a_clear_error(trained_run, synth_rgb, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["quantize", "--model", str(trained_run / "model.keras"), "--calib", str(synth_rgb),
                 "--out", str(tmp_path / "q"), "--formats", "edgetpu"]) == 2
    assert "edgetpu_compiler is not on PATH" in capsys.readouterr().err


def test_bench_measures_the_int8_file_against_its_float32_twin(quantized, synth_rgb, tmp_path):
    """station bench on quantize's int8 and float32 files: int8 is less than half the size, and its Dice is
    reported against the float model's (the bench on the device's own model is in tests/test_bench.py)."""
    models = quantized[1]
    assert main(["bench", "--model", str(models / "model_int8.tflite"), "--model", str(models / "model_float32.tflite"),
                 "--data", str(synth_rgb), "--threads", "1", "--runs", "5", "--warmup", "1", "--runtime", "litert",
                 "--json", str(tmp_path / "b.json"), "--report", str(tmp_path / "b.md")]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(r["name"], r["precision"], r["runtime"]) for r in rows] == [
        ("model_int8.tflite", "int8", "litert"), ("model_float32.tflite", "float32", "litert")]
    int8, float32 = rows
    assert int8["size_mb"] < float32["size_mb"] / 2
    assert 0 <= float32["accuracy"]["dice"] <= 1 and "vs_float" not in float32
    assert int8["vs_float"]["dice"] == pytest.approx(int8["accuracy"]["dice"] - float32["accuracy"]["dice"])
    assert {p.name for p in tmp_path.glob("b_*.png")} == {"b_latency_model_int8.png", "b_latency_model_float32.png",
                                                          "b_accuracy_vs_latency.png"}


def test_input_size_exports_the_same_weights_at_a_larger_tile(quantized, trained_run, synth_rgb, tmp_path):
    """A fully convolutional net at another size: the 64x64 run exported at 64x128 judges val as well."""
    out = tmp_path / "wide"
    assert main(["quantize", "--model", str(trained_run / "model.keras"), "--calib", str(synth_rgb), "--out", str(out),
                 "--formats", "int8", "--calib-images", "30", "--input-size", "64x128"]) == 0
    card = ModelCard.load(out / "model_int8.tflite")
    assert (card.input.height, card.input.width) == (64, 128)
    assert tuple(TFLiteModel(out / "model_int8.tflite").input["shape"]) == (1, 64, 128, 3)
    wide = json.loads((out / "report.json").read_text())["results"]["int8"]["dice"]
    square = json.loads((quantized[1] / "report.json").read_text())["results"]["int8"]["dice"]
    assert abs(wide - square) < 0.03


def test_an_input_size_the_net_cannot_take_exits_2(trained_run, synth_rgb, tmp_path, capsys):
    assert main(["quantize", "--model", str(trained_run / "model.keras"), "--calib", str(synth_rgb),
                 "--out", str(tmp_path / "q"), "--input-size", "100"]) == 2
    assert "divisible by 2**depth" in capsys.readouterr().err
