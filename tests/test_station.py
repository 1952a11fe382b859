"""`station run` on the bundled int8 model, in this process and in one of its own: a verdict per frame in
order, tiling, ROI and ignore mask, the results log, the PLC stand-in, SIGTERM, bad input on one line."""

import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from stations import read_log, verdict_records, write_config

from edge.cli import main
from edge.core.card import ImageDecision, ModelCard
from edge.inference.models import DEFAULT_MODEL
from edge.sinks.results import OverlayStore
from training.surfaces import write_conveyor
from training.synthetic import sample, write_video

# A stretch of the demo's conveyor (training.surfaces, 120x160 frames) that the bundled model judges as the
# generator drew it, frame by frame: seed 7 has a stain, two holes and a fold in frames 4, 8, 14 and 21. The
# model misses thin scratches and now and then takes a tile's grout for a crack (test_demo bounds those
# rates), so another seed, or another bundled model, may need this one changed.
LINE_SEED = 7


def _conveyor(path, frames: int) -> list[bool]:
    """The LINE_SEED conveyor video; per frame, whether it holds a defect."""
    return [bool(row["defect"]) for row in write_conveyor(path, frames=frames, size=(120, 160), fps=15, seed=LINE_SEED)]


@pytest.mark.parametrize("streams", [1, 2])
def test_verdicts_match_the_frames_with_defects(tmp_path, capsys, streams):
    """One interpreter records the frames in order; two (model.streams) may swap neighbours, never lose one."""
    truth = _conveyor(tmp_path / "line.avi", 24)
    config = write_config(tmp_path, tmp_path / "line.avi", model={"streams": streams})
    assert main(["run", "--config", str(config)]) == 0
    records = verdict_records(tmp_path)
    assert [r["seq"] for r in records] == list(range(24)) or streams == 2
    records.sort(key=lambda r: r["seq"])
    assert [r["seq"] for r in records] == list(range(24))
    assert [r["verdict"] == "reject" for r in records] == truth
    rejects = [r for r in records if r["verdict"] == "reject"]
    assert all(r["defects"] and r["defects"][0]["area_px"] >= 30 for r in rejects)
    assert all(r["latency_ms"]["capture_to_verdict"] > 0 and r["model"] == "surfaces_int8.tflite" for r in records)
    assert sorted(p.stem for p in (tmp_path / "out" / "rejects").glob("*.jpg")) == [f"{r['seq']:08d}" for r in rejects]
    out = capsys.readouterr().out
    assert f"frames 24 (captured 24), rejects {sum(truth)}" in out and "litert" in out
    assert ("1 threads x 2 streams" in out) == (streams == 2)


def test_tiling_finds_a_small_defect_that_resize_misses(tmp_path):
    rng = np.random.default_rng(3)
    image = np.clip(150 + rng.normal(0, 3, (1080, 1920, 3)), 0, 255).astype(np.uint8)
    cv2.circle(image, (1200, 700), 4, (80, 80, 80), -1)  # a pit 9 pixels wide in a 1920x1080 frame: 0.6 px at 128x128
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), image[..., ::-1])
    verdicts = {}
    for mode in ("tile", "resize"):
        config = write_config(tmp_path, folder, preprocess={"mode": mode}, decision={"min_area_px": 5})
        (tmp_path / "out" / "results.jsonl").unlink(missing_ok=True)
        assert main(["run", "--config", str(config)]) == 0
        verdicts[mode] = verdict_records(tmp_path)[0]
    assert verdicts["tile"]["verdict"] == "reject" and verdicts["resize"]["verdict"] == "accept"
    x, y, w, h = verdicts["tile"]["defects"][0]["bbox"]
    assert x <= 1200 <= x + w and y <= 700 <= y + h


def test_max_frames_and_the_results_log_is_appended_not_replaced(tmp_path):
    write_video(tmp_path / "line.avi", frames=10, size=(120, 160))
    config = write_config(tmp_path, tmp_path / "line.avi")
    assert main(["run", "--config", str(config), "--max-frames", "4"]) == 0
    assert main(["run", "--config", str(config), "--max-frames", "3"]) == 0
    assert [r["seq"] for r in verdict_records(tmp_path)] == [0, 1, 2, 3, 0, 1, 2]


