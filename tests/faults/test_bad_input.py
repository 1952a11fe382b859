"""Bad input to `station run`: one line naming the file, the key and the value, exit code 2.

Bad configs and bad model cards go through the command line in-process, on the bundled model
copied into tmp_path; the gate template check and the strict types also have unit tests.
"""

import json
import shutil

import cv2
import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from edge.cli import main
from edge.core.card import ModelCard, file_sha256
from edge.core.config import GateConfig, load_station_config
from edge.core.errors import BadInput
from edge.inference.models import DEFAULT_MODEL

DELETE = object()


def _card(key: str, value):
    """A change to the card: set the dotted key to value, or delete it."""
    def change(raw: dict) -> None:
        *parents, last = key.split(".")
        for parent in parents:
            raw = raw[parent]
        if value is DELETE:
            del raw[last]
        else:
            raw[last] = value
    return change


@pytest.fixture
def station(tmp_path):
    """tmp_path with two 128x160 frames in frames/ and the bundled model and card as model.tflite, model.json."""
    (tmp_path / "frames").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "frames" / f"{i}.png"), np.full((128, 160, 3), 150, np.uint8))
    shutil.copy(DEFAULT_MODEL, tmp_path / "model.tflite")
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), tmp_path / "model.json")
    return tmp_path


