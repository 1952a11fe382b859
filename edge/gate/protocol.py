"""The ASCII lines between the station and the PLC, both ways, as typed messages.

    protocol = LineProtocol.of(config.gate)              # gate.reject_template, ... ack_pattern
    protocol.line(Reject(seq=7, lane=1, pulse_ms=50))    # 'REJ 7 1 50\\r\\n'
    protocol.from_station("REJ 7 1 50")                  # Reject(seq=7, lane=1, pulse_ms=50): the PLC's side
    protocol.from_plc("SPD 400")                         # Speed(mm_s=400.0): the station's side

The station sends rejects, heartbeats and alarms from the config's templates; the PLC sends `SPD <mm/s>`
(the belt speed), `ENC <count>` (the belt encoder's counter, for encoder timing), `PART <n>` (the
part the PLC just triggered the camera for, for part_id timing) and, when `ack_pattern` is set, an ack per reject. The serial driver, the PLC stand-in
and the tools that read what the stand-in received all parse through here. Lines are compared stripped;
a template's numbers are read back when they are formatted as decimal digits (any width or padding).
"""

from __future__ import annotations

import logging
import math
import re
import string
from dataclasses import dataclass

from edge.core.config import GateConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reject:
    """Station -> PLC: fire the gate of `lane` for frame `seq`."""

    seq: int
    lane: int
    pulse_ms: int
    part: int = -1  # part_id timing: the PLC's part number (-1: none)


@dataclass(frozen=True)
class Heartbeat:
    """Station -> PLC: still inspecting on time (the PLC's watchdog)."""

    count: int


@dataclass(frozen=True)
class Alarm:
    """Station -> PLC: stop the line."""

    reason: str


@dataclass(frozen=True)
class Ack:
    """PLC -> station: reject `seq` was received."""

    seq: int


@dataclass(frozen=True)
class Speed:
    """PLC -> station: the belt moves at `mm_s`."""

    mm_s: float


@dataclass(frozen=True)
class Part:
    """PLC -> station: the PLC triggered the camera for its part `number` (part_id timing)."""

    number: int


@dataclass(frozen=True)
class Encoder:
    """PLC -> station: the belt encoder's counter reads `count` (encoder timing)."""

    count: int


Message = Ack | Speed | Encoder | Part  # what the PLC tells the station
StationLine = Reject | Heartbeat | Alarm

NUMBERS = frozenset({"seq", "lane", "pulse_ms", "count", "part"})  # every placeholder but the alarm's reason


def _pattern(template: str) -> re.Pattern:
    """A regex matching the stripped lines `template` renders, a named group per placeholder (its first use)."""
    parts, seen = [], set()
    for literal, name, spec, _ in string.Formatter().parse(template.strip()):
        parts.append(re.escape(literal))
        if name is not None:
            group = "" if name in seen else f"?P<{name}>"
            number = ("[\\s+]*" if spec else "") + f"({group}\\d+)"  # a format spec may pad or sign it
            parts.append(number if name in NUMBERS else f"({group}.*)")
            seen.add(name)
    return re.compile("".join(parts))


class LineProtocol:
    """The lines of one configuration's templates, rendered and parsed."""

    def __init__(self, reject_template: str, heartbeat_template: str, alarm_template: str, ack_pattern: str | None):
        self.templates = {Reject: reject_template, Heartbeat: heartbeat_template, Alarm: alarm_template}
        self.patterns = {kind: _pattern(template) for kind, template in self.templates.items()}
        self.ack_pattern = ack_pattern
        self.ack = _pattern(ack_pattern) if ack_pattern else None

    @classmethod
    def of(cls, config: GateConfig) -> LineProtocol:
        """The protocol of a gate config's templates (serial or log: `LineProtocol.of(GateConfig())` is the default)."""
        return cls(config.reject_template, config.heartbeat_template, config.alarm_template, config.ack_pattern)

    def line(self, message: StationLine | Message) -> str:
        """The line that carries `message`, line ending included."""
        if isinstance(message, Speed):
            return f"SPD {message.mm_s:g}\r\n"
        if isinstance(message, Encoder):
            return f"ENC {message.count}\r\n"
        if isinstance(message, Part):
            return f"PART {message.number}\r\n"
        if isinstance(message, Ack):
            if self.ack_pattern is None:
                raise ValueError("no ack_pattern: this protocol has no acks")
            return f"{self.ack_pattern.format(seq=message.seq)}\r\n"
        return self.templates[type(message)].format(**vars(message))

    def from_station(self, line: str) -> StationLine | None:
        """A line the station sent, as its message; None for a line no template makes."""
        for kind, pattern in self.patterns.items():
            if match := pattern.fullmatch(line.strip()):
                return kind(**{name: int(value) if name in NUMBERS else value for name, value in match.groupdict().items()})
        return None

    def from_plc(self, line: str) -> Message | None:
        """A line the PLC sent, as its message; None (a malformed speed logged) for any other line."""
        line = line.strip()
        if line.startswith("SPD"):
            try:
                speed = float(line.split()[1])
                if not (math.isfinite(speed) and speed > 0):
                    raise ValueError
                return Speed(speed)
            except (IndexError, ValueError):
                log.warning("gate: malformed speed line %r ignored (expected 'SPD <mm/s>', > 0)", line)
                return None
        for prefix, kind in (("ENC", Encoder), ("PART", Part)):
            if line.startswith(prefix + " ") or line == prefix:
                try:
                    return kind(int(line.split()[1]))
                except (IndexError, ValueError):
                    log.warning("gate: malformed line %r ignored (expected '%s <integer>')", line, prefix)
                    return None
        if self.ack and (match := self.ack.fullmatch(line)):
            return Ack(int(match["seq"]))
        return None
