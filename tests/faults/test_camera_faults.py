"""Faults injected into real parts: the camera stand-in (edge.tools.camera_sim, an MJPEG-over-HTTP server
in its own process, read through OpenCV's FFMPEG backend) frozen with SIGSTOP, killed with SIGKILL
and restarted; a station-like process closing the source on SIGTERM, SIGINT or SIGHUP while the
stream is stalled; truncated and garbage image files in a folder source."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.config import SourceConfig
from edge.sources import LiveSource, open_source

ROOT = Path(__file__).resolve().parents[2]
FPS = 20
STALL_S = 1.0
SETTINGS = SourceConfig(uri="camera", stall_s=STALL_S, reconnect_initial_s=0.2, reconnect_max_s=1.0)


class Camera:
    """`python -m edge.tools.camera_sim` on 127.0.0.1 (port 0: any free one); its URL as it printed it."""

    def __init__(self, port: int = 0):
        command = [sys.executable, "-m", "edge.tools.camera_sim", "--port", str(port), "--fps", str(FPS)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        assert line.startswith("camera stand-in on http://127.0.0.1:"), line
        self.url = line.split()[-1]
        self.port = int(self.url.split(":")[2].split("/")[0])

    def signal(self, sig: int) -> float:
        """Send `sig`; the monotonic time it was sent."""
        self.process.send_signal(sig)
        return time.monotonic()

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()


@pytest.fixture
def cameras():
    """Starts stand-in cameras (`cameras(port)`) and ends them all after the test."""
    started = []

    def start(port: int = 0) -> Camera:
        started.append(Camera(port))
        return started[-1]

    yield start
    for camera in started:
        camera.end()


def frames_until(source: LiveSource, condition, at_least: int = 0, timeout: float = 30.0) -> list:
    """Read frames until `condition()` is true and `at_least` were read (`timeout`: generous); the frames."""
    frames, deadline = [], time.monotonic() + timeout
    while not (condition() and len(frames) >= at_least) and time.monotonic() < deadline:
        if (frame := source.read(timeout=0.05)) is not None:
            frames.append(frame)
    assert condition() and len(frames) >= at_least, "timed out"
    return frames


def test_a_frozen_camera_is_a_stall_from_its_last_good_frame(cameras, caplog):
    camera = cameras()
    source = open_source(camera.url, SETTINGS)
    try:
        before = frames_until(source, lambda: True, at_least=10)
        stopped_at = camera.signal(signal.SIGSTOP)  # the TCP connection stays open; no frames come
        frames_until(source, lambda: source.stalled)
        detected_at, last_good = time.monotonic(), source.last_frame_at
        assert source.reconnecting and not source.gaps
        time.sleep(max(stopped_at + 4.0 - time.monotonic(), 0))
        resumed_at = camera.signal(signal.SIGCONT)
        after = frames_until(source, lambda: source.gaps and not source.stalled, at_least=5)
    finally:
        source.close()
    assert STALL_S <= detected_at - last_good < STALL_S + 3.0  # seen at the stall time, not at a 30 s read timeout
    gap, = source.gaps
    assert gap.t_start == last_good and gap.t_start < stopped_at + 0.5  # from the last good frame...
    assert gap.t_end >= resumed_at and gap.t_end == after[0].t_capture  # ...to the next one
    assert [f.frame_id for f in before + after] == sorted({f.frame_id for f in before + after})
    assert gap.reason.endswith("; reconnected") and not source.reconnecting
    assert sum("stalled" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_a_camera_that_dies_and_comes_back_is_a_gap_and_a_reconnect(cameras):
    camera = cameras()
    source = open_source(camera.url, SETTINGS)
    try:
        frames_until(source, lambda: True, at_least=10)
        killed_at = camera.signal(signal.SIGKILL)
        frames_until(source, lambda: source.reconnecting and source.stalled)
        last_good = source.last_frame_at
        time.sleep(1.0)  # a few refused reopen attempts
        back = cameras(camera.port)  # power back: the same address
        back_at = time.monotonic()
        frames = frames_until(source, lambda: source.gaps, at_least=5)
    finally:
        source.close()
    gap, = source.gaps
    assert gap.t_start == last_good < killed_at + 0.5 and gap.t_end >= back_at and back.process.poll() is None
    assert gap.reason.endswith("; reconnected") and all(f.t_capture >= gap.t_end for f in frames)
    assert not source.reconnecting and not source.stalled


STATION = """
import signal, sys, time
from edge.core.config import SourceConfig
from edge.sources import open_source

source = open_source(sys.argv[1], SourceConfig(uri="camera", stall_s=float(sys.argv[2])))
stopping = []

