"""Where the belt is, from the encoder counts the PLC reports: `encoder` timing's part tracking.

    belt = BeltTracker(counts_per_mm=10.0, modulus=2**32)
    belt.add(count, t)                  # every `ENC <count>` line, at the time it was read
    at = belt.position_at(t_capture)    # mm travelled when the frame was captured (None: unknown)
    belt.time_at(at + distance_mm)      # when the part reaches the gate (inf: belt stopped or reversing)

The raw counter wraps at `modulus` (a 32-bit counter by default) and may run backwards: a step of
more than half the modulus is read as a step back. Positions are in mm from the first count. The
time a position is reached is extrapolated from the velocity fitted (least squares) over the last
WINDOW_S of reports, which also evens out the jitter of when each line was read.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

WINDOW_S = 0.02  # velocity fit window
HISTORY_S = 5.0  # reports kept to place capture times
STOPPED_MM_S = 1.0  # slower than this, the belt is taken as stopped: no arrival time


class BeltTracker:
    """Belt position over time from raw encoder counts."""

    def __init__(self, counts_per_mm: float, modulus: int = 2**32):
        self.counts_per_mm, self.modulus = counts_per_mm, modulus
        self.history: deque[tuple[float, float]] = deque()  # (time, mm), oldest first
        self.last_count: int | None = None
        self.position = 0.0  # mm at the last report

    def add(self, count: int, t: float) -> None:
        """The counter read `count` at time `t` (times never go back)."""
        if self.last_count is not None:
            step = (count - self.last_count) % self.modulus
            if step > self.modulus // 2:
                step -= self.modulus  # backwards
            self.position += step / self.counts_per_mm
        self.last_count = count
        self.history.append((t, self.position))
        while self.history and self.history[0][0] < t - HISTORY_S:
            self.history.popleft()

    def velocity(self) -> float:
        """mm/s, fitted over the last WINDOW_S of reports (0 with fewer than two)."""
        if len(self.history) < 2:
            return 0.0
        t_last = self.history[-1][0]
        recent = [(t, x) for t, x in reversed(self.history) if t >= t_last - WINDOW_S]
        if len(recent) < 2:
            recent = list(self.history)[-2:]
        t, x = np.array(recent).T
        t = t - t.mean()
        spread = float(np.dot(t, t))
        return float(np.dot(t, x - x.mean()) / spread) if spread > 0 else 0.0

    def position_at(self, t: float) -> float | None:
        """mm travelled at time `t`: interpolated between reports, extrapolated past the last; None before
        the first report kept (no encoder yet, or a time older than HISTORY_S)."""
        if not self.history or t < self.history[0][0]:
            return None
        t_last, x_last = self.history[-1]
        if t >= t_last:
            return x_last + self.velocity() * (t - t_last)
        for (t0, x0), (t1, x1) in zip(reversed(list(self.history)[:-1]), reversed(self.history)):
            if t0 <= t <= t1:
                return x0 if t1 == t0 else x0 + (x1 - x0) * (t - t0) / (t1 - t0)
        return None  # not reached: t lies within the history

    def time_at(self, target_mm: float) -> float:
        """When the belt reaches `target_mm`: the last report's time when it is there already, else the
        fitted velocity's extrapolation; inf while the belt stands or runs backwards (or no report yet)."""
        if not self.history:
            return math.inf
        t_last, x_last = self.history[-1]
        if x_last >= target_mm:
            return t_last
        v = self.velocity()
        return t_last + (target_mm - x_last) / v if v > STOPPED_MM_S else math.inf
