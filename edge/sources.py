"""Video sources chosen by the string the user wrote, as jetson-inference's videoSource does.

    source = open_source("line.mp4")       # or "0", "/dev/video0", "rtsp://...", a GStreamer
    while (frame := source.read()) is not None:    #   pipeline ("... ! appsink"), "picamera2",
        frame.seq, frame.t_capture, frame.image    #   a folder or a glob of images
    source.close()

Every frame the station takes gets the next sequence number and its monotonic capture time, and
is RGB uint8, or has no image and says in `error` why it cannot be judged (an image file that is
truncated or not an image: the station rejects it, fail-safe). Files and folders are finite and
hand out every frame, unreadable files included. Live sources (cameras, streams) are read by a
thread that keeps only the newest frame, so a slow consumer never gets a stale buffered one; the
frames overwritten before anyone took them are counted in `superseded`. A failed read never
becomes a frame, and no frame for `stall_s` is a stall: the source reopens with backoff, and the
outage, from the last good frame to the next, is recorded in `gaps`. A capture is only ever
released by the thread that reads it, so `close()` never pulls one from under a read in progress.
"""

from __future__ import annotations

import atexit
import glob
import logging
import statistics
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.dataset import IMAGE_SUFFIXES
from edge.errors import BadInput

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://")


@dataclass
class Frame:
    """One captured image and when it was captured, or why there is no image to judge."""

    seq: int
    t_capture: float  # time.monotonic() seconds
    image: np.ndarray | None  # HxWx3 RGB uint8; None when `error` says why it cannot be judged
    source: str  # the image file of a folder or glob, else the source's name
    error: str | None = None
    frame_id: int | None = None  # the source's own number: index in the file or folder, frames the camera delivered


@dataclass
class Gap:
    """A time the source gave no frames, and why."""

    t_start: float
    t_end: float
    reason: str


@dataclass
class CameraSettings:
    """Capture settings applied to cameras when given (None: the device's own)."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    exposure: float | None = None
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 10.0
    stall_s: float | None = None  # live: no frame for this long is a stall (None: LiveSource.stall_s's rule)
    realtime: bool = False  # files: hand frames out at the file's frame rate, like a camera


class Source:
    """The interface: `read()` the next frame or None at the end; `close()`; `gaps`; `live`; `reconnecting`;
    `stalled`; `unreadable` (frames handed out with an error instead of an image)."""

    live = False
    reconnecting = False  # True while an outage is being handled (the source reopens with backoff)
    stalled = False  # True while no frame came for the stall time
    unreadable = 0

    def __init__(self, name: str):
        self.name = name
        self.gaps: list[Gap] = []
        self.next_seq = 0

    def _frame(self, image: np.ndarray | None, t_capture: float | None = None, frame_id: int | None = None,
               source: str | None = None, error: str | None = None) -> Frame:
        frame = Frame(self.next_seq, time.monotonic() if t_capture is None else t_capture, image,
                      self.name if source is None else source, error, frame_id)
        self.next_seq += 1
        return frame

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""


def _to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _jpeg_error(data: bytes) -> str | None:
    """Why a JPEG stream is incomplete (it never reaches its end-of-image marker), or None; bytes after
    the marker (padding, appended data) are ignored. OpenCV decodes a truncated JPEG on grey filler."""
    pos, n = 2, len(data)  # after the start-of-image marker
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return f"corrupt JPEG (no marker at byte {pos})"
        marker = data[pos + 1]
        if marker == 0xD9:
            return None
        if marker == 0xFF:  # a fill byte
            pos += 1
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        elif pos + 4 > n:
            break
        else:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker == 0xDA:  # start of scan: entropy-coded data follows
                pos = _scan_end(data, pos)
    return "truncated JPEG (no end-of-image marker)"


def _scan_end(data: bytes, pos: int) -> int:
    """Where the entropy-coded data from `pos` ends: at the next marker other than a restart marker
    (0xFF 0x00 is a stuffed 0xFF byte); len(data) when the data runs out first."""
    while (pos := data.find(b"\xff", pos)) >= 0 and pos + 1 < len(data):
        following = data[pos + 1]
        if following == 0 or 0xD0 <= following <= 0xD7:
            pos += 2
        elif following == 0xFF:  # a fill byte before a marker
            pos += 1
        else:
            return pos
    return len(data)


def _png_error(data: bytes) -> str | None:
    """Why a PNG stream is incomplete (its chunks end before the IEND chunk), or None."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        if data[pos + 4:pos + 8] == b"IEND":
            return None
        pos += 12 + int.from_bytes(data[pos:pos + 4], "big")  # length, type, data, CRC
    return "truncated PNG (no IEND chunk)"


