"""Finite sources: a video file (every frame in order, optionally paced) and a folder or glob of
images (every file a frame; one that is truncated or not an image is a frame with `error`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2

from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.core.images import list_images, read_image_file
from edge.sources.base import Frame, Source, _to_rgb

log = logging.getLogger(__name__)


class FolderSource(Source):
    """Images of a folder (sorted by name) or of a glob pattern. Every file is a frame, named by its
    path and numbered by its place in the list; one that cannot be decoded, or only partly (a
    truncated JPEG or PNG), is a frame with no image and the reason in `error`, counted in `unreadable`."""

    def __init__(self, pattern: str):
        super().__init__(pattern)
        self.files = list_images(pattern)
        self.position = 0

    def read(self) -> Frame | None:
        if self.position == len(self.files):
            return None
        path, index = self.files[self.position], self.position
        self.position += 1
        image, error = read_image_file(path)
        if error:
            self.unreadable += 1
            log.warning("source %s: %s: %s; the frame cannot be judged", self.name, path, error)
        return self._frame(None if image is None else _to_rgb(image), frame_id=index, source=str(path), error=error)


class FileSource(Source):
    """A video file, every frame in order; `realtime` paces them at the file's frame rate."""

    def __init__(self, path: str, settings: SourceConfig):
        super().__init__(path)
        if not Path(path).is_file():
            raise BadInput(f"source {path}: file not found")
        self.capture = cv2.VideoCapture(path)
        if not self.capture.isOpened():
            raise BadInput(f"source {path}: not a video OpenCV can read")
        fps = self.capture.get(cv2.CAP_PROP_FPS) or 0
        self.period = 1.0 / fps if settings.realtime and fps > 0 else 0.0
        self.paced = bool(self.period)  # a camera stand-in: the station keeps the newest frames, as with one
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