def test_sigterm_finishes_the_frames_in_flight_and_flushes(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    image, _ = sample(np.random.default_rng(0), 120, 160, channels=3, clean=True)
    for i in range(3000):
        cv2.imwrite(str(frames / f"{i:05d}.png"), image[..., ::-1]) if i < 1 else (frames / f"{i:05d}.png").hardlink_to(frames / "00000.png")
    config = write_config(tmp_path, frames)
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "out" / "results.jsonl"
    deadline = time.monotonic() + 60
    while (not log.exists() or len(log.read_text().splitlines()) < 20) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    records = verdict_records(tmp_path)
    assert 20 <= len(records) < 3000
    assert [r["seq"] for r in records] == list(range(len(records)))  # nothing taken was lost
    assert f"frames {len(records)} " in out


@pytest.mark.parametrize("extra, message", [
    ({"decision": {"min_area_px": "ten"}}, "decision.min_area_px: expected an integer, got 'ten'"),
    ({"decision": {"min_area": 3}}, "decision.min_area: unknown key"),
    ({"source": {"uri": "/dev/video9"}}, "source /dev/video9: cannot be opened"),
    ({"model": {"path": "nope.tflite"}}, "nope.tflite: model file not found"),
    ({"preprocess": {"mode": "zoom"}}, "preprocess.mode: expected 'card', 'tile' or 'resize', got 'zoom'"),
])
def test_bad_config_camera_or_model_exit_2_with_one_line(tmp_path, capsys, extra, message):
    write_video(tmp_path / "line.avi", frames=2)
    config = write_config(tmp_path, tmp_path / "line.avi", **extra)
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_the_cards_image_threshold_decides_unless_the_config_asks_for_the_area_rule(tmp_path, capsys):
    truth = _conveyor(tmp_path / "line.avi", 12)
    shutil.copy(DEFAULT_MODEL, tmp_path / "m.tflite")
    card = ModelCard.load(DEFAULT_MODEL)
    card.image_decision = ImageDecision(image_threshold=0.0, target_recall=1.0, recall=1.0, false_reject_rate=1.0,
                                        defective_images=1, clean_images=1, recall_lower_95=0.05)
    card.save(tmp_path / "m.tflite")
    model = {"path": str(tmp_path / "m.tflite")}
    assert main(["run", "--config", str(write_config(tmp_path, tmp_path / "line.avi", model=model))]) == 0
    records = verdict_records(tmp_path)
    assert all(r["verdict"] == "reject" and r["score"] >= 0.0 for r in records) and len(records) == 12
    (tmp_path / "out" / "results.jsonl").unlink()
    config = write_config(tmp_path, tmp_path / "line.avi", model=model, decision={"rule": "area"})
    assert main(["run", "--config", str(config)]) == 0
    assert [r["verdict"] == "reject" and "score" not in r for r in verdict_records(tmp_path)] == truth
    card.image_decision = None
    card.save(tmp_path / "m.tflite")
    assert main(["run", "--config", str(write_config(tmp_path, tmp_path / "line.avi", model=model, decision={"rule": "image_score"}))]) == 2
    assert "decision.rule: image_score needs an image threshold" in capsys.readouterr().err


def test_a_sink_that_raises_is_logged_and_counted_and_every_frame_still_recorded(tmp_path, monkeypatch, caplog):
    """The overlay sink is made to raise on every frame (no real fault makes a sink raise: the ones that
    can happen, a full disk or a lost broker, each sink handles itself and tests/faults/ covers)."""
    truth = _conveyor(tmp_path / "line.avi", 10)

    def broken(self, *args):
        raise RuntimeError("sink down")

    monkeypatch.setattr(OverlayStore, "verdict", broken)
    assert main(["run", "--config", str(write_config(tmp_path, tmp_path / "line.avi"))]) == 0
    assert [r["verdict"] == "reject" for r in verdict_records(tmp_path)] == truth
    assert caplog.text.count("OverlayStore failed") == 1 and "sink down" in caplog.text


def test_a_station_behind_sheds_its_reject_overlays_but_records_and_rejects_every_frame(tmp_path, caplog):
    truth = _conveyor(tmp_path / "line.avi", 12)
    config = write_config(tmp_path, tmp_path / "line.avi", pipeline={"shed_after_ms": 0.001})  # every frame is "late"
    assert main(["run", "--config", str(config)]) == 0
    assert [r["verdict"] == "reject" for r in verdict_records(tmp_path)] == truth and any(truth)
    assert not list((tmp_path / "out" / "rejects").glob("*.jpg"))  # overlays shed
    assert "shedding the optional outputs" in caplog.text


def test_roi_and_ignore_mask_hide_defects_outside_the_inspected_area(tmp_path):
    rng = np.random.default_rng(1)
    image = np.clip(150 + rng.normal(0, 3, (128, 256, 3)), 0, 255).astype(np.uint8)
    cv2.circle(image, (40, 64), 6, (80, 80, 80), -1)  # left pit
    cv2.circle(image, (200, 64), 6, (80, 80, 80), -1)  # right pit
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), image[..., ::-1])
    ignore = np.zeros((128, 256), np.uint8)
    ignore[:, 150:] = 255
    cv2.imwrite(str(tmp_path / "ignore.png"), ignore)
    centres = {}
    for name, pre in (("all", {}), ("roi", {"roi": [0, 0, 128, 128]}), ("ignore", {"ignore_mask": str(tmp_path / "ignore.png")})):
        (tmp_path / "out" / "results.jsonl").unlink(missing_ok=True)
        config = write_config(tmp_path, folder, preprocess=pre, decision={"min_area_px": 20})
        assert main(["run", "--config", str(config)]) == 0
        centres[name] = sorted(round(d["centroid"][0] / 100) for d in verdict_records(tmp_path)[0]["defects"])
    assert centres == {"all": [0, 2], "roi": [0], "ignore": [0]}


