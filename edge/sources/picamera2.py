"""The Raspberry Pi camera through picamera2 (Raspberry Pi OS's python3-picamera2)."""

from __future__ import annotations

from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.sources.base import Frame, Source


class Picamera2Source(Source):
    """The Raspberry Pi camera through picamera2 (Raspberry Pi OS)."""

    live = True

    def __init__(self, settings: SourceConfig):
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
