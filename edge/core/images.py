"""Image files: which files are images, listing them, and reading one whole. OpenCV decodes a
truncated JPEG on grey filler without a word, so a file is checked for its end before it is
decoded: a partial image is never judged (nor trained on).

    paths = list_images("frames/")               # or a glob: "frames/*.png"; sorted by name
    image, error = read_image_file(path)         # BGR (or gray) uint8 and None, or None and why not
"""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np

from edge.core.errors import BadInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_images(where: str | Path, hint: str = "") -> list[Path]:
    """The image files of a folder, or matching a glob pattern, sorted by name; BadInput when none."""
    path = Path(where)
    files = sorted(path.iterdir()) if path.is_dir() else sorted(Path(p) for p in glob.glob(str(where)))
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise BadInput(f"{where}: no images found (expected {', '.join(IMAGE_SUFFIXES)}{hint})")
    return images


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


def read_image_file(path: str | Path, flags: int = cv2.IMREAD_COLOR) -> tuple[np.ndarray | None, str | None]:
    """The file's image as OpenCV decodes it with `flags` and None, or None and why it cannot be used
    (unreadable, truncated, not an image)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"cannot read the file ({exc.strerror})"
    check = _jpeg_error if data.startswith(b"\xff\xd8") else _png_error if data.startswith(PNG_SIGNATURE) else None
    if check and (error := check(data)):
        return None, error
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    except cv2.error:
        image = None
    return (None, "not a decodable image") if image is None else (image, None)
