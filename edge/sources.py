"""Video sources chosen by the string the user wrote, as jetson-inference's videoSource does.

    source = open_source("line.mp4")       # or "0", "/dev/video0", "rtsp://...", a GStreamer
    while (frame := source.read()) is not None:    #   pipeline ("... ! appsink"), "picamera2",
        frame.seq, frame.t_capture, frame.image    #   a folder or a glob of images
    source.close()

Every frame the station takes gets the next sequence number and its monotonic capture time, and
is RGB uint8. Files and folders are finite and hand out every frame. Live sources (cameras,
streams) are read by a thread that keeps only the newest frame, so a slow consumer never gets a
stale buffered one; the frames overwritten before anyone took them are counted in `superseded`.
A failed live read never becomes a frame: the source reopens with backoff, and the outage is
recorded in `gaps`.
"""

from __future__ import annotations

import glob
import logging
import threading
import time
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
    """One captured image and when it was captured."""

    seq: int
    t_capture: float  # time.monotonic() seconds
    image: np.ndarray | None  # HxWx3 RGB uint8; None when it could not be read (then `error` says why)
    source: str  # where it came from: the image file, the camera or stream
    error: str | None = None
    frame_id: int | None = None  # the source's own number for it (index in a video, the camera's counter)


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
    realtime: bool = False  # files: hand frames out at the file's frame rate, like a camera


class Source:
    """The interface: `read()` the next frame or None at the end; `close()`; `gaps`; `live`; `reconnecting`."""

    live = False
    reconnecting = False  # True while an outage is being handled (the source reopens with backoff)

    def __init__(self, name: str):
        self.name = name
        self.gaps: list[Gap] = []
        self.next_seq = 0

    def _frame(self, image: np.ndarray, t_capture: float | None = None) -> Frame:
        frame = Frame(self.next_seq, time.monotonic() if t_capture is None else t_capture, image, self.name)
        self.next_seq += 1
        return frame

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""


class FolderSource(Source):
    """Images of a folder (sorted by name) or of a glob pattern; unreadable files are skipped."""

    def __init__(self, pattern: str):
        super().__init__(pattern)
        path = Path(pattern)
        files = sorted(path.iterdir()) if path.is_dir() else sorted(Path(p) for p in glob.glob(pattern))
        self.files = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        if not self.files:
            raise BadInput(f"source {pattern}: no images found ({', '.join(IMAGE_SUFFIXES)})")
        self.skipped: list[str] = []

    def read(self) -> Frame | None:
        while self.files:
            path = self.files.pop(0)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return self._frame(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            log.warning("source %s: %s is unreadable, skipped", self.name, path)
            self.skipped.append(str(path))
        return None


def _to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)


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

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok:
            return None
        if self.period:
            self.due += self.period
            time.sleep(max(self.due - time.monotonic(), 0))
        return self._frame(_to_rgb(image))

    def close(self) -> None:
        self.capture.release()


class LiveSource(Source):
    """A camera or stream read by a thread that keeps the newest frame and reopens on failure.

    `opener(target)` returns an object with OpenCV's VideoCapture interface (isOpened, read, set,
    release); it is cv2.VideoCapture unless a test stands in for a camera that cannot exist here.
    """

    live = True

    def __init__(self, target: int | str, settings: CameraSettings, opener: Callable = cv2.VideoCapture,
                 api: int | None = None):
        super().__init__(str(target))
        self.target, self.settings, self.opener, self.api = target, settings, opener, api
        self.capture = self._open()
        if self.capture is None:
            raise BadInput(f"source {target}: cannot be opened (no such camera or stream, or it is busy)")
        self.lock = threading.Condition()
        self.newest: tuple[float, np.ndarray] | None = None  # (capture time, BGR image) not yet taken
        self.stopping = False
        self.outages = self.superseded = 0
        self.thread = threading.Thread(target=self._grab, name=f"source {target}", daemon=True)
        self.thread.start()

    def _open(self):
        capture = self.opener(self.target) if self.api is None else self.opener(self.target, self.api)
        if not capture.isOpened():
            capture.release()
            return None
        s = self.settings
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, s.width), (cv2.CAP_PROP_FRAME_HEIGHT, s.height),
                            (cv2.CAP_PROP_FPS, s.fps), (cv2.CAP_PROP_EXPOSURE, s.exposure)):
            if value is not None:
                capture.set(prop, value)
        return capture

    def _grab(self) -> None:
        while not self.stopping:
            ok, image = self.capture.read() if self.capture is not None else (False, None)
            if ok:
                with self.lock:
                    self.superseded += self.newest is not None
                    self.newest = (time.monotonic(), image)
                    self.lock.notify_all()
                continue
            self._reconnect()

    def _reconnect(self) -> None:
        started, delay = time.monotonic(), self.settings.reconnect_initial_s
        self.outages += 1
        log.warning("source %s: read failed, reconnecting", self.name)
        if self.capture is not None:
            self.capture.release()
        self.capture = None
        while not self.stopping:
            time.sleep(delay)
            self.capture = self._open()
            if self.capture is not None:
                break
            delay = min(delay * 2, self.settings.reconnect_max_s)
        gap = Gap(started, time.monotonic(), "read failed; reconnected" if self.capture else "read failed; stopped")
        self.gaps.append(gap)
        log.warning("source %s: back after %.2f s", self.name, gap.t_end - gap.t_start)

    @property
    def reconnecting(self) -> bool:
        """An outage began (a read failed) and has not ended yet."""
        return self.outages > len(self.gaps)

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet handed out; waits for it (None when closed or on timeout)."""
        with self.lock:
            self.lock.wait_for(lambda: self.stopping or self.newest is not None, timeout)
            if self.stopping or self.newest is None:
                return None
            (t_capture, image), self.newest = self.newest, None
        return self._frame(_to_rgb(image), t_capture)

    def close(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        self.thread.join(timeout=5)
        if self.capture is not None:
            self.capture.release()


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
