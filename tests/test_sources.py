import time

import cv2
import numpy as np
import pytest

from edge.errors import BadInput
from edge.sources import CameraSettings, FileSource, FolderSource, LiveSource, open_source


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
    source = FileSource(str(path), CameraSettings(realtime=True))
    times = [source.read().t_capture for _ in range(6)]
    assert times[-1] - times[0] >= 5 / 50 * 0.9


def test_folder_and_glob_skip_unreadable_files(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "1b.png").write_bytes(b"broken")
    source = open_source(str(tmp_path))
    assert isinstance(source, FolderSource)
    assert [source.read().seq for _ in range(3)] == [0, 1, 2] and source.read() is None
    assert source.skipped == [str(tmp_path / "1b.png")]
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
    settings = CameraSettings(reconnect_initial_s=0.01, reconnect_max_s=0.04)
    source = LiveSource(0, settings, opener=FlakyCamera)
    try:
        deadline = time.monotonic() + 5
        while not source.gaps and time.monotonic() < deadline:
            source.read(timeout=0.5)
        after = source.read(timeout=2)
    finally:
        source.close()
    assert source.outages == 1 and FlakyCamera.opened == 4  # first open, two refusals, success
    gap = source.gaps[0]
    assert gap.t_end - gap.t_start >= 0.01 + 0.02  # backoff doubled between tries
    assert after is not None and after.t_capture >= gap.t_end


def test_live_source_hands_out_the_newest_frame_never_a_stale_one():
    FlakyCamera.opened = 0
    source = LiveSource(0, CameraSettings(), opener=lambda t: FlakyCamera(t, fail_after=10**9))
    try:
        first = source.read(timeout=1)
        time.sleep(0.1)  # a slow consumer: the camera went on capturing
        second = source.read(timeout=1)
    finally:
        source.close()
    assert (first.seq, second.seq) == (0, 1)  # the station's numbering has no holes
    assert source.superseded > 5  # the frames overwritten meanwhile are counted
    assert time.monotonic() - second.t_capture < 0.05 and second.image[0, 0, 0] > first.image[0, 0, 0] + 5


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