def _run(root, sections: dict, *changes) -> int:
    """`station run` on the station fixture, the config's sections and the card's changes applied."""
    raw = json.loads((root / "model.json").read_text())
    for change in changes:
        change(raw)
    (root / "model.json").write_text(json.dumps(raw))
    doc = {"model": {"path": str(root / "model.tflite")}, "source": {"uri": str(root / "frames")},
           "output": {"results_log": str(root / "out" / "results.jsonl"), "overlays_dir": None}}
    for section, values in sections.items():
        doc.setdefault(section, {}).update(values)
    (root / "station.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return main(["run", "--config", str(root / "station.yaml")])


OTHER_SHA256 = "0" * 64
IMAGE_DECISION = {"image_threshold": 0.5, "target_recall": 1.0, "recall": 1.0, "false_reject_rate": 0.1,
                  "defective_images": 20, "clean_images": 40, "recall_lower_95": 0.86, "smooth_px": 0, "score": "max probability"}

BAD = [
    ({"decision": {"min_area_px": True}}, None, "station.yaml: decision.min_area_px: expected an integer, got True"),
    ({"decision": {"min_area_px": "10"}}, None, "station.yaml: decision.min_area_px: expected an integer, got '10'"),
    ({"decision": {"threshold": "0.5"}}, None, "station.yaml: decision.threshold: expected a number, got '0.5'"),
    ({"source": {"realtime": 1}}, None, "station.yaml: source.realtime: expected true or false, got 1"),
    ({"gate": {"stopbits": True}}, None, "station.yaml: gate.stopbits: expected 1, 1.5 or 2, got True"),
    ({"mqtt": {"qos": True}}, None, "station.yaml: mqtt.qos: expected 0, 1 or 2, got True"),
    ({"eval": {"min_area": "10"}}, None, "station.yaml: eval.min_area: expected an integer, got '10'"),
    ({"train": {"epochs": 2.5}}, None, "station.yaml: train.epochs: expected an integer, got 2.5"),
    ({"gate": {"verdict_deadline_ms": float("inf")}}, None,
     "station.yaml: gate.verdict_deadline_ms: expected a finite number, got inf"),
    ({"preprocess": {"roi": [-1, 0, 64, 64]}}, None,
     "station.yaml: preprocess.roi: x and y must be >= 0, width and height >= 1, got [-1, 0, 64, 64]"),
    ({"preprocess": {"roi": [0, 0, 64, 0]}}, None,
     "station.yaml: preprocess.roi: x and y must be >= 0, width and height >= 1, got [0, 0, 64, 0]"),
    ({"preprocess": {"roi": [0, 0, 64, True]}}, None, "station.yaml: preprocess.roi.3: expected an integer, got True"),
    ({"gate": {"reject_template": "REJ {seq[0]}\r\n"}}, None,
     "station.yaml: gate.reject_template: {seq[0]}: no attribute or index access (use {seq}, {lane}, {pulse_ms}, {part})"),
    ({"gate": {"alarm_template": "STOP {reason.x}\r\n"}}, None,
     "station.yaml: gate.alarm_template: {reason.x}: no attribute or index access (use {reason})"),
    ({"gate": {"reject_template": "REJ {seq} → {lane}\r\n"}}, None,
     "station.yaml: gate.reject_template: 'REJ {seq} → {lane}\\r\\n' is not ASCII"),
    ({"gate": {"driver": "modbus", "port": "tcp://127.0.0.1:99999"}}, None,
     "station.yaml: gate.port: 'tcp://127.0.0.1:99999': expected tcp://HOST or tcp://HOST:PORT with a port of 1-65535"),
    ({"decision": {"rule": "score"}}, None, "station.yaml: decision.rule: expected 'card', 'image_score' or 'area', got 'score'"),
    ({}, _card("image_decision", {**IMAGE_DECISION, "image_threshold": "0.5"}),
     "model.json: image_decision.image_threshold: expected a number, got '0.5'"),
    ({}, _card("image_decision", {**IMAGE_DECISION, "image_threshold": 1.5}),
     "model.json: image_decision.image_threshold: expected less than or equal to 1, got 1.5"),
    ({}, _card("threshold", "0.75"), "model.json: threshold: expected a number, got '0.75'"),
    ({}, _card("threshold", 1.5), "model.json: threshold: expected less than 1, got 1.5"),
    ({}, _card("threshold", 0), "model.json: threshold: expected greater than 0, got 0"),
    ({}, _card("threshold", DELETE), "model.json: threshold: missing"),
    ({}, _card("preprocess.mode", "zoom"), "model.json: preprocess.mode: expected 'tile' or 'resize', got 'zoom'"),
    ({}, _card("preprocess.stitch", "median"), "model.json: preprocess.stitch: expected 'mean' or 'max', got 'median'"),
    ({}, _card("preprocess.scale", 0), "model.json: preprocess.scale: expected greater than 0, got 0"),
    ({}, _card("preprocess", {"mode": "resize", "overlap": 32, "stitch": "mean", "scale": 0.5}),
     "model.json: preprocess.scale: 0.5 goes with tile mode only, not resize"),
    ({}, _card("preprocess.overlap", 128),
     "model.json: preprocess.overlap: 128 is not smaller than the model's 128x128 tile"),
    ({}, _card("input.height", -128), "model.json: input.height: expected greater than or equal to 1, got -128"),
    ({}, _card("input.channels", 2), "model.json: input.channels: expected 1 or 3, got 2"),
    ({}, _card("input.channels", True), "model.json: input.channels: expected 1 or 3, got True"),
    ({}, _card("input.color_order", "GRAY"), "model.json: input: color_order GRAY does not go with 3 channel(s)"),
    ({}, _card("input.scaling", "0-1"), "model.json: input.scaling: expected 'raw 0-255; the model scales inside', got '0-1'"),
    ({}, _card("model_sha256", OTHER_SHA256),
     f"model.json: written for another model file (sha256 {OTHER_SHA256} != {file_sha256(DEFAULT_MODEL)})"),
]


@pytest.mark.parametrize("sections, change, message", BAD, ids=[m.split(": ")[1][:40] for _, _, m in BAD])
def test_bad_config_or_card_exits_2_with_one_line(station, capsys, sections, change, message):
    assert _run(station, sections, *[change] if change else []) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("change, warning", [
    (_card("model_sha256", DELETE), "model.json: no model_sha256 (an older card): not checked against"),
    (_card("calibration", {"images": 200}), "model.json: unknown keys ignored: calibration"),
    (_card("input.fps", 30), "model.json: unknown keys ignored: input.fps"),
])
def test_an_older_card_without_hash_or_a_newer_one_with_more_keys_runs_with_a_warning(station, caplog, change, warning):
    assert _run(station, {}, change) == 0
    assert warning in caplog.text


@pytest.mark.parametrize("key, default", [("image_decision.false_reject_budget", 0.0), ("preprocess.scale", 1.0)])
def test_a_card_from_before_a_key_runs_with_its_default(station, key, default):
    assert _run(station, {}, _card(key, DELETE)) == 0
    section, name = key.split(".")
    assert getattr(getattr(ModelCard.load(station / "model.tflite"), section), name) == default


@pytest.mark.parametrize("key, template, message", [
    ("reject_template", "REJ {seq[0]}", "{seq[0]}: no attribute or index access (use {seq}, {lane}, {pulse_ms}, {part})"),
    ("alarm_template", "STOP {reason.upper}", "{reason.upper}: no attribute or index access (use {reason})"),
    ("reject_template", "REJ {seq!r}", "{seq!r}: no conversions (!r, !s, !a) or nested fields"),
    ("reject_template", "REJ {seq:{lane}}", "{seq:{lane}}: no conversions (!r, !s, !a) or nested fields"),
    ("reject_template", "REJ {seq", "'REJ {seq': expected '}' before end of string (write {{ and }} for a brace)"),
    ("heartbeat_template", "HB {count} ✓", "'HB {count} ✓' is not ASCII"),
    ("alarm_template", "STOP {reason:d}", "'STOP {reason:d}': Unknown format code 'd' for object of type 'str'"),
    ("ack_pattern", "ACK", "'ACK': the PLC's stripped line is matched with {seq} as its digits"),
    ("ack_pattern", "ACK {seq:04d}", "'ACK {seq:04d}': the PLC's stripped line is matched with {seq} as its digits"),
    ("ack_pattern", "ACK {seq}\r\n", "'ACK {seq}\\r\\n': the PLC's stripped line is matched with {seq} as its digits"),
])
def test_template_check_refuses(key, template, message):
    with pytest.raises(ValidationError) as info:
        GateConfig(**{key: template})
    assert message in str(info.value)


def test_a_format_spec_that_fits_the_value_is_kept_and_one_that_does_not_is_refused():
    template = GateConfig(reject_template="REJ {seq:06d} {lane}\r\n").reject_template
    assert template.format(seq=7, lane=1) == "REJ 000007 1\r\n"
    with pytest.raises(ValidationError, match=r"'REJ \{seq:s\}': Unknown format code 's' for object of type 'int'"):
        GateConfig(reject_template="REJ {seq:s}")


def test_an_integer_is_a_number_and_a_yaml_list_a_roi_but_a_number_is_not_an_integer(tmp_path):
    path = tmp_path / "station.yaml"
    path.write_text("model: {path: default}\nsource: {uri: x}\n"
                    "preprocess: {roi: [0, 0, 64, 48]}\ndecision: {mm_per_px: 1}\n")
    config = load_station_config(path)
    assert config.preprocess.roi == (0, 0, 64, 48) and config.decision.mm_per_px == 1.0
    with pytest.raises(BadInput, match=r"decision.min_area_px: expected an integer, got 10.0"):
        load_station_config(path, {"decision": {"min_area_px": 10.0}})
