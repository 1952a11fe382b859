"""Cameras and streams through OpenCV (camera index, /dev/video*, URLs, GStreamer pipelines): a
reader thread keeps the newest frame, a supervisor detects stalls from the last good frame and
reopens, and a capture is only ever released by the thread that reads it."""

from __future__ import annotations

import atexit
import logging
import statistics
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

import cv2
import numpy as np

from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.sources.base import Frame, Gap, Source, _to_rgb

log = logging.getLogger(__name__)


STALL_FLOOR_S = 2.0  # the automatic stall time is never shorter than this...
STALL_PERIODS = 5  # ...nor than this many frame periods of the measured frame rate
OPEN_TIMEOUT_S = 10.0  # FFMPEG (URLs): an open that got no answer by then fails
STUCK_GRACE_S = 2.0  # a call still running this long past its timeout is stuck: its thread is abandoned
MAX_STUCK = 3  # abandoned threads still inside a call; while there are this many, none is started
CLOSE_WAIT_S = 1.0  # close() waits this long for the threads, then leaves the stuck ones their capture
_LIVE: weakref.WeakSet[LiveSource] = weakref.WeakSet()


class _Reader:
    """A thread that owns one capture at a time: it opens it, reads it, and is the only one to release it."""

    def __init__(self, source: LiveSource, capture: cv2.VideoCapture | None = None):
        self.source, self.capture = source, capture
        self.call: tuple[str, float] | None = None  # (what, monotonic start) while inside open, read or release
        self.abandoned = False
        self.thread = threading.Thread(target=self._run, name=f"source {source.name}", daemon=True)

    def due(self, stall_s: float) -> tuple[str, float] | None:
        """The call in progress and when it should have returned by (its timeout plus STUCK_GRACE_S); None
        outside calls."""
        call = self.call
        if call is None:
            return None
        what, since = call
        return what, since + {"open": OPEN_TIMEOUT_S, "read": stall_s}.get(what, 0.0) + STUCK_GRACE_S

    def _call(self, what: str, function: Callable, failed=None):
        self.call = (what, time.monotonic())
        try:
            return function()
        except Exception as exc:  # a backend error is a failed open or read, handled like one
            log.warning("source %s: %s raised %s", self.source.name, what, exc)
            return failed
        finally:
            self.call = None

    def _run(self) -> None:
        source, settings = self.source, self.source.settings
        delay = settings.reconnect_initial_s
        try:
            while not (source.stopping or self.abandoned):
                if self.capture is None:
                    if source.wait_closed(delay):
                        break
                    self.capture = self._call("open", source.open_capture)
                    delay = min(delay * 2, settings.reconnect_max_s)
                    continue
                ok, image = self._call("read", self.capture.read, (False, None))
                if source.stopping or self.abandoned:
                    break
                if ok:
                    source.deliver(self, image)
                    delay = settings.reconnect_initial_s
                else:
                    source.read_failed()
                    self._call("release", self.capture.release)
                    self.capture = None
        finally:
            if self.capture is not None:
                self._call("release", self.capture.release)


