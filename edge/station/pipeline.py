"""Capture, inference and decision/output, each in its own thread, joined by bounded queues.

    pipeline = Pipeline(source, infer=segment, decide=judge, record=write, on_capture=ledger.add, queue_size=2)
    # infer(frame) -> prob; decide(frame, prob, timing, reason) -> Verdict; record(frame, prob, verdict) -> rejected
    pipeline.run(status=print)     # until the source ends, max_frames, or pipeline.stop()

With `streams` > 1 that many inference threads take frames from the one queue and call `infer`
at once (each must reach its own interpreter): on large frames two interpreters of one thread
each keep two cores busier than one of two threads. Records may then come out of capture order.

Files and folders hand every frame through in order. For paced sources (cameras, streams, a
video played at its frame rate) the queue to inference keeps the newest frames: when inference
falls behind, the oldest waiting frame is dropped, and a waiting frame that could no longer be
judged within `deadline_s` of its capture (its age plus the median inference time) is skipped
for the newer one behind it, so the CPU goes to frames that can still make their deadline. A
dropped or skipped frame is counted and still reaches `decide` with no probability map (prob
None) and the reason, so it is judged fail-safe (rejected), never silently passed. So is a frame whose image could not be read
(`frame.error`) and one whose inference raised. `stop()` (SIGTERM, SIGINT, SIGHUP) stops
capture; the frames already taken are finished and recorded before `run` returns. A stage that
crashes (bad input such as an ignore mask of the wrong size) stops the run and `run` raises its
error; the frames it left are the caller's to account for (edge.station.run does, fail-safe).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.core.errors import BadInput
from edge.inference.decision import Verdict
from edge.sources import Frame, Gap, Source

log = logging.getLogger(__name__)

_END = object()
WINDOW = 5000  # latencies kept for the percentiles: the last few minutes, in bounded memory for months-long runs


@dataclass
class Stats:
    """Counters and latencies of one run."""

    started: float = field(default_factory=time.monotonic)
    captured: int = 0
    judged: int = 0
    rejects: int = 0
    dropped: int = 0
    infer_errors: int = 0  # frames whose inference raised (each rejected fail-safe)
    first_verdict: float | None = None
    last_verdict: float | None = None
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))  # capture -> verdict
    infer_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def fps(self) -> float:
        """Frames judged per second, from the start to the last verdict (or now, while running)."""
        elapsed = (self.last_verdict or time.monotonic()) - self.started
        return self.judged / elapsed if elapsed > 0 else 0.0

    def steady_fps(self) -> float:
        """Frames judged per second from the first verdict to the last: start-up and warm-up left out."""
        span = (self.last_verdict or 0.0) - (self.first_verdict or 0.0)
        return (self.judged - 1) / span if self.judged > 1 and span > 0 else 0.0

    def percentile(self, values: deque[float], q: float) -> float:
        """The q-th percentile of the last WINDOW values (NaN before the first)."""
        return float(np.percentile(values, q)) if values else float("nan")

    def ms(self, values: deque[float], q: float) -> float | None:
        """The q-th percentile rounded for a record, None before the first value."""
        return round(self.percentile(values, q), 2) if values else None

    def line(self) -> str:
        """The one-line live status."""
        return (f"{self.fps():6.1f} fps | latency p50 {self.percentile(self.latency_ms, 50):6.1f} ms "
                f"p99 {self.percentile(self.latency_ms, 99):6.1f} ms | frames {self.judged} | "
                f"rejects {self.rejects} | drops {self.dropped}")


@dataclass
class RunSummary:
    """A run's figures, as the `stopped` record at the end of the results log also holds them."""

    captured: int
    frames: int
    rejects: int
    dropped: int
    fps: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    inference_p50_ms: float | None
    gate: dict[str, int]

    @classmethod
    def of(cls, stats: Stats, gate: dict[str, int]) -> RunSummary:
        return cls(stats.captured, stats.judged, stats.rejects, stats.dropped, round(stats.fps(), 2),
                   stats.ms(stats.latency_ms, 50), stats.ms(stats.latency_ms, 99), stats.ms(stats.infer_ms, 50), gate)


