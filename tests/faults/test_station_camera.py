"""The station on a real MJPEG-over-HTTP camera stand-in (edge.tools.camera_sim, its own process) that is
frozen and killed: the PLC's heartbeat stops while the camera gives nothing, the outage is a gap from
the last good frame, and a signal during the stall ends the station cleanly."""

import signal
import socket
import subprocess
import sys
import time

import pytest
from station_run import (
    PlcRecorder,
    check_invariant,
    finish,
    read_log,
    start,
    wait_for,
    write_config,
)

from training.surfaces import write_conveyor


@pytest.fixture(scope="module")
def line_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("camera") / "line.avi"
    write_conveyor(path, frames=60, fps=15, seed=5)
    return path


@pytest.fixture
def camera(line_video):
    """The camera stand-in on a free port, looping the video at 15 fps."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "edge.tools.camera_sim", "--video", str(line_video), "--port", str(port),
                             "--fps", "15"], stdout=subprocess.DEVNULL)

    def serving() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(serving, what="the camera stand-in")
    yield proc, f"http://127.0.0.1:{port}/stream.mjpg"
    proc.send_signal(signal.SIGCONT)
    proc.kill()
    proc.wait()


@pytest.fixture
def plc(tmp_path):
    recorder = PlcRecorder(tmp_path / "plc")  # a name of this test's own: a pty number is reused by the next test
    yield recorder
    recorder.close()


def _station(tmp_path, url, plc):
    config = write_config(tmp_path, url, gate={"port": plc.path, "heartbeat_ms": 100, "verdict_deadline_ms": 400},
                          source={"stall_s": 1.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5})
    proc = start(config)
    wait_for(lambda: len(read_log(tmp_path)[0]) >= 15, what="15 records")
    return proc


def test_a_frozen_camera_stops_the_heartbeat_and_is_a_gap_from_its_last_good_frame(tmp_path, camera, plc):
    cam, url = camera
    proc = _station(tmp_path, url, plc)
    time.sleep(1.0)
    cam.send_signal(signal.SIGSTOP)  # the TCP connection stays open; no frame comes
    frozen_at = time.monotonic()
    time.sleep(4.0)
    cam.send_signal(signal.SIGCONT)
    resumed_at = time.monotonic()
    wait_for(lambda: any(e["event"] == "source_gap" for e in read_log(tmp_path)[1]), timeout=20, what="the gap record")
    count = len(read_log(tmp_path)[0])
    wait_for(lambda: len(read_log(tmp_path)[0]) >= count + 15, timeout=20, what="frames again")
    finish(proc, signal.SIGTERM)
    assert proc.returncode == 0, proc.stderr_text[-3000:]
    frames, events = read_log(tmp_path)
    check_invariant(frames, events, plc.rejects())
    gap = next(e for e in events if e["event"] == "source_gap")
    assert gap["t_start"] <= frozen_at + 0.2 and gap["seconds"] >= 3.5  # from the last good frame, the whole stall
    beats = plc.heartbeats()
    assert any(t > frozen_at + 1.5 for t in beats)  # it came back
    assert not [t for t in beats if frozen_at + 1.5 < t < resumed_at]  # none while the camera gave nothing
    kinds = [e["event"] for e in events]
    assert "not_inspecting" in kinds and kinds.index("not_inspecting") < kinds.index("source_gap")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_a_camera_stall_ends_the_station_cleanly(tmp_path, camera, plc, sig):
    cam, url = camera
    proc = _station(tmp_path, url, plc)
    cam.send_signal(signal.SIGSTOP)
    time.sleep(2.0)  # past the stall time: the reader is stuck in its read
    started = time.monotonic()
    finish(proc, sig, timeout=30)
    assert proc.returncode == 0, proc.stderr_text[-3000:]  # no native crash
    assert time.monotonic() - started < 15
    frames, events = read_log(tmp_path)
    check_invariant(frames, events, plc.rejects())
    assert events[-1]["event"] == "stopped" and events[-1]["captured"] == len(frames)


def test_a_camera_killed_and_restarted_is_one_gap_and_the_station_goes_on(tmp_path, camera, plc, line_video):
    cam, url = camera
    port = int(url.split(":")[2].split("/")[0])
    proc = _station(tmp_path, url, plc)
    cam.kill()
    cam.wait()
    time.sleep(2.0)
    again = subprocess.Popen([sys.executable, "-m", "edge.tools.camera_sim", "--video", str(line_video), "--port", str(port),
                              "--fps", "15"], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(e["event"] == "source_gap" for e in read_log(tmp_path)[1]), timeout=20, what="the gap")
        count = len(read_log(tmp_path)[0])
        wait_for(lambda: len(read_log(tmp_path)[0]) >= count + 10, timeout=20, what="frames again")
        finish(proc, signal.SIGTERM)
    finally:
        again.kill()
        again.wait()
    assert proc.returncode == 0, proc.stderr_text[-3000:]
    frames, events = read_log(tmp_path)
    check_invariant(frames, events, plc.rejects())
    gaps = [e for e in events if e["event"] == "source_gap"]
    assert len(gaps) == 1 and gaps[0]["seconds"] >= 1.5
    assert all(r["source"] == url for r in frames) and all(r["frame_id"] is not None for r in frames)
