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

WINDOW_S = 0.01  # the belt's line is fitted over this much of the reports
HISTORY_S = 5.0  # reports kept to place capture times
STOPPED_MM_S = 1.0  # slower than this, the belt is taken as stopped: no arrival time


class BeltTracker:
    """Belt position over time from raw encoder counts."""

    def __init__(self, counts_per_mm: float, modulus: int = 2**32):
        self.counts_per_mm, self.modulus = counts_per_mm, modulus
        self.history: deque[tuple[float, float]] = deque()  # (time, mm), oldest first
        self.last_count: int | None = None
        self.position = 0.0  # mm at the last report
        self.line = (0.0, 0.0, 0.0)  # (t0, x0, v) fitted to the last WINDOW_S of reports, at each report

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
        self.line = self._tail() if len(self.history) >= 2 else (t, self.position, 0.0)

    @staticmethod
    def _fit(samples: list[tuple[float, float]]) -> tuple[float, float, float]:
        """(t0, x0, v): the least-squares line x = x0 + v (t - t0) through `samples` (two or more; a
        few dozen at most, so plain Python: the gate thread does this at every report)."""
        n = len(samples)
        t0 = sum(t for t, _ in samples) / n
        x0 = sum(x for _, x in samples) / n
        spread = sum((t - t0) ** 2 for t, _ in samples)
        return t0, x0, sum((t - t0) * (x - x0) for t, x in samples) / spread if spread > 0 else 0.0

    def _tail(self) -> tuple[float, float, float]:
        """The line through the reports of the last WINDOW_S (at least the last two)."""
        t_last = self.history[-1][0]
        recent = []
        for t, x in reversed(self.history):
            if t < t_last - WINDOW_S and len(recent) >= 2:
                break
            recent.append((t, x))
        return self._fit(recent)

    def velocity(self) -> float:
        """mm/s, fitted over the last WINDOW_S of reports (0 with fewer than two)."""
        return self.line[2]

    def position_at(self, t: float) -> float | None:
        """mm travelled at time `t`, from the line fitted to the reports within WINDOW_S / 2 of it (past
        the last report: to the last WINDOW_S); None before the first report kept (no encoder yet, or a
        time older than HISTORY_S)."""
        if not self.history or t < self.history[0][0]:
            return None
        if len(self.history) == 1:
            return self.history[0][1]
        if t >= self.history[-1][0]:
            t0, x0, v = self.line
            return x0 + v * (t - t0)
        near = [(ti, xi) for ti, xi in self.history if abs(ti - t) <= WINDOW_S / 2]
        if len(near) < 2:  # a gap in the reports: between the two around t
            i = next(i for i, (ti, _) in enumerate(self.history) if ti > t)
            near = [self.history[i - 1], self.history[i]]
        t0, x0, v = self._fit(near)
        return x0 + v * (t - t0)

    def time_at(self, target_mm: float) -> float:
        """When the belt reaches `target_mm`, by the line fitted to the last WINDOW_S: the last report's time
        when it is there already; inf while the belt stands or runs backwards (or before two reports)."""
        if len(self.history) < 2:
            return math.inf
        t_last = self.history[-1][0]
        t0, x0, v = self.line
        x_last = x0 + v * (t_last - t0)
        if x_last >= target_mm:
            return t_last
        return t_last + (target_mm - x_last) / v if v > STOPPED_MM_S else math.inf