class Pipeline:
    """Threads: capture -> infer (`streams` of them) -> decide + record."""

    def __init__(self, source: Source, infer: Callable[[Frame], Any],
                 decide: Callable[[Frame, Any, dict[str, float], str], Verdict],
                 record: Callable[[Frame, Any, Verdict], bool], on_gap: Callable[[Gap], None] = lambda gap: None,
                 on_capture: Callable[[Frame], None] = lambda frame: None,
                 queue_size: int = 2, max_frames: int | None = None, deadline_s: float = math.inf,
                 streams: int = 1):
        self.source, self.infer, self.decide, self.record = source, infer, decide, record
        self.streams = streams
        self.deadline_s = deadline_s
        self.on_gap, self.on_capture = on_gap, on_capture
        self.max_frames = max_frames
        self.to_infer: queue.Queue = queue.Queue(queue_size)
        self.to_output: queue.Queue = queue.Queue(max(queue_size, 64))
        self.stopping = threading.Event()
        self.stats = Stats()
        self.errors: list[BaseException] = []

    def stop(self) -> None:
        """Stop taking frames; those already taken are finished."""
        self.stopping.set()
        if self.source.live:
            self.source.close()  # wakes a read() waiting for the next frame

    def _guarded(self, stage: Callable[[], None], downstream: queue.Queue | None) -> Callable[[], None]:
        def body():
            try:
                stage()
            except BaseException as exc:  # a crashed stage must not leave the others waiting forever
                self.errors.append(exc)
                self.stopping.set()
            finally:
                if downstream is not None:
                    self._put(downstream, _END)
        return body

    def _get(self, q: queue.Queue):
        """Blocking get that returns _END when another stage has crashed and nothing is left."""
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.errors:
                    return _END

    def _put(self, q: queue.Queue, item) -> None:
        """Blocking put that gives up only when another stage has crashed."""
        while not self.errors:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _capture(self) -> None:
        gaps_seen = 0
        while not self.stopping.is_set():
            frame = self.source.read()
            for gap in self.source.gaps[gaps_seen:]:
                self.on_gap(gap)
            gaps_seen = len(self.source.gaps)
            if frame is None:
                return
            self.on_capture(frame)
            self.stats.captured += 1
            if not self.source.paced:
                self._put(self.to_infer, frame)
            else:
                while True:
                    try:
                        self.to_infer.put_nowait(frame)
                        break
                    except queue.Full:
                        try:
                            oldest = self.to_infer.get_nowait()
                        except queue.Empty:
                            continue
                        self._drop(oldest, "not judged: dropped, inference fell behind")
            if self.max_frames and self.stats.captured >= self.max_frames:
                return

    def _drop(self, frame: Frame, reason: str) -> None:
        self.stats.dropped += 1
        self.to_output.put((frame, None, {}, reason))

    def _too_late(self, frame: Frame) -> bool:
        """A paced source's frame that a newer one waits behind, and that could not be judged by its deadline."""
        if not self.source.paced or self.to_infer.empty() or not self.stats.infer_ms:
            return False
        return time.monotonic() - frame.t_capture + self.stats.percentile(self.stats.infer_ms, 50) / 1000 > self.deadline_s

    def _inference(self) -> None:
        while (frame := self._get(self.to_infer)) is not _END:
            if self._too_late(frame):
                self._drop(frame, "not judged: skipped for a newer frame, it could not be judged by its deadline")
                continue
            if frame.error is not None:
                self.to_output.put((frame, None, {}, f"not judged: {frame.error}"))
                continue
            start = time.monotonic()
            try:
                result, reason = self.infer(frame), ""
            except BadInput:
                raise
            except Exception as exc:  # one frame's failure is that frame's fail-safe reject, not the station's end
                self.stats.infer_errors += 1
                if self.stats.infer_errors == 1 or self.stats.infer_errors % 1000 == 0:
                    log.exception("inference failed on frame %d (%d frames so far)", frame.seq, self.stats.infer_errors)
                result, reason = None, f"not judged: inference failed ({exc!r})"
            end = time.monotonic()
            self.stats.infer_ms.append((end - start) * 1000)
            self.to_output.put((frame, result, {"queue_ms": (start - frame.t_capture) * 1000,
                                                "infer_ms": (end - start) * 1000}, reason))

    def _output(self) -> None:
        ends = 0
        while ends < 1 + self.streams:  # capture's drops and each inference thread's results end with _END
            item = self._get(self.to_output)
            if item is _END:
                ends += 1
                continue
            verdict = self.decide(*item)
            frame, prob = item[0], item[1]
            now = time.monotonic()
            self.stats.latency_ms.append((now - frame.t_capture) * 1000)
            self.stats.first_verdict = self.stats.first_verdict or now
            self.stats.last_verdict = now
            self.stats.judged += 1
            self.stats.rejects += bool(self.record(frame, prob, verdict))

    def run(self, status: Callable[[Stats], None] | None = None, interval: float = 1.0) -> Stats:
        """Run until the source ends, `max_frames` or `stop()`; calls `status` every `interval` s."""
        capture = threading.Thread(target=self._guarded(self._capture, None), name="capture")
        inference = [threading.Thread(target=self._guarded(self._inference, self.to_output), name=f"inference{i}")
                     for i in range(self.streams)]
        output = threading.Thread(target=self._guarded(self._output, None), name="output")
        for thread in (output, *inference, capture):
            thread.start()
        while capture.is_alive():
            capture.join(interval)
            if status:
                status(self.stats)
        for _ in inference:
            self._put(self.to_infer, _END)
        self._put(self.to_output, _END)  # capture's end, after all its drops
        for thread in inference:
            thread.join()
        output.join()
        if status:
            status(self.stats)
        if self.errors:
            raise self.errors[0]
        return self.stats
