"""The Raspberry Pi camera through picamera2 (Raspberry Pi OS's python3-picamera2)."""

from __future__ import annotations

import logging
import threading
import time

from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.sources.base import Frame, Gap, Source

log = logging.getLogger(__name__)


class Picamera2Source(Source):
    """The Raspberry Pi camera through picamera2. A capture that fails (ribbon cable, driver) closes
    the camera and opens it again with backoff; the outage is recorded in `gaps`, never a frame."""

    live = paced = True

    def __init__(self, settings: SourceConfig):
        super().__init__("picamera2")
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise BadInput("source picamera2: picamera2 is not installed (Raspberry Pi OS: apt install python3-picamera2)") from None
        self.settings, self.opener = settings, Picamera2
        self.closed = threading.Event()
        try:
            self.camera = self._open()
        except Exception as exc:  # noqa: BLE001 (libcamera raises many kinds)
            raise BadInput(f"source picamera2: cannot be opened ({exc})") from None
        self.delivered = 0

    def _open(self):
        camera = self.opener()
        size = (self.settings.width or 1280, self.settings.height or 720)
        camera.configure(camera.create_video_configuration(main={"size": size, "format": "RGB888"}))
        camera.start()
        return camera

    def read(self) -> Frame | None:
        while not self.closed.is_set():
            try:
                image = self.camera.capture_array()[..., ::-1].copy()  # RGB888 is BGR in memory
            except Exception as exc:  # noqa: BLE001
                self._reopen(exc)
                continue
            self.delivered += 1
            return self._frame(image, frame_id=self.delivered)
        return None

    def _reopen(self, error: Exception) -> None:
        started, delay = time.monotonic(), self.settings.reconnect_initial_s
        log.warning("source picamera2: capture failed (%s), reopening", error)
        self.reconnecting = True
        while not self.closed.is_set():
            try:
                self.camera.close()
            except Exception:  # noqa: BLE001 (it is being replaced)
                pass
            try:
                self.camera = self._open()
                break
            except Exception as exc:  # noqa: BLE001
                log.warning("source picamera2: reopening failed (%s); again in %.1f s", exc, delay)
                self.closed.wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)
        self.reconnecting = False
        self.gaps.append(Gap(started, time.monotonic(), f"capture failed ({error}); reopened"))

    def close(self) -> None:
        self.closed.set()
        try:
            self.camera.stop()
        except Exception:  # noqa: BLE001 (a camera that failed may refuse to stop)
            log.warning("source picamera2: the camera did not stop cleanly")
