"""Where verdicts go besides the gate and the results log: reject overlays (results), MQTT (mqtt),
the operator page with /metrics (web). Each is a `Sink`, called by the output thread for every
recorded frame and isolated there: a sink that raises is logged and counted, never stops inspection.
The results log is not a sink: it is the station's record of what the gate did, written first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from edge.inference.decision import Verdict
    from edge.sources import Frame


class Sink(Protocol):
    """One output of recorded frames. `verdict` must not wait (a queue put, a reference kept, a
    bounded write); `close` is called once at the end of the run. A `sheddable` sink is skipped
    while the station is behind (edge.station.inspector: pipeline.shed_after_ms)."""

    sheddable: bool

    def verdict(self, frame: Frame, prob: np.ndarray | None, verdict: Verdict, record: dict) -> None: ...

    def close(self) -> None: ...
