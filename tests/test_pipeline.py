import threading
import time

import numpy as np
import pytest

from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.inference.decision import Rules, judge
from edge.sources import Gap, LiveSource, Source
from edge.station.pipeline import Pipeline


class ListSource(Source):
    """A finite source of synthetic frames (a file stands in for it in test_station)."""

    def __init__(self, images):
        super().__init__("list")
        self.images = list(images)

    def read(self):
        return self._frame(self.images.pop(0)) if self.images else None


class FastCamera:
    """Stands in for a camera (none exists here): a new frame every `period` s (2 ms), forever."""

    period = 0.002

    def __init__(self, target):
        self.n = 0

    def isOpened(self):
        return True

    def set(self, prop, value):
        return True

    def read(self):
        time.sleep(self.period)
        self.n += 1
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self):
        pass


def _decide(frame, prob, timing, reason):
    return judge(frame.seq, frame.t_capture, prob, Rules(0.5, 1), timing, reason=reason)


def test_every_frame_of_a_file_is_judged_in_order():
    images = [np.full((8, 8, 3), 255 * (i % 2), np.uint8) for i in range(30)]
    verdicts = []
    infer = lambda f: f.image[..., 0] / 255.0  # noqa: E731  white frames are "defects"
    stats = Pipeline(ListSource(images), infer, _decide, lambda f, p, v: verdicts.append(v) or v.reject).run()
    assert [v.seq for v in verdicts] == list(range(30))
    assert [v.reject for v in verdicts] == [bool(i % 2) for i in range(30)]
    assert (stats.judged, stats.rejects, stats.dropped) == (30, 15, 0)


@pytest.mark.parametrize("streams", [1, 2])
def test_two_streams_infer_two_frames_at_once_and_every_frame_gets_one_record(streams):
    """Each inference waits until another is running beside it (or 0.2 s): with two streams the
    frames meet a partner, with one none does."""
    images = [np.full((8, 8, 3), 255 * (i % 2), np.uint8) for i in range(12)]
    running, met, lock = [0], [], threading.Lock()

    def infer(frame):
        with lock:
            running[0] += 1
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline and running[0] < 2:
            time.sleep(0.001)
        met.append(running[0] >= 2)
        time.sleep(0.01)  # the partner sees this one still running
        with lock:
            running[0] -= 1
        return frame.image[..., 0] / 255.0

    verdicts = []
    stats = Pipeline(ListSource(images), infer, _decide, lambda f, p, v: verdicts.append(v) or v.reject,
                     streams=streams).run()
    assert sorted(v.seq for v in verdicts) == list(range(12))
    assert all(v.reject == bool(v.seq % 2) for v in verdicts)
    assert (stats.judged, stats.rejects) == (12, 6)
    assert sum(met) >= 6 if streams == 2 else not any(met)  # most meet (a busy machine may keep one away)


def test_live_source_drops_the_oldest_when_inference_falls_behind_and_rejects_them():
    source = LiveSource(0, SourceConfig(uri="camera"), opener=FastCamera)
    verdicts = []

    def slow_infer(frame):
        time.sleep(0.02)
        return np.zeros(frame.image.shape[:2])

    pipeline = Pipeline(source, slow_infer, _decide, lambda f, p, v: verdicts.append(v) or v.reject, queue_size=2, max_frames=40)
    stats = pipeline.run()
    source.close()
    dropped = [v for v in verdicts if v.reason.startswith("not judged")]
    assert stats.captured == 40 and stats.judged == 40 and stats.dropped == len(dropped) > 0
    assert all(v.reject for v in dropped)  # fail-safe: never passed
    assert sorted(v.seq for v in verdicts) == list(range(40))  # every frame taken is accounted for
    judged = [v.seq for v in verdicts if not v.reason.startswith("not judged")]
    assert judged == sorted(judged)


@pytest.mark.parametrize("deadline_s", [0.03, float("inf")])
def test_a_waiting_frame_that_cannot_make_its_deadline_is_skipped_for_the_newer_one(deadline_s):
    class Camera(FastCamera):
        period = 0.015  # inference (20 ms) falls behind, and frames wait their turn in the queue

    source = LiveSource(0, SourceConfig(uri="camera"), opener=Camera)
    verdicts = []

    def infer(frame):
        time.sleep(0.02)
        return np.zeros(frame.image.shape[:2])

    stats = Pipeline(source, infer, _decide, lambda f, p, v: verdicts.append(v) or v.reject, queue_size=2,
                     max_frames=60, deadline_s=deadline_s).run()
    source.close()
    skipped = [v for v in verdicts if "skipped for a newer frame" in v.reason]
    assert sorted(v.seq for v in verdicts) == list(range(60)) and stats.judged == 60
    assert all(v.reject for v in skipped)  # fail-safe: never passed
    assert (len(skipped) > 0) == (deadline_s < 1)  # no deadline, nothing skipped


def test_gaps_are_reported_as_they_happen_and_a_crashed_stage_stops_the_run():
    class GappySource(ListSource):
        def read(self):
            if len(self.images) == 2:
                self.gaps.append(Gap(1.0, 2.0, "read failed; reconnected"))
            return super().read()

    gaps = []
    Pipeline(GappySource([np.zeros((4, 4, 3), np.uint8)] * 4), lambda f: np.zeros((4, 4)), _decide,
             lambda f, p, v: False, on_gap=gaps.append).run()
    assert [g.reason for g in gaps] == ["read failed; reconnected"]

    def broken(frame):
        raise RuntimeError("invoke failed")

    verdicts = []
    stats = Pipeline(ListSource([np.zeros((4, 4, 3), np.uint8)] * 5), broken, _decide,
                     lambda f, p, v: verdicts.append(v) or v.reject).run()
    assert [(v.seq, v.reject, v.reason) for v in verdicts] == [
        (i, True, "not judged: inference failed (RuntimeError('invoke failed'))") for i in range(5)]
    assert stats.infer_errors == 5

    def bad_input(frame):
        raise BadInput("preprocess.roi [0, 0, 9, 9] does not fit in the 4x4 frame")

    with pytest.raises(BadInput, match="does not fit"):
        Pipeline(ListSource([np.zeros((4, 4, 3), np.uint8)] * 50), bad_input, _decide, lambda f, p, v: False).run()


def test_a_frame_that_could_not_be_read_is_rejected_without_inference():
    class Unreadable(ListSource):
        def read(self):
            frame = super().read()
            if frame is not None and frame.seq == 1:
                frame.image, frame.error = None, "truncated JPEG"
            return frame

    seen, verdicts = [], []
    Pipeline(Unreadable([np.zeros((4, 4, 3), np.uint8)] * 3), lambda f: seen.append(f.seq) or np.zeros((4, 4)),
             _decide, lambda f, p, v: verdicts.append(v) or v.reject).run()
    assert seen == [0, 2]
    assert [(v.seq, v.reject, v.reason) for v in verdicts] == [
        (0, False, "clean"), (1, True, "not judged: truncated JPEG"), (2, False, "clean")]