def test_shipped_config_is_valid_and_the_docs_list_every_key():
    from pathlib import Path

    from edge.core.config import load_station_config, reference_markdown

    root = Path(__file__).parent.parent
    config = load_station_config(root / "config.yaml")
    assert config.model.path == "default" and config.source.realtime  # the bundled model, on the demo video
    assert config.gate.driver == "serial" and config.gate.timing == "delay" and config.gate.port == "runs/demo/plc"
    assert reference_markdown() in (root / "docs" / "configuration.md").read_text()


def test_set_overrides_any_key_and_is_validated(tmp_path, capsys):
    write_video(tmp_path / "line.avi", frames=6)
    config = write_config(tmp_path, tmp_path / "line.avi")
    assert main(["run", "--config", str(config), "--set", "pipeline.max_frames=2", "--set", "output.overlays_dir=null"]) == 0
    assert len(verdict_records(tmp_path)) == 2 and not (tmp_path / "out" / "rejects").exists()
    assert main(["run", "--config", str(config), "--set", "decision.min_area_px=ten"]) == 2
    assert main(["run", "--config", str(config), "--set", "realtime"]) == 2
    assert "expected SECTION.KEY=VALUE" in capsys.readouterr().err


def test_the_plc_stand_in_receives_a_reject_for_every_defect_frame(tmp_path):
    from edge.tools.plc_sim import PLCStandIn

    truth = _conveyor(tmp_path / "line.avi", 15)
    plc = PLCStandIn()
    gate = {"driver": "serial", "port": plc.path, "timing": "delay", "distance_mm": 100, "belt_speed_mm_s": 400,
            "heartbeat_ms": 0, "recovery_ms": 0, "lanes": 2}
    config = write_config(tmp_path, tmp_path / "line.avi", gate=gate, source={"realtime": True})
    try:
        assert main(["run", "--config", str(config)]) == 0
        deadline = time.monotonic() + 2
        while len(plc.received) < sum(truth) and time.monotonic() < deadline:
            plc.poll(0.05)
        plc.poll(0.05)
    finally:
        plc.close()
    seqs = [int(line.split()[1]) for _, line in plc.received if line.startswith("REJ")]
    assert sorted(set(seqs)) == [i for i, t in enumerate(truth) if t]
    assert all(int(line.split()[2]) in (1, 2) for _, line in plc.received)
    records = read_log(tmp_path)
    frames = {r["seq"]: r for r in records if "verdict" in r}
    sent = [r for r in records if r.get("event") == "reject"]
    assert {r["status"] for r in sent} == {"sent"}
    for r in sent:  # fired 250 ms (100 mm at 400 mm/s) after capture
        assert abs(r["fire_at"] - frames[r["seq"]]["t_capture"] - 0.25) < 1e-3 and abs(r["error_ms"]) < 5
