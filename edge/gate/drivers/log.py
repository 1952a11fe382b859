"""driver log: a dry run that logs what it would send."""

from __future__ import annotations

import logging

from edge.core.config import LogGateConfig
from edge.gate.protocol import Message

log = logging.getLogger(__name__)


class LogDriver:
    """Logs each reject and alarm (kept in `sent`); the PLC never answers, so with `ack_pattern` set every
    reject ends unacknowledged, as on a line whose PLC is silent."""

    def __init__(self, config: LogGateConfig):
        self.cfg, self.port, self.acks = config, config.port, config.ack_pattern is not None
        self.sent: list[str] = []

    def open(self) -> None:
        pass

    def reject(self, seq: int, lane: int, part: int = -1) -> None:
        self.sent.append(f"reject {seq} lane {lane} pulse {self.cfg.pulse_ms} ms" + (f" part {part}" if part >= 0 else ""))
        log.info("gate (dry run): %s", self.sent[-1])

    def heartbeat(self, count: int) -> None:
        pass

    def alarm(self, reason: str) -> None:
        self.sent.append(f"alarm: {reason}")
        log.info("gate (dry run): %s", self.sent[-1])

    def poll(self) -> list[Message]:
        return []

    def close(self) -> None:
        pass
