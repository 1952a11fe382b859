"""driver serial: the ASCII lines of edge.gate.protocol over a serial port (pyserial: a path or a URL)."""

from __future__ import annotations

from edge.core.config import SerialGateConfig
from edge.gate.drivers.base import PORT_ERRORS, GateLost
from edge.gate.protocol import Alarm, Heartbeat, LineProtocol, Message, Reject


class SerialDriver:
    """Renders rejects, heartbeats and alarms from the config's templates; parses the PLC's acks and speed."""

    def __init__(self, config: SerialGateConfig):
        self.cfg, self.port, self.acks = config, config.port, config.ack_pattern is not None
        self.protocol = LineProtocol.of(config)
        self.settings = {"baudrate": config.baudrate, "parity": config.parity, "stopbits": config.stopbits}
        self.serial = None
        self.buffer = b""

    def open(self) -> None:
        import serial

        try:
            self.serial = serial.serial_for_url(self.port, timeout=0, write_timeout=0.5, **self.settings)
        except (serial.SerialException, *PORT_ERRORS, ValueError) as exc:
            raise GateLost(f"{self.port}: {exc}") from None

    def send(self, line: str) -> None:
        if self.serial is None:
            raise GateLost(f"{self.port}: not open")
        try:
            self.serial.write(line.encode("ascii", "replace"))  # the templates are ASCII; an alarm's reason may not be
            self.serial.flush()
        except PORT_ERRORS as exc:
            self.close()
            raise GateLost(f"{self.port}: {exc}") from None

    def reject(self, seq: int, lane: int, part: int = -1) -> None:
        self.send(self.protocol.line(Reject(seq, lane, self.cfg.pulse_ms, part)))

    def heartbeat(self, count: int) -> None:
        self.send(self.protocol.line(Heartbeat(count)))

    def alarm(self, reason: str) -> None:
        self.send(self.protocol.line(Alarm(reason)))

    def poll(self) -> list[Message]:
        if self.serial is None:
            return []
        try:
            waiting = self.serial.in_waiting
            self.buffer += self.serial.read(waiting) if waiting else b""
        except PORT_ERRORS as exc:
            self.close()
            raise GateLost(f"{self.port}: {exc}") from None
        *lines, self.buffer = self.buffer.split(b"\n")
        messages = (self.protocol.from_plc(line.decode("ascii", "replace")) for line in lines if line.strip())
        return [message for message in messages if message is not None]

    def close(self) -> None:
        if self.serial is not None:
            try:
                self.serial.close()
            except PORT_ERRORS:
                pass
        self.serial = None