class LiveSource(Source):
    """A camera or stream read by a thread that keeps the newest frame and reopens on failure or stall.

    A supervisor thread declares a stall when no frame came for `stall_s`, and abandons a reader
    stuck inside a call (past its timeout plus STUCK_GRACE_S): a fresh thread reopens the camera
    while the stuck one keeps its capture and releases it when its call returns (at most MAX_STUCK
    are left so). URLs are opened with FFMPEG's open and read timeouts (OPEN_TIMEOUT_S, stall_s),
    so a frozen stream fails its read and is reopened at the stall.

    `opener(target[, api[, params]])` returns an object with OpenCV's VideoCapture interface (isOpened,
    read, set, release); it is cv2.VideoCapture unless a test stands in for a camera that cannot exist here.
    """

    live = paced = True

    def __init__(self, target: int | str, settings: SourceConfig, opener: Callable = cv2.VideoCapture,
                 api: int | None = None):
        super().__init__(str(target))
        self.target, self.settings, self.opener, self.api = target, settings, opener, api
        self.lock = threading.Condition()
        self.intervals: deque[float] = deque(maxlen=50)  # between consecutive frames: the measured frame period
        capture = self.open_capture()
        if capture is None:
            raise BadInput(f"source {target}: cannot be opened (no such camera or stream, or it is busy)")
        self.newest: tuple[float, int, np.ndarray] | None = None  # (capture time, frame_id, BGR image) not yet taken
        self.stopping = False
        self.superseded = self.delivered = 0
        self.started_at = time.monotonic()
        self.last_frame_at: float | None = None  # monotonic time of the last good frame
        self.outage: str | None = None  # what began the outage in progress
        self.stalled = False
        self.stuck: list[_Reader] = []
        self.reader: _Reader | None = None
        self._start_reader(capture)
        self.supervisor = threading.Thread(target=self._supervise, name=f"source {target} supervisor", daemon=True)
        self.supervisor.start()
        _LIVE.add(self)

    @property
    def stall_s(self) -> float:
        """No frame for this long is a stall: settings.stall_s, else STALL_PERIODS frame periods (the median
        interval of the last 50 frames, or 1 / settings.fps before 5 came), and at least STALL_FLOOR_S."""
        if self.settings.stall_s is not None:
            return self.settings.stall_s
        with self.lock:
            period = statistics.median(self.intervals) if len(self.intervals) >= 5 else None
        period = period or (1.0 / self.settings.fps if self.settings.fps else 0.0)
        return max(STALL_FLOOR_S, STALL_PERIODS * period)

    @property
    def reconnecting(self) -> bool:
        """An outage (a failed read or a stall) is being handled: a reader is trying to get frames again."""
        return self.outage is not None and self.reader is not None

    def open_capture(self) -> cv2.VideoCapture | None:
        """A newly opened capture with the settings applied, or None."""
        if self.api is None:
            capture = self.opener(self.target)
        elif self.api == cv2.CAP_FFMPEG:
            capture = self.opener(self.target, self.api, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(OPEN_TIMEOUT_S * 1000),
                                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.stall_s * 1000)])
        else:
            capture = self.opener(self.target, self.api)
        if not capture.isOpened():
            capture.release()
            return None
        s = self.settings
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, s.width), (cv2.CAP_PROP_FRAME_HEIGHT, s.height),
                            (cv2.CAP_PROP_FPS, s.fps), (cv2.CAP_PROP_EXPOSURE, s.exposure)):
            if value is not None:
                capture.set(prop, value)
        return capture

    def wait_closed(self, timeout: float) -> bool:
        """Wait `timeout` seconds or until close(); whether the source is closed."""
        with self.lock:
            return self.lock.wait_for(lambda: self.stopping, timeout)

    def deliver(self, reader: _Reader, image: np.ndarray) -> None:
        """A good frame from `reader` ends the outage in progress and becomes the newest frame."""
        now = time.monotonic()
        with self.lock:
            if reader is not self.reader or self.stopping:
                return
            if self.outage is not None:
                self._end_outage(now, "reconnected")
            elif self.last_frame_at is not None:
                self.intervals.append(now - self.last_frame_at)
            self.last_frame_at = now
            self.superseded += self.newest is not None
            self.newest = (now, self.delivered, image)
            self.delivered += 1
            self.lock.notify_all()

    def read_failed(self) -> None:
        """A read failed: an outage begins, unless one is in progress."""
        with self.lock:
            if self.outage is None and not self.stopping:
                self.outage = "read failed"
                log.warning("source %s: read failed, reconnecting", self.name)

    def _end_outage(self, now: float, how: str) -> None:
        """Record the outage in progress as a gap from the last good frame (or the start) to `now`."""
        gap = Gap(self.started_at if self.last_frame_at is None else self.last_frame_at, now, f"{self.outage}; {how}")
        self.gaps.append(gap)
        self.outage, self.stalled = None, False
        log.warning("source %s: %s after %.2f s without frames", self.name, how, gap.t_end - gap.t_start)

    def _supervise(self) -> None:
        """Every tick: declare a stall, abandon a stuck reader, start a reader where there is none."""
        while not self.wait_closed(min(0.1, self.stall_s / 10)):
            stall_s, now = self.stall_s, time.monotonic()
            with self.lock:
                since = self.started_at if self.last_frame_at is None else self.last_frame_at
                if not self.stalled and now - since > stall_s:
                    self.stalled, self.outage = True, self.outage or "stalled"
                    log.warning("source %s: stalled, no frame for %.1f s (stall_s %g), reconnecting", self.name,
                                now - since, stall_s)
                self.stuck = [r for r in self.stuck if r.thread.is_alive()]
                due = self.reader.due(stall_s) if self.reader else None
                if due is not None and now > due[1]:
                    self.reader.abandoned = True
                    self.stuck.append(self.reader)
                    self.reader = None
                    log.warning("source %s: %s stuck past its timeout, left to its thread (%d stuck)%s", self.name, due[0],
                                len(self.stuck), "" if len(self.stuck) < MAX_STUCK else "; none started until one returns")
                if self.reader is None and len(self.stuck) < MAX_STUCK:
                    self._start_reader()

    def _start_reader(self, capture: cv2.VideoCapture | None = None) -> None:
        """A new current reader, with an opened capture or opening its own."""
        with self.lock:
            self.reader = _Reader(self, capture)
            self.reader.thread.start()

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet handed out; waits for it (None when closed or on timeout)."""
        with self.lock:
            self.lock.wait_for(lambda: self.stopping or self.newest is not None, timeout)
            if self.stopping or self.newest is None:
                return None
            (t_capture, frame_id, image), self.newest = self.newest, None
        return self._frame(_to_rgb(image), t_capture, frame_id)

    def readers(self) -> list[_Reader]:
        """The current reader and the stuck ones."""
        with self.lock:
            return [r for r in (self.reader, *self.stuck) if r is not None]

    def close(self) -> None:
        """Stop within about CLOSE_WAIT_S, recording an outage in progress. A thread still inside a call keeps
        its capture and releases it when the call returns (at exit, `_finish_calls` waits for that)."""
        with self.lock:
            if self.stopping:
                return
            if self.outage is not None:
                self._end_outage(time.monotonic(), "stopped")
            self.stopping = True
            self.lock.notify_all()
        deadline = time.monotonic() + CLOSE_WAIT_S
        readers = self.readers()
        for thread in (self.supervisor, *(r.thread for r in readers)):
            thread.join(max(deadline - time.monotonic(), 0))
        if busy := [r.call[0] for r in readers if r.thread.is_alive() and r.call]:
            log.warning("source %s: closed while %s still running; its thread releases the capture when it "
                        "returns", self.name, ", ".join(busy))


@atexit.register
def _finish_calls() -> None:
    """At exit, close the live sources and wait for calls still running until they should have returned:
    a thread that comes back from OpenCV while the interpreter finalizes is unwound through OpenCV's
    C++ frames and aborts the process ("terminate called without an active exception")."""
    for source in list(_LIVE):
        source.close()
        stall_s = source.stall_s
        for reader in source.readers():
            due = reader.due(stall_s)
            wait_s = max(due[1] - time.monotonic(), 0.2) if due else 0.2
            if due and reader.thread.is_alive() and wait_s > 1:
                log.warning("source %s: waiting up to %.0f s for a camera %s to return before exiting", source.name,
                            wait_s, due[0])
            reader.thread.join(wait_s)


def has_gstreamer() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines (pip's wheels cannot)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False
