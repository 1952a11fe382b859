"""Faults injected for real into a running station: a full disk, a crashed stage, bad geometry,
signals in each state, the PLC killed mid-run. Each asserts the invariant from the results log and
the PLC stand-in's own record (station_run.check_invariant)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from station_run import (
    PlcRecorder,
    check_invariant,
    finish,
    read_log,
    records,
    start,
    wait_for,
    write_config,
)

from edge.cli import main
from edge.tools.soak import fill_disk
from training.surfaces import write_conveyor


@pytest.fixture(scope="module")
def line_video(tmp_path_factory) -> Path:
    """90 frames (6 s at 15 fps) of the demo's conveyor: about one frame in six holds a defect."""
    path = tmp_path_factory.mktemp("line") / "line.avi"
    write_conveyor(path, frames=90, fps=15, seed=3)
    return path


@pytest.fixture
def plc(tmp_path):
    recorder = PlcRecorder(tmp_path / "plc")  # a name of this test's own: a pty number is reused by the next test
    yield recorder
    recorder.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a real disk that fills up (ENOSPC), emptied again by deleting a file."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_full_disk_keeps_rejecting_and_writes_every_record_once_space_returns(tmp_path, small_disk, line_video, plc):
    log = small_disk / "results.jsonl"
    with socket.socket() as s:  # a broker that is not there: MQTT spools on the same full disk
        s.bind(("127.0.0.1", 0))
        broker_port = s.getsockname()[1]
    config = write_config(tmp_path, line_video, gate={"port": plc.path},
                          output={"results_log": str(log), "overlays_dir": str(small_disk / "rejects"),
                                  "alarm_on_write_failure": True},
                          mqtt={"host": "127.0.0.1", "port": broker_port, "spool_dir": str(small_disk / "mqtt")})
    proc = start(config)
    wait_for(lambda: len(_lines(log)) >= 10, what="the first records")
    filler = fill_disk(small_disk)
    full_since, rejects_before = time.monotonic(), len(plc.rejects())
    time.sleep(2.5)  # about 37 frames with the disk full
    text = log.read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())  # no torn line
    beats = [t for t in plc.heartbeats() if t > full_since + 0.5]
    assert len(plc.rejects()) > rejects_before and len(beats) >= 10  # the gate carried on with the disk full
    assert any(line.startswith("STOP results log not written") for _, line in plc.lines)  # and said so, as configured
    filler.unlink()
    out = finish(proc)
    assert proc.returncode == 0, proc.stderr_text[-3000:]
    assert "cannot write" in proc.stderr_text and "writing again" in proc.stderr_text
    assert "cannot write (No space left on device): dropping new messages" in proc.stderr_text  # MQTT, isolated
    frames = [r for r in records(tmp_path, log) if "verdict" in r]
    events = [r for r in records(tmp_path, log) if "event" in r]
    check_invariant(frames, events, plc.rejects())
    assert len(frames) == 90 and "frames 90 (captured 90)" in out


