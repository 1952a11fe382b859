"""station bench on the tests' own int8 and float32 files and synthetic folder dataset."""

import json
import multiprocessing
import os
import shutil

import cv2
import numpy as np
import pytest

from edge.tools.bench import _outcome
from edge.core.card import ModelCard
from edge.cli import main
from edge.evaluation.dataset import list_samples, read_image
from edge.inference.runtime import TFLiteModel
from edge.inference.segment import probability_map

FAST = ["--threads", "1", "--runs", "5", "--warmup", "1", "--runtime", "litert,tflite_runtime"]


@pytest.fixture(scope="module")
def report(int8_model, synth_rgb, tmp_path_factory):
    """One bench of the int8 and float32 files on the synthetic dataset's test split."""
    _, models = int8_model
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--model", str(models / "model_int8.tflite"), "--model", str(models / "model_float32.tflite"),
                 "--data", str(synth_rgb), *FAST, "--json", str(out / "b.json"), "--report", str(out / "b.md")])
    assert code == 0
    return json.loads((out / "b.json").read_text()), out


def hand_count_recall(model_path, data) -> float:
    """Share of defective test images with a predicted region of >= 10 px, counted with plain OpenCV."""
    card, model = ModelCard.load(model_path), TFLiteModel(model_path, 1)
    found = defective = 0
    for sample in list_samples(data, "test"):
        mask = cv2.imread(str(sample.label), cv2.IMREAD_GRAYSCALE)
        if not mask.any():
            continue
        defective += 1
        prob = probability_map(read_image(sample.image, 3), model.predict, card)
        _, _, stats, _ = cv2.connectedComponentsWithStats((prob >= card.threshold).astype(np.uint8), connectivity=8)
        found += bool((stats[1:, cv2.CC_STAT_AREA] >= 10).any())
    return found / defective


def test_report_is_complete_and_plausible(report, int8_model, synth_rgb):
    data, _ = report
    assert [(r["name"], r["runtime"], r["threads"]) for r in data["rows"]] == [
        ("model_int8.tflite", "litert", 1), ("model_float32.tflite", "litert", 1)]
    int8, float32 = data["rows"]
    for row in data["rows"]:
        assert row["init_ms"] > 0 and row["first_ms"] > 0 and len(row["latencies_ms"]) == 5
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["images_per_s"] > 0 and row["rss_peak_mb"] >= row["rss_start_mb"] > 0
        assert 0 <= row["accuracy"]["dice"] <= 1 and 0 <= row["accuracy"]["iou"] <= row["accuracy"]["dice"]
    assert int8["precision"] == "int8" and float32["precision"] == "float32"
    assert int8["size_mb"] < float32["size_mb"] / 2
    assert int8["vs_float"]["dice"] == pytest.approx(int8["accuracy"]["dice"] - float32["accuracy"]["dice"])
    assert int8["accuracy"]["image_recall"] == pytest.approx(hand_count_recall(int8_model[1] / "model_int8.tflite", synth_rgb))
    assert data["images"] == len(list_samples(synth_rgb, "test"))
    assert data["device"]["cores"] >= 1 and "litert" in data["device"]["runtimes"] and data["device"]["python"]


def test_missing_runtime_is_skipped_with_a_note(report):
    data, out = report
    assert "runtime tflite_runtime: not installed, skipped" in data["notes"]
    assert "tflite_runtime: not installed" in (out / "b.md").read_text()


def test_plots_are_png_files(report):
    _, out = report
    plots = sorted(out.glob("b_*.png"))
    assert {p.name for p in plots} == {"b_latency_model_int8.png", "b_latency_model_float32.png",
                                       "b_accuracy_vs_latency.png"}
    for path in plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert cv2.imread(str(path)).shape[0] > 100
    assert "![b_accuracy_vs_latency](b_accuracy_vs_latency.png)" in (out / "b.md").read_text()


def test_compare_prints_ratios(report, capsys):
    _, out = report
    assert main(["bench", "--compare", str(out / "b.json"), str(out / "b.json")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("1.00x") == 4  # p50 and img/s of both models
    assert "model_int8.tflite" in printed and "CPU" in printed


def test_corrupt_image_is_reported_and_skipped(int8_model, synth_rgb, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(synth_rgb, data)
    victim = list_samples(data, "test")[0].image
    victim.write_bytes(b"not an image")
    code = main(["bench", "--model", str(int8_model[1] / "model_int8.tflite"), "--data", str(data), *FAST,
                 "--json", str(tmp_path / "b.json"), "--report", str(tmp_path / "b.md")])
    assert code == 0
    assert f"skipped {victim}" in capsys.readouterr().out
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["accuracy"]["images"] == len(list_samples(data, "test")) - 1


def test_images_without_masks_give_speed_only(int8_model, synth_rgb, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for sample in list_samples(synth_rgb)[:3]:
        shutil.copy(sample.image, folder)
    assert main(["bench", "--model", str(int8_model[1] / "model_int8.tflite"), "--data", str(folder), *FAST,
                 "--json", str(tmp_path / "b.json"), "--report", str(tmp_path / "b.md")]) == 0
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["images_per_s"] > 0 and "accuracy" not in row


@pytest.mark.parametrize("case, message", [
    ("missing model", "model file not found"),
    ("no images", "no images found"),
    ("mask size", "mask is 10x10"),
    ("some masks missing", "no mask, though other images have one"),
])
def test_bad_input_exits_2(case, message, int8_model, synth_rgb, tmp_path, capsys):
    model, data = int8_model[1] / "model_int8.tflite", tmp_path / "data"
    shutil.copytree(synth_rgb, data)
    if case == "missing model":
        model = tmp_path / "nope.tflite"
    elif case == "no images":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "mask size":
        cv2.imwrite(str(data / "masks" / f"{list_samples(data, 'test')[0].id}.png"), np.zeros((10, 10), np.uint8))
    else:
        (data / "masks" / f"{list_samples(data, 'test')[0].id}.png").unlink()
    code = main(["bench", "--model", str(model), "--data", str(data), *FAST, "--json", str(tmp_path / "b.json"),
                 "--report", str(tmp_path / "b.md")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_runtime_that_crashes_becomes_a_note_not_a_hang():
    """tflite_runtime 2.14 segfaults on a float16 model's batched tiles; the bench must go on."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=os.abort)
    process.start()
    kind, message = _outcome(process, queue)
    process.join()
    assert (kind, message) == ("error", "the measuring process died (signal SIGABRT)")
