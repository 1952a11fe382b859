"""The demo's pieces: the surface generator, the bundled model, and `station demo` end to end on a short clip."""

import json

import cv2
import numpy as np
import pytest
import yaml

from edge.cli import main
from edge.core.card import ModelCard
from edge.inference.models import DEFAULT_MODEL, resolve
from edge.inference.runtime import TFLiteModel
from training.surfaces import (
    DEFECTS,
    KINDS,
    add_defect,
    apply_defect,
    defect_mask,
    main as surfaces_main,
    strip,
    texture,
    write_conveyor,
)

ALL_DEFECTS = sorted({d for kinds in DEFECTS.values() for d in kinds})


@pytest.mark.parametrize("kind", ALL_DEFECTS)
def test_a_defect_changes_exactly_its_mask(kind):
    rng = np.random.default_rng(3)
    surface = texture(rng, "leather", 160, 200)[..., None].repeat(3, axis=2)
    mask = defect_mask(rng, kind, surface.shape[:2], np.array([100.0, 80.0]))
    image = surface.copy()
    apply_defect(rng, image, mask, kind)
    inside = mask.astype(bool)
    assert inside.sum() > 20
    np.testing.assert_array_equal(image[~inside], surface[~inside])
    assert np.abs(image[inside] - surface[inside]).mean() > 15  # visibly changed where the mask says


def test_every_surface_kind_and_uneven_light():
    rng = np.random.default_rng(0)
    for kind in KINDS:
        gray = texture(rng, kind, 120, 160)
        assert gray.shape == (120, 160) and 60 < gray.mean() < 220 and gray.std() > 3
    _, parts = strip(rng, 2000, 64)
    assert parts[0].start == 0 and parts[-1].end == 2000 and len({p.kind for p in parts}) > 1


def test_defects_land_inside_the_rows_asked_for():
    rng = np.random.default_rng(5)
    image, parts = strip(rng, 600, 160)
    mask = np.zeros(image.shape[:2], np.uint8)
    kind = add_defect(rng, image, mask, parts, (240, 480), min_px=60)
    assert kind is not None and mask.sum() >= 60
    rows = np.nonzero(mask.any(axis=1))[0]
    assert rows.min() >= 240 and rows.max() < 480


@pytest.mark.parametrize("clean", [0.0, 1.0])
def test_the_dataset_command_writes_the_clean_share_asked(tmp_path, monkeypatch, clean):
    out = tmp_path / "data"
    monkeypatch.setattr("sys.argv", ["surfaces", "--out", str(out), "--images", "12", "--height", "96",
                                     "--width", "128", "--clean-fraction", str(clean)])
    surfaces_main()
    masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((out / "masks").glob("*.png"))]
    defective = [m.any() for m in masks]
    assert len(masks) == 12 and defective.count(True) == (0 if clean else 12)


def test_conveyor_video_and_its_ground_truth(tmp_path):
    truth = write_conveyor(tmp_path / "line.avi", frames=30, size=(96, 128), fps=15, seed=2)
    video = cv2.VideoCapture(str(tmp_path / "line.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 30 and video.get(cv2.CAP_PROP_FRAME_WIDTH) == 128
    assert (tmp_path / "line.csv").read_text().startswith("frame,defect,defect_px,surfaces,defects")
    assert truth[0]["defect"] == 0 and 0 < sum(t["defect"] for t in truth) < 30
    for row in truth:
        assert row["defect"] == (row["defect_px"] >= 60) and bool(row["defects"]) == bool(row["defect"])


def test_the_bundled_model_is_int8_with_its_card():
    assert resolve("default") == DEFAULT_MODEL and DEFAULT_MODEL.stat().st_size < 5 * 2**20
    card = ModelCard.load(DEFAULT_MODEL)
    model = TFLiteModel(DEFAULT_MODEL)
    # int8 inside; its sigmoids kept in float (quantize --keep-float LOGISTIC), so its I/O is float32
    assert card.format == "tflite-int8" and np.dtype(model.input["dtype"]).name == card.input.dtype == "float32"
    assert "CONV_2D" in model.op_types() and "DEQUANTIZE" in model.op_types()
    assert tuple(model.input["shape"][1:]) == (card.input.height, card.input.width, card.input.channels)
    assert card.metrics["test"]["dice"] > 0.9 and card.image_decision.target_recall == 1.0


def test_demo_rejects_the_defective_frames_at_their_fire_times(tmp_path, capsys):
    truth = write_conveyor(tmp_path / "line.avi", frames=45, size=(240, 320), fps=15, seed=7)
    config = {
        "model": {"path": "default", "threads": 2},
        "source": {"uri": str(tmp_path / "line.avi"), "realtime": True},
        "decision": {"min_area_px": 30},
        "pipeline": {"shed_after_ms": 10_000},  # every reject's overlay is written, on a busy machine too (shedding: test_station)
        "gate": {"driver": "serial", "port": str(tmp_path / "plc"), "timing": "delay", "distance_mm": 300,
                 "belt_speed_mm_s": 1000, "actuator_lead_ms": 20, "recovery_ms": 50, "verdict_deadline_ms": 200},
        "output": {"results_log": str(tmp_path / "out" / "results.jsonl"), "overlays_dir": str(tmp_path / "out" / "rejects")},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["demo", "--config", str(tmp_path / "config.yaml")]) == 0
    scores = json.loads((tmp_path / "out" / "demo.json").read_text())
    defective = sum(t["defect"] for t in truth)
    assert scores["frames"] == 45 and scores["rejects_expected"] == defective > 3
    # the bundled model: most defective frames rejected, few clean ones (a thin scratch can pass; pores of concrete reject)
    assert len(scores["missed"]) <= 0.2 * defective and len(scores["false_rejects"]) <= 0.1 * (45 - defective)
    # the wire: exactly the frames the station rejected reached the stand-in, each at its fire time
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    rejected = {r["seq"] for r in records if r.get("verdict") == "reject"}
    assert scores["rejects_received"] == len(rejected) == defective - len(scores["missed"]) + len(scores["false_rejects"])
    assert 0 <= scores["fire_error_ms"]["p50"] and scores["fire_error_ms"]["max"] < 20  # on time, not early
    assert f"missed {len(scores['missed'])}, false rejects {len(scores['false_rejects'])}" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "rejects").iterdir())) == len(rejected)
