import sys
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.sources import FileSource, FolderSource, LiveSource, open_source
from edge.sources import live as sources


def write_video(path, frames, fps=20.0):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f[..., ::-1])  # RGB -> BGR
    writer.release()
    return path


def test_video_file_gives_every_frame_in_order_as_rgb(tmp_path):
    frames = [np.full((48, 64, 3), (200, 10, 10), np.uint8) for _ in range(7)]
    source = open_source(str(write_video(tmp_path / "v.avi", frames)))
    assert isinstance(source, FileSource) and not source.live
    got = []
    while (frame := source.read()) is not None:
        got.append(frame)
    assert [f.seq for f in got] == list(range(7))
    assert all(b.t_capture >= a.t_capture for a, b in zip(got, got[1:]))
    assert got[0].image.shape == (48, 64, 3) and got[0].image[..., 0].mean() > 150  # red stays red


def test_realtime_file_is_paced_at_its_frame_rate(tmp_path):
    path = write_video(tmp_path / "v.avi", [np.zeros((16, 16, 3), np.uint8)] * 6, fps=50.0)
    source = FileSource(str(path), SourceConfig(uri="camera", realtime=True))
    times = [source.read().t_capture for _ in range(6)]
    assert times[-1] - times[0] >= 5 / 50 * 0.9


def test_folder_and_glob_hand_out_every_file_an_unreadable_one_with_its_error(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "1b.png").write_bytes(b"broken")
    source = open_source(str(tmp_path))
    assert isinstance(source, FolderSource)
    frames = [source.read() for _ in range(4)]
    assert source.read() is None
    assert [(f.seq, f.frame_id, Path(f.source).name) for f in frames] == [(0, 0, "0.png"), (1, 1, "1.png"),
                                                                         (2, 2, "1b.png"), (3, 3, "2.png")]
    assert [f.error for f in frames] == [None, None, "not a decodable image", None]
    assert frames[2].image is None and frames[3].image.shape == (8, 8, 3) and source.unreadable == 1
    assert len(open_source(str(tmp_path / "[02].png")).files) == 2


class FlakyCamera:
    """Stands in for a USB camera (none exists here): serves frames, fails after `fail_after`
    reads, refuses the next `refuse` reopen attempts, then serves again."""

    opened = 0

    def __init__(self, target, fail_after=5, refuse=2):
        FlakyCamera.opened += 1
        self.ok = FlakyCamera.opened == 1 or FlakyCamera.opened > 1 + refuse
        self.reads, self.fail_after = 0, fail_after if FlakyCamera.opened == 1 else 10**9

    def isOpened(self):
        return self.ok

    def set(self, prop, value):
        return True

    def read(self):
        time.sleep(0.002)
        self.reads += 1
        if self.reads > self.fail_after:
            return False, None
        return True, np.full((8, 8, 3), self.reads % 255, np.uint8)

    def release(self):
        pass


def test_live_source_reconnects_with_backoff_and_reports_the_gap():
    FlakyCamera.opened = 0
    settings = SourceConfig(uri="camera", reconnect_initial_s=0.01, reconnect_max_s=0.04)
    source = LiveSource(0, settings, opener=FlakyCamera)
    try:
        deadline = time.monotonic() + 5
        frames = []
        while not source.gaps and time.monotonic() < deadline:
            frames.append(source.read(timeout=0.5))
        after = source.read(timeout=2)
    finally:
        source.close()
    assert len(source.gaps) == 1 and FlakyCamera.opened == 4  # first open, two refusals, success
    gap = source.gaps[0]
    assert gap.reason == "read failed; reconnected"
    assert gap.t_end - gap.t_start >= 0.01 + 0.02  # backoff doubled between tries
    assert gap.t_start == max(f.t_capture for f in frames if f and f.t_capture < gap.t_end)  # from the last good frame
    assert after is not None and after.t_capture >= gap.t_end and after.frame_id > frames[-2].frame_id


def test_live_source_hands_out_the_newest_frame_never_a_stale_one():
    FlakyCamera.opened = 0
    source = LiveSource(0, SourceConfig(uri="camera"), opener=lambda t: FlakyCamera(t, fail_after=10**9))
    try:
        first = source.read(timeout=1)
        time.sleep(0.1)  # a slow consumer: the camera went on capturing
        second = source.read(timeout=1)
    finally:
        source.close()
    assert (first.seq, second.seq) == (0, 1)  # the station's numbering has no holes
    assert source.superseded > 5  # the frames overwritten meanwhile are counted
    assert time.monotonic() - second.t_capture < 0.05 and second.image[0, 0, 0] > first.image[0, 0, 0] + 5


