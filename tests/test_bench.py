"""station bench on the device: the bundled int8 model and a copy of it, on a folder dataset of the surface
generator's (the int8 file against its float32 twin is benched in tests/training/test_quantize.py)."""

import json
import multiprocessing
import os
import shutil

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.core.card import ModelCard
from edge.evaluation.dataset import list_samples, read_image
from edge.inference.models import DEFAULT_MODEL
from edge.inference.runtime import TFLiteModel
from edge.inference.segment import probability_map
from edge.tools.bench import _outcome

FAST = ["--threads", "1", "--runs", "5", "--warmup", "1", "--runtime", "litert,tflite_runtime"]


@pytest.fixture(scope="module")
def report(surfaces_data, tmp_path_factory):
    """One bench of two model files, the bundled int8 model and a copy of it as second_int8.tflite (its card
    beside it), on the surfaces dataset's test split."""
    out = tmp_path_factory.mktemp("bench")
    second = out / "second_int8.tflite"
    shutil.copy(DEFAULT_MODEL, second)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), second.with_suffix(".json"))
    code = main(["bench", "--model", "default", "--model", str(second), "--data", str(surfaces_data), *FAST,
                 "--json", str(out / "b.json"), "--report", str(out / "b.md")])
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


def test_report_is_complete_and_plausible(report, surfaces_data):
    data, _ = report
    assert [(r["name"], r["runtime"], r["threads"]) for r in data["rows"]] == [
        ("surfaces_int8.tflite", "litert", 1), ("second_int8.tflite", "litert", 1)]
    bundled, second = data["rows"]
    for row in data["rows"]:
        assert row["init_ms"] > 0 and row["first_ms"] > 0 and len(row["latencies_ms"]) == 5
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["images_per_s"] > 0 and row["rss_peak_mb"] >= row["rss_start_mb"] > 0
        assert 0 <= row["accuracy"]["dice"] <= 1 and 0 <= row["accuracy"]["iou"] <= row["accuracy"]["dice"]
        assert row["precision"] == "int8" and "vs_float" not in row  # no float model benched: no deltas
        assert row["size_mb"] == DEFAULT_MODEL.stat().st_size / 2**20
    assert bundled["accuracy"] == second["accuracy"]  # the same model on the same images, each in a process of its own
    assert bundled["accuracy"]["dice"] > 0.8  # the bundled model on the data it was made for (its card: 0.94)
    assert bundled["accuracy"]["image_recall"] == pytest.approx(hand_count_recall(DEFAULT_MODEL, surfaces_data))
    assert data["images"] == len(list_samples(surfaces_data, "test"))
    assert data["device"]["cores"] >= 1 and "litert" in data["device"]["runtimes"] and data["device"]["python"]


def test_missing_runtime_is_skipped_with_a_note(report):
    data, out = report
    assert "runtime tflite_runtime: not installed, skipped" in data["notes"]
    assert "tflite_runtime: not installed" in (out / "b.md").read_text()


def test_plots_are_png_files(report):
    _, out = report
    plots = sorted(out.glob("b_*.png"))
    assert {p.name for p in plots} == {"b_latency_surfaces_int8.png", "b_latency_second_int8.png",
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
    assert "surfaces_int8.tflite" in printed and "CPU" in printed


def test_corrupt_image_is_reported_and_skipped(surfaces_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(surfaces_data, data)
    victim = list_samples(data, "test")[0].image
    victim.write_bytes(b"not an image")
    code = main(["bench", "--model", str(DEFAULT_MODEL), "--data", str(data), *FAST,
                 "--json", str(tmp_path / "b.json"), "--report", str(tmp_path / "b.md")])
    assert code == 0
    assert f"skipped {victim}" in capsys.readouterr().out
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["accuracy"]["images"] == len(list_samples(data, "test")) - 1


def test_images_without_masks_give_speed_only(surfaces_data, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for sample in list_samples(surfaces_data)[:3]:
        shutil.copy(sample.image, folder)
    assert main(["bench", "--model", str(DEFAULT_MODEL), "--data", str(folder), *FAST,
                 "--json", str(tmp_path / "b.json"), "--report", str(tmp_path / "b.md")]) == 0
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["images_per_s"] > 0 and "accuracy" not in row


@pytest.mark.parametrize("case, message", [
    ("missing model", "model file not found"),
    ("no images", "no images found"),
    ("mask size", "mask is 10x10"),
    ("some masks missing", "no mask, though other images have one"),
])
def test_bad_input_exits_2(case, message, surfaces_data, tmp_path, capsys):
    model, data = DEFAULT_MODEL, tmp_path / "data"
    shutil.copytree(surfaces_data, data)
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


def test_openvino_runs_the_same_tflite_file_and_finds_what_litert_finds(surfaces_data, tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra")
    from edge.evaluation.dataset import list_samples, read_pairs
    from edge.evaluation.evaluate import predict_maps
    from edge.evaluation.metrics import evaluate_maps
    from edge.inference.predictors import load_model

    scores = {}
    for runtime in ("litert", "openvino"):
        loaded = load_model("default", 2, runtime)
        pairs, _ = read_pairs(list_samples(surfaces_data, "test"), 3, False)
        probs = predict_maps([p[1] for p in pairs], loaded.predict, loaded.card)
        scores[runtime] = evaluate_maps(probs, [p[2] for p in pairs], loaded.card.threshold)["dice"]
        assert loaded.tflite.runtime == runtime and runtime in loaded.tflite.describe()
    assert abs(scores["openvino"] - scores["litert"]) < 0.03 and scores["openvino"] > 0.8, scores
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", "default", "--runtime", "openvino", "--threads", "1", "--runs", "3",
                 "--warmup", "1", "--json", str(out), "--report", str(tmp_path / "bench.md")]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["runtime"] for r in rows] == ["openvino"] and rows[0]["p50_ms"] > 0