def read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """The file's image as RGB uint8 and None, or None and why it cannot be judged."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read the file ({exc.strerror})"
    check = _jpeg_error if data.startswith(b"\xff\xd8") else _png_error if data.startswith(PNG_SIGNATURE) else None
    if check and (error := check(data)):
        return None, error
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:
        image = None
    return (None, "not a decodable image") if image is None else (_to_rgb(image), None)


class FolderSource(Source):
    """Images of a folder (sorted by name) or of a glob pattern. Every file is a frame, named by its
    path and numbered by its place in the list; one that cannot be decoded, or only partly (a
    truncated JPEG or PNG), is a frame with no image and the reason in `error`, counted in `unreadable`."""

    def __init__(self, pattern: str):
        super().__init__(pattern)
        path = Path(pattern)
        files = sorted(path.iterdir()) if path.is_dir() else sorted(Path(p) for p in glob.glob(pattern))
        self.files = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        if not self.files:
            raise BadInput(f"source {pattern}: no images found ({', '.join(IMAGE_SUFFIXES)})")
        self.position = 0

    def read(self) -> Frame | None:
        if self.position == len(self.files):
            return None
        path, index = self.files[self.position], self.position
        self.position += 1
        image, error = read_image(path)
        if error:
            self.unreadable += 1
            log.warning("source %s: %s: %s; the frame cannot be judged", self.name, path, error)
        return self._frame(image, frame_id=index, source=str(path), error=error)


class FileSource(Source):
    """A video file, every frame in order; `realtime` paces them at the file's frame rate."""

    def __init__(self, path: str, settings: CameraSettings):
        super().__init__(path)
        if not Path(path).is_file():
            raise BadInput(f"source {path}: file not found")
        self.capture = cv2.VideoCapture(path)
        if not self.capture.isOpened():
            raise BadInput(f"source {path}: not a video OpenCV can read")
        fps = self.capture.get(cv2.CAP_PROP_FPS) or 0
        self.period = 1.0 / fps if settings.realtime and fps > 0 else 0.0
        self.due = time.monotonic()
        self.index = 0

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok:
            return None
        if self.period:
            self.due += self.period
            time.sleep(max(self.due - time.monotonic(), 0))
        self.index += 1
        return self._frame(_to_rgb(image), frame_id=self.index - 1)

    def close(self) -> None:
        self.capture.release()


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

    live = True

    def __init__(self, target: int | str, settings: CameraSettings, opener: Callable = cv2.VideoCapture,
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


class Picamera2Source(Source):
    """The Raspberry Pi camera through picamera2 (Raspberry Pi OS)."""

    live = True

    def __init__(self, settings: CameraSettings):
        super().__init__("picamera2")
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise BadInput("source picamera2: picamera2 is not installed (Raspberry Pi OS: apt install python3-picamera2)") from None
        self.camera = Picamera2()
        size = (settings.width or 1280, settings.height or 720)
        self.camera.configure(self.camera.create_video_configuration(main={"size": size, "format": "RGB888"}))
        self.camera.start()

    def read(self) -> Frame | None:
        return self._frame(self.camera.capture_array()[..., ::-1].copy())  # RGB888 is BGR in memory

    def close(self) -> None:
        self.camera.stop()


def open_source(uri: str, settings: CameraSettings | None = None) -> Source:
    """The source the string names: camera index or /dev/videoN, URL, GStreamer pipeline,
    "picamera2", a folder or glob of images, or a video file."""
    settings = settings or CameraSettings()
    uri = str(uri).strip()
    if uri.isdigit():
        return LiveSource(int(uri), settings)
    if uri.startswith("/dev/"):  # /dev/video0, a udev name (/dev/inspection-camera), /dev/v4l/by-id/...
        return LiveSource(uri, settings, api=cv2.CAP_V4L2)
    if uri.startswith(URL_SCHEMES):
        return LiveSource(uri, settings, api=cv2.CAP_FFMPEG)
    if "!" in uri:
        if not has_gstreamer():
            raise BadInput("source: a GStreamer pipeline needs OpenCV built with GStreamer; pip's opencv wheels "
                           "have none (on Jetson use JetPack's system OpenCV)")
        return LiveSource(uri, settings, api=cv2.CAP_GSTREAMER)
    if uri == "picamera2":
        return Picamera2Source(settings)
    if Path(uri).is_dir() or any(c in uri for c in "*?["):
        return FolderSource(uri)
    return FileSource(uri, settings)