class HangingCameras:
    """Stands in for a camera whose driver hangs (none exists here): the first capture gives a few
    frames, then its read blocks until `unblock` is set and fails; so does the first read of the
    others opened before that; later captures serve frames. Records which thread read and which
    released each capture."""

    def __init__(self):
        self.made, self.unblock = [], threading.Event()

    def __call__(self, target):
        camera = types.SimpleNamespace(reads=0, reader=None, releaser=None, hangs=not self.unblock.is_set())
        self.made.append(camera)
        unblock = self.unblock

        def read():
            camera.reader, camera.reads = threading.get_ident(), camera.reads + 1
            if camera.hangs and camera.reads > (3 if camera is self.made[0] else 0):
                unblock.wait()
                return False, None
            time.sleep(0.01)
            return True, np.zeros((8, 8, 3), np.uint8)

        camera.isOpened, camera.set, camera.read = lambda: True, lambda prop, value: True, read
        camera.release = lambda: setattr(camera, "releaser", threading.get_ident())
        return camera


def _until(condition, timeout=10.0, source=None):
    """Wait (reading the source, if given) until `condition()`; whether it came true."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        source.read(timeout=0.05) if source else time.sleep(0.05)
    return condition()


def test_stuck_reads_are_left_to_their_threads_and_the_camera_reopened(monkeypatch):
    monkeypatch.setattr(sources, "STUCK_GRACE_S", 0.2)
    cameras = HangingCameras()
    source = LiveSource(0, SourceConfig(uri="camera", stall_s=0.3, reconnect_initial_s=0.01), opener=cameras)
    try:
        assert _until(lambda: len(source.stuck) == sources.MAX_STUCK, source=source)
        assert source.stalled and not source.reconnecting  # given up: the systemd watchdog may restart us
        time.sleep(0.5)
        assert len(cameras.made) == sources.MAX_STUCK and not any(c.releaser for c in cameras.made)
        cameras.unblock.set()  # the hung calls return: each thread releases its own capture, a new one opens
        assert _until(lambda: source.gaps, source=source)
        frame = source.read(timeout=2)
    finally:
        source.close()
    assert [g.reason for g in source.gaps] == ["stalled; reconnected"] and frame is not None
    assert all(c.releaser == c.reader for c in cameras.made) and len(cameras.made) == sources.MAX_STUCK + 1


def test_close_returns_while_a_read_hangs_and_never_releases_it_from_another_thread():
    cameras = HangingCameras()
    source = LiveSource(0, SourceConfig(uri="camera", stall_s=30), opener=cameras)
    assert _until(lambda: cameras.made[0].reads > 3)
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < sources.CLOSE_WAIT_S + 1 and cameras.made[0].releaser is None
    cameras.unblock.set()
    assert _until(lambda: cameras.made[0].releaser is not None)
    assert cameras.made[0].releaser == cameras.made[0].reader


def test_a_missing_camera_is_a_clear_error():
    with pytest.raises(BadInput, match="source /dev/video9: cannot be opened"):
        open_source("/dev/video9")


def test_gstreamer_pipeline_is_refused_without_gstreamer_in_opencv():
    """pip's opencv-python-headless has no GStreamer; Jetson's system OpenCV has."""
    with pytest.raises(BadInput, match="GStreamer"):
        open_source("videotestsrc ! videoconvert ! appsink")


def test_missing_file_and_picamera2_are_clear_errors(tmp_path):
    with pytest.raises(BadInput, match="file not found"):
        open_source(str(tmp_path / "nope.mp4"))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(BadInput, match="not a video"):
        open_source(str(tmp_path / "bad.mp4"))
    with pytest.raises(BadInput, match="picamera2 is not installed"):
        open_source("picamera2")


def test_picamera2_reopens_after_a_failed_capture_and_records_the_gap(monkeypatch):
    """picamera2 and a Pi camera cannot exist here: a stand-in module with picamera2's calls
    (configure, create_video_configuration, start, capture_array, stop, close) takes its place."""
    opened = []

    class Picamera2:
        def __init__(self):
            opened.append(self)
            self.captures = 0

        def create_video_configuration(self, main):
            return main

        def configure(self, config):
            self.size = config["size"]

        def start(self):
            pass

        def capture_array(self):
            self.captures += 1
            if len(opened) == 1 and self.captures == 3:
                raise RuntimeError("Camera frontend has timed out!")
            return np.zeros((self.size[1], self.size[0], 3), np.uint8)

        def stop(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Picamera2))
    source = open_source("picamera2", SourceConfig(uri="picamera2", width=64, height=48, reconnect_initial_s=0.01))
    frames = [source.read() for _ in range(4)]
    source.close()
    assert [f.seq for f in frames] == [0, 1, 2, 3] and frames[0].image.shape == (48, 64, 3)
    assert len(opened) == 2 and len(source.gaps) == 1 and "Camera frontend has timed out" in source.gaps[0].reason
