"""Wires to the PLC, one small interface: serial ASCII lines, Modbus RTU, or a dry-run log.
Any failure of a wire raises GateLost; the gate reopens it with backoff."""

from __future__ import annotations

import logging
import termios
from typing import Protocol

from edge.core.errors import BadInput

log = logging.getLogger(__name__)


class GateLost(Exception):
    """The wire to the PLC is gone (unplugged adapter, closed port)."""


class Driver(Protocol):
    """What the gate asks of a wire to the PLC; any failure raises GateLost."""

    def open(self) -> None: ...
    def reject(self, seq: int, lane: int, pulse_ms: int) -> None: ...
    def heartbeat(self, count: int) -> None: ...
    def alarm(self, reason: str) -> None: ...
    def read_lines(self) -> list[str]: ...
    def close(self) -> None: ...


class LogDriver:
    """A dry run: logs what it would send."""

    def __init__(self):
        self.sent: list[str] = []

    def open(self) -> None:
        pass

    def reject(self, seq: int, lane: int, pulse_ms: int) -> None:
        self.sent.append(f"reject {seq} lane {lane} pulse {pulse_ms} ms")
        log.info("gate (dry run): %s", self.sent[-1])

    def heartbeat(self, count: int) -> None:
        pass

    def alarm(self, reason: str) -> None:
        self.sent.append(f"alarm: {reason}")
        log.info("gate (dry run): %s", self.sent[-1])

    def read_lines(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


PORT_ERRORS = (OSError, termios.error)  # pyserial's SerialException is an OSError; tcdrain raises termios.error


class SerialDriver:
    """ASCII lines from the config's templates over a serial port (pyserial: a path or a URL)."""

    def __init__(self, config):
        self.cfg, self.port = config, config.port
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
            self.serial.write(line.encode("ascii"))
            self.serial.flush()
        except PORT_ERRORS as exc:
            self.close()
            raise GateLost(f"{self.port}: {exc}") from None

    def reject(self, seq: int, lane: int, pulse_ms: int) -> None:
        self.send(self.cfg.reject_template.format(seq=seq, lane=lane, pulse_ms=pulse_ms))

    def heartbeat(self, count: int) -> None:
        self.send(self.cfg.heartbeat_template.format(count=count))

    def alarm(self, reason: str) -> None:
        self.send(self.cfg.alarm_template.format(reason=reason))

    def read_lines(self) -> list[str]:
        if self.serial is None:
            return []
        try:
            waiting = self.serial.in_waiting
            self.buffer += self.serial.read(waiting) if waiting else b""
        except PORT_ERRORS as exc:
            self.close()
            raise GateLost(f"{self.port}: {exc}") from None
        *lines, self.buffer = self.buffer.split(b"\n")
        return [line.decode("ascii", "replace").strip() for line in lines if line.strip()]

    def close(self) -> None:
        if self.serial is not None:
            try:
                self.serial.close()
            except PORT_ERRORS:
                pass
        self.serial = None


class ModbusDriver:
    """Modbus RTU (pymodbus): a coil set, or the sequence number written to a register, per reject
    at address + lane; the heartbeat toggles a coil; the alarm sets one."""

    def __init__(self, config):
        self.cfg, self.port, self.client = config, config.port, None

    def open(self) -> None:
        try:
            from pymodbus.client import ModbusSerialClient
        except ImportError:
            raise BadInput("gate.driver modbus needs pymodbus: pip install .[modbus]") from None
        c = self.cfg
        self.client = ModbusSerialClient(c.port, baudrate=c.baudrate, parity=c.parity, stopbits=int(c.stopbits),
                                         timeout=c.ack_timeout_ms / 1000, retries=c.ack_retries)
        if not self.client.connect():
            raise GateLost(f"{self.port}: Modbus connection failed")

    def _write(self, method: str, address: int, value) -> None:
        from pymodbus.exceptions import ModbusException

        if self.client is None:
            raise GateLost(f"{self.port}: not open")
        try:
            response = getattr(self.client, method)(address, value, device_id=self.cfg.modbus_device_id)
        except (ModbusException, *PORT_ERRORS) as exc:
            raise GateLost(f"{self.port}: {exc}") from None
        if response.isError():
            raise GateLost(f"{self.port}: Modbus error response {response}")

    def reject(self, seq: int, lane: int, pulse_ms: int) -> None:
        address = self.cfg.modbus_address + lane
        if self.cfg.modbus_reject == "coil":
            self._write("write_coil", address, True)
        else:
            self._write("write_register", address, seq & 0xFFFF)

    def heartbeat(self, count: int) -> None:
        self._write("write_coil", self.cfg.modbus_heartbeat_coil, bool(count % 2))

    def alarm(self, reason: str) -> None:
        self._write("write_coil", self.cfg.modbus_alarm_coil, True)

    def read_lines(self) -> list[str]:
        return []

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None


def open_driver(config) -> Driver:
    """The driver `gate.driver` names."""
    return {"serial": SerialDriver, "modbus": ModbusDriver}.get(config.driver, lambda c: LogDriver())(config)
