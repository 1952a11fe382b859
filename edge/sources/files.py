"""Finite sources: a video file (every frame in order, optionally paced) and a folder or glob of
images (every file a frame; one that is truncated or not an image is a frame with `error`)."""

from __future__ import annotations

import glob
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.evaluation.dataset import IMAGE_SUFFIXES
from edge.sources.base import Frame, Source, _to_rgb

log = logging.getLogger(__name__)


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

    def __init__(self, path: str, settings: SourceConfig):
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