def test_a_crashed_stage_still_rejects_and_records_every_frame_it_took(tmp_path, plc, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((120, 160, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "ignore.png"), np.zeros((50, 50), np.uint8))  # not the frame's size
    config = write_config(tmp_path, folder, gate={"port": plc.path}, source={"realtime": False},
                          preprocess={"ignore_mask": str(tmp_path / "ignore.png")})
    assert main(["run", "--config", str(config)]) == 2
    assert "preprocess.ignore_mask: (50, 50) is not the frame size (160, 120)" in capsys.readouterr().err
    wait_for(lambda: len(plc.rejects()) >= 1, what="the fail-safe rejects")
    time.sleep(0.3)
    frames, events = read_log(tmp_path)
    assert frames and all(r["verdict"] == "reject" and r["reason"].startswith("fail-safe: station stopped (BadInput")
                          for r in frames)
    assert all(r["source"].startswith(str(folder)) for r in frames)
    check_invariant(frames, events, plc.rejects())
    assert sorted(plc.rejects()) == [r["seq"] for r in frames]


@pytest.mark.parametrize("section, message", [
    ({"preprocess": {"roi": [100, 100, 500, 500]}}, "preprocess.roi [100, 100, 500, 500] does not fit in the 320x240 frame"),
    ({"preprocess": {"overlap": 128}}, "preprocess.overlap: 128 is not smaller than the model's 128x128 tile"),
])
def test_bad_geometry_is_exit_2_at_once_not_a_hang(tmp_path, line_video, section, message):
    config = write_config(tmp_path, line_video, gate={"driver": "log"}, **section)
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].endswith(f"error: {message}")
    frames, events = read_log(tmp_path) if (tmp_path / "out" / "results.jsonl").exists() else ([], [])
    assert all(r["verdict"] == "reject" for r in frames)  # whatever was captured was rejected, not passed


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest.mark.parametrize("when", ["starting", "running"])
def test_every_signal_in_every_state_ends_cleanly_with_every_frame_recorded(tmp_path, line_video, plc, sig, when):
    config = write_config(tmp_path, line_video, gate={"port": plc.path, "timing": "delay", "distance_mm": 300,
                                                      "belt_speed_mm_s": 1000})
    proc = start(config)
    assert proc.stdout.readline().startswith("model ")  # the handlers are in place before the model loads
    if when == "running":
        wait_for(lambda: len(read_log(tmp_path)[0]) >= 15, what="15 records")
    out = finish(proc, sig)
    assert proc.returncode == 0, proc.stderr_text[-3000:]
    frames, events = read_log(tmp_path)
    check_invariant(frames, events, plc.rejects())
    assert f"(captured {len(frames)})" in out
    assert all(e["status"] != "missed" for e in events if e["event"] == "reject")  # the gate fired what was due


def test_a_second_signal_during_shutdown_changes_nothing(tmp_path, line_video, plc):
    config = write_config(tmp_path, line_video, gate={"port": plc.path, "timing": "delay", "distance_mm": 900,
                                                      "belt_speed_mm_s": 1000})
    proc = start(config)
    wait_for(lambda: len(read_log(tmp_path)[0]) >= 15, what="15 records")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)  # the gate is still holding rejects due 0.9 s after their capture
    finish(proc, signal.SIGTERM)
    assert proc.returncode == 0, proc.stderr_text[-3000:]
    frames, events = read_log(tmp_path)
    check_invariant(frames, events, plc.rejects())


def test_the_plc_killed_and_restarted_mid_run_leaves_no_reject_without_a_final_status(tmp_path, line_video):
    link = tmp_path / "plc"

    def stand_in(csv_path: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "plc-sim", "--pty", "--link", str(link), "--csv",
                                 str(csv_path)], stdout=subprocess.DEVNULL)
        wait_for(link.exists, what="the stand-in's pty")
        return proc

    first = stand_in(tmp_path / "first.csv")
    config = write_config(tmp_path, line_video, gate={"port": str(link), "reconnect_initial_s": 0.05,
                                                      "reconnect_max_s": 0.2})
    proc = start(config)
    wait_for(lambda: len(read_log(tmp_path)[0]) >= 20, what="20 records")
    first.kill()
    first.wait()
    link.unlink()
    time.sleep(1.0)
    second = stand_in(tmp_path / "second.csv")
    out = finish(proc)
    time.sleep(0.2)
    second.terminate()
    second.wait()
    assert proc.returncode == 0, proc.stderr_text[-3000:]
    received = [int(line.split(",")[2].split()[1]) for f in ("first.csv", "second.csv")
                for line in (tmp_path / f).read_text().splitlines() if ",REJ " in line]
    frames, events = read_log(tmp_path)
    check_invariant(frames, events, received)
    assert any(e["event"] == "gate_lost" for e in events) and any(e["event"] == "gate_reconnected" for e in events)
    assert "frames 90 (captured 90)" in out
