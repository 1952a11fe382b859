"""What the station records: a JSON-lines results log and reject overlays within a disk quota.

    log = ResultsLog("runs/station/results.jsonl", max_bytes=50 << 20, backups=5)
    log.write({"seq": 12, "verdict": "reject", ...})      # appended and flushed at once
    overlays = OverlayStore("runs/station/rejects", quota_bytes=200 << 20)
    overlays.save(frame.image, prob >= 0.5, defects, "00000012")

The log is never truncated: when it passes `max_bytes` it is renamed to results.jsonl.1 (older
ones shift to .2, ...) and a new one begins. Overlays past the quota are deleted oldest first.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import cv2
import numpy as np

from edge.decision import Defect

log = logging.getLogger(__name__)


class ResultsLog:
    """Append-only JSON lines, flushed per record, rotated by size."""

    def __init__(self, path: str | Path, max_bytes: int, backups: int):
        self.path, self.max_bytes, self.backups = Path(path), max_bytes, backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a")
        self.lock = threading.Lock()  # verdicts and source events come from different threads

    def write(self, record: dict) -> None:
        with self.lock:
            self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.file.flush()
            if self.file.tell() >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        self.file.close()
        for i in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if i == self.backups:
                older.unlink(missing_ok=True)
            elif older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups:
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self.file = self.path.open("a")

    def close(self) -> None:
        self.file.close()


def overlay(image: np.ndarray, mask: np.ndarray, defects: list[Defect], scale: float = 1.0) -> np.ndarray:
    """The RGB frame with defect pixels tinted red and kept defects boxed, as BGR for imwrite;
    `scale` < 1 shrinks frame and mask first (thin defects stay visible)."""
    if scale != 1.0:
        size = (max(round(image.shape[1] * scale), 1), max(round(image.shape[0] * scale), 1))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 0
    tinted = image >> 1  # half the pixel, plus half of full red: integer maths, same values as 0.5 * x + 127
    tinted[..., 0] += 127
    out = cv2.cvtColor(np.where(mask[..., None], tinted, image), cv2.COLOR_RGB2BGR)
    for d in defects:
        x, y, w, h = (round(v * scale) for v in d.bbox)
        cv2.rectangle(out, (x - 2, y - 2), (x + w + 1, y + h + 1), (0, 0, 255) if d.kept else (0, 200, 255), 1)
    return out


class OverlayStore:
    """Reject frames with their overlay as JPEG files, oldest deleted past the quota."""

    def __init__(self, directory: str | Path, quota_bytes: int):
        self.dir, self.quota = Path(directory), quota_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self.files = sorted(self.dir.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
        self.used = sum(p.stat().st_size for p in self.files)

    def save(self, image: np.ndarray, mask: np.ndarray, defects: list[Defect], name: str) -> Path:
        path = self.dir / f"{name}.jpg"
        cv2.imwrite(str(path), overlay(image, mask, defects), [cv2.IMWRITE_JPEG_QUALITY, 85])
        self.files.append(path)
        self.used += path.stat().st_size
        while self.used > self.quota and len(self.files) > 1:
            oldest = self.files.pop(0)
            self.used -= oldest.stat().st_size
            oldest.unlink()
        return path