def stop(signum, frame):  # as the station's handlers do: pipeline.stop() closes a live source
    started = time.monotonic()
    source.close()
    print(f"closed in {time.monotonic() - started:.2f} s", flush=True)
    stopping.append(signum)

for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, stop)
said = set()
while not stopping:
    frame = source.read(timeout=0.05)
    for word, true in (("frames", frame is not None), ("stalled", source.stalled)):
        if true and word not in said:
            print(word, flush=True)
            said.add(word)
"""


def line_reader(stream) -> queue.Queue:
    """The lines of `stream` as they come, read by a thread (get with a timeout: a hung station fails, not hangs)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


@pytest.mark.parametrize("sig, state", [(signal.SIGTERM, "read hangs"), (signal.SIGINT, "stalled"),
                                        (signal.SIGHUP, "read hangs")])
def test_closing_on_a_signal_while_the_camera_hangs_returns_promptly_without_a_crash(cameras, tmp_path, sig, state):
    """read hangs: the stream froze 1.5 s before the signal, well within stall_s (8 s), so close()
    comes while read() is inside FFMPEG; stalled: a reopen is waiting for the frozen server. Then the
    camera is killed, so that the hung call returns while the process exits: a thread that comes back
    into Python while the interpreter finalizes would abort it."""
    camera = cameras()
    script, stderr = tmp_path / "station.py", tmp_path / "stderr.txt"
    script.write_text(STATION)
    with stderr.open("w") as err:
        station = subprocess.Popen([sys.executable, str(script), camera.url, "8" if state == "read hangs" else "1"],
                                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                   stderr=err, text=True)
    lines = line_reader(station.stdout)
    try:
        assert lines.get(timeout=60) == "frames\n"
        camera.signal(signal.SIGSTOP)
        if state == "read hangs":
            time.sleep(1.5)
        elif state == "stalled":
            assert lines.get(timeout=60) == "stalled\n"
            time.sleep(0.5)
        station.send_signal(sig)
        closed = lines.get(timeout=60)
        camera.signal(signal.SIGKILL)  # the hung call returns now, while the station exits
        station.wait(timeout=60)
    finally:
        station.kill()
    err = stderr.read_text()
    assert station.returncode == 0, f"exit status {station.returncode}: {err[-2000:]}"
    assert closed.startswith("closed in ") and float(closed.split()[2]) < 2.5, closed
    assert "terminate called" not in err and "Traceback" not in err, err[-2000:]


def _encode(suffix: str, image: np.ndarray) -> bytes:
    return cv2.imencode(suffix, image[..., ::-1])[1].tobytes()  # RGB -> BGR


def test_truncated_and_garbage_images_are_frames_with_their_error_in_order(tmp_path):
    """A truncated JPEG decodes on grey filler (a defect in the missing part would be passed): it must
    come with an error and no image, like a truncated PNG and files that are not images at all."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), np.uint8), (7, 7), 2)
    jpeg, png = _encode(".jpg", image), _encode(".png", image)
    files = {"00_good.jpg": jpeg, "01_truncated.jpg": jpeg[:len(jpeg) * 2 // 3], "02_padded.jpg": jpeg + b"\0" * 64,
             "03_truncated.png": png[:-30], "04_good.png": png, "05_garbage.jpg": rng.bytes(2000),
             "06_garbage.png": b"\x89PNG\r\n\x1a\n" + rng.bytes(500), "07_empty.jpg": b"",
             "08_header_only.jpg": jpeg[:300], "09_good.jpg": jpeg}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert cv2.imread(str(tmp_path / "01_truncated.jpg")) is not None  # what OpenCV alone would judge
    source = open_source(str(tmp_path / "*.*"))
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert [f.source for f in frames] == [str(tmp_path / name) for name in files]
    assert [(f.seq, f.frame_id) for f in frames] == [(i, i) for i in range(len(files))]
    errors = {Path(f.source).name: f.error for f in frames}
    assert errors == {"00_good.jpg": None, "01_truncated.jpg": "truncated JPEG (no end-of-image marker)",
                      "02_padded.jpg": None, "03_truncated.png": "truncated PNG (no IEND chunk)", "04_good.png": None,
                      "05_garbage.jpg": "not a decodable image", "06_garbage.png": "truncated PNG (no IEND chunk)",
                      "07_empty.jpg": "not a decodable image",
                      "08_header_only.jpg": "truncated JPEG (no end-of-image marker)", "09_good.jpg": None}
    assert all((f.image is None) == (f.error is not None) for f in frames) and source.unreadable == 6
    assert np.abs(frames[4].image.astype(int) - image).max() == 0  # the PNG: lossless, and RGB
