"""What the station records: a JSON-lines results log and reject overlays within a disk quota.

    log = ResultsLog("runs/station/results.jsonl", max_bytes=50 << 20, backups=5)
    log.write({"seq": 12, "verdict": "reject", ...})      # handed to the writer thread, never waits
    overlays = OverlayStore("runs/station/rejects", quota_bytes=200 << 20, threshold=0.5)
    overlays.verdict(frame, prob, verdict, record)      # a Sink: SEQ.jpg when the gate did not accept

The log is written by a thread of its own, one record per write() system call, so the gate and
the pipeline never wait for a disk (a slow SD card delays no reject). It is never truncated: when
it passes `max_bytes` it is renamed to results.jsonl.1 (older ones shift to .2, ...) and a new
one begins. A disk that refuses a write (full, out of descriptors, I/O error) degrades, it never
stops the station: a partly written line is cut off again, records wait in memory (at most
`buffered_max`, the oldest dropped and counted past that) and are written, in order, once the disk
takes them; `state()` tells the page. Overlays past the quota are deleted oldest first; one that
cannot be written pauses overlays for a while instead of failing the frame.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.core.errors import BadInput
from edge.core.state import OverlayState, WriterState
from edge.inference.decision import Defect, Verdict
from edge.sources.base import Frame

log = logging.getLogger(__name__)

RETRY_S = (0.2, 5.0)  # first and longest wait before a failed disk write is tried again


class ResultsLog:
    """Append-only JSON lines, written by its own thread, flushed per record, rotated by size."""

    def __init__(self, path: str | Path, max_bytes: int, backups: int, buffered_max: int = 100_000,
                 tee: Callable[[dict], None] | None = None):
        self.path, self.max_bytes, self.backups = Path(path), max_bytes, backups
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd: int | None = self._open()
        except OSError as exc:
            raise BadInput(f"output.results_log: cannot write {path} ({exc.strerror})") from None
        self.size = os.fstat(self.fd).st_size
        self.queue: deque[dict] = deque()
        self.buffered_max, self.tee = buffered_max, tee
        self.cond = threading.Condition()
        self.written = self.lost = self.unreported_lost = 0
        self.error: str | None = None  # why the disk refuses writes, while it does
        self.closing = False
        self.thread = threading.Thread(target=self._loop, name="results log", daemon=True)
        self.thread.start()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, record: dict) -> None:
        """Queue one record (from any thread; `tee` gets it at once); past `buffered_max` waiting, the oldest
        is dropped and counted."""
        if self.tee is not None:
            self.tee(record)
        with self.cond:
            if len(self.queue) >= self.buffered_max:
                self.queue.popleft()
                self.lost += 1
                self.unreported_lost += 1
            self.queue.append(record)
            self.cond.notify()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every record handed in so far is written; False if the disk refused for `timeout` s."""
        with self.cond:
            return self.cond.wait_for(lambda: not self.queue, timeout)

    def state(self) -> WriterState:
        """For the page, /metrics and /healthz: whether records reach the disk, and how many wait."""
        return WriterState(self.error is None, self.error, len(self.queue), self.written, self.lost)

    def _loop(self) -> None:
        delay = RETRY_S[0]
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.queue or self.closing)
                if not self.queue:
                    return
                if self.unreported_lost and self.error is None:
                    self.queue.appendleft({"event": "records_lost", "count": self.unreported_lost,
                                           "reason": "the disk refused writes for longer than the memory buffer lasts"})
                    self.unreported_lost = 0
                record = self.queue[0]
            try:
                self._append(json.dumps(record, separators=(",", ":")).encode() + b"\n")
            except OSError as exc:
                self._failed(exc)
                with self.cond:
                    if self.closing and time.monotonic() >= self.close_by:
                        return
                    self.cond.wait(delay)
                delay = min(delay * 2, RETRY_S[1])
                continue
            if self.size >= self.max_bytes:
                try:
                    self._rotate()
                except OSError as exc:  # the record is written; rotation is tried again after the next one
                    self._failed(exc)
            with self.cond:
                if self.queue and self.queue[0] is record:
                    self.queue.popleft()
                self.written += 1
                self.cond.notify_all()
            if self.error is not None:
                log.warning("results log %s: writing again (%d records waiting)", self.path, len(self.queue))
                self.error, delay = None, RETRY_S[0]

    def _append(self, line: bytes) -> None:
        """One record in one write; a partial write is cut off so the log never holds a torn line."""
        if self.fd is None:
            self.fd = self._open()
            self.size = os.fstat(self.fd).st_size
        try:
            written = os.write(self.fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.size += written

    def _failed(self, exc: OSError) -> None:
        if self.error is None:
            log.error("results log %s: cannot write (%s); records wait in memory", self.path, exc.strerror or exc)
        self.error = f"{self.path}: {exc.strerror or exc}"

    def _rotate(self) -> None:
        fd, self.fd = self.fd, None
        os.close(fd)
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
        self.fd, self.size = self._open(), 0

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (waiting at most `timeout` s for a refusing disk), then close."""
        with self.cond:
            self.closing, self.close_by = True, time.monotonic() + timeout
            self.cond.notify_all()
        self.thread.join()
        if self.queue:
            log.error("results log %s: %d records could not be written (%s)", self.path, len(self.queue), self.error)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


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
    """Reject frames with their overlay as JPEG files, oldest deleted past the quota. A file that
    cannot be written (disk full, no descriptors) pauses overlays for PAUSE_S; nothing is raised."""

    PAUSE_S = 30.0
    sheddable = True  # a JPEG encode and a disk write per reject: the first work shed when behind

    def __init__(self, directory: str | Path, quota_bytes: int, threshold: float):
        self.dir, self.quota, self.threshold = Path(directory), quota_bytes, threshold
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.files = sorted(self.dir.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
            self.used = sum(p.stat().st_size for p in self.files)
        except OSError as exc:
            raise BadInput(f"output.overlays_dir: cannot use {directory} ({exc.strerror})") from None
        self.paused_until = 0.0
        self.error: str | None = None
        self.failures = 0

    def verdict(self, frame: Frame, prob: np.ndarray | None, verdict: Verdict, record: dict) -> None:
        """A Sink: every frame the gate did not accept, when it was judged, as SEQ.jpg."""
        if record["verdict"] != "accept" and prob is not None and frame.image is not None:
            self.save(frame.image, prob >= self.threshold, verdict.defects, f"{verdict.seq:08d}")

    def close(self) -> None:
        """Nothing is held open between frames."""

    def save(self, image: np.ndarray, mask: np.ndarray, defects: list[Defect], name: str) -> Path | None:
        """The overlay's path, or None when overlays are paused or this one could not be written."""
        if time.monotonic() < self.paused_until:
            return None
        path = self.dir / f"{name}.jpg"
        try:
            if not cv2.imwrite(str(path), overlay(image, mask, defects), [cv2.IMWRITE_JPEG_QUALITY, 85]):
                raise OSError(f"{path} not written")
            self.used += path.stat().st_size
            self.files.append(path)
            while self.used > self.quota and len(self.files) > 1:
                oldest = self.files.pop(0)
                self.used -= oldest.stat().st_size
                oldest.unlink()
        except (OSError, cv2.error) as exc:
            self.failures += 1
            self.paused_until = time.monotonic() + self.PAUSE_S
            self.error = str(exc)
            log.warning("overlays %s: %s; paused for %.0f s", self.dir, exc, self.PAUSE_S)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return None
        self.error = None
        return path

    def state(self) -> OverlayState:
        return OverlayState(self.error is None, self.error, self.failures, time.monotonic() < self.paused_until)
