"""What the gate asks of a wire to the PLC: one small interface, one plugin per file beside this one."""

from __future__ import annotations

import termios
from typing import Protocol

from edge.gate.protocol import Message

PORT_ERRORS = (OSError, termios.error)  # pyserial's SerialException is an OSError; tcdrain raises termios.error


class GateLost(Exception):
    """The wire to the PLC is gone (unplugged adapter, closed port)."""


class Driver(Protocol):
    """A wire to the PLC, built from its driver's config; any failure raises GateLost."""

    port: str | None
    acks: bool  # the PLC answers each reject: the gate waits for the ack and sends again without one

    def open(self) -> None: ...
    def reject(self, seq: int, lane: int, part: int = -1) -> None: ...  # part: part_id timing's part number
    def heartbeat(self, count: int) -> None: ...
    def alarm(self, reason: str) -> None: ...
    def poll(self) -> list[Message]: ...  # what the PLC said since the last poll: acks, belt speed
    def close(self) -> None: ...
