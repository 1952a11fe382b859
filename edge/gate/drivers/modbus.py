"""driver modbus: Modbus RTU on a serial port, or Modbus TCP with `port: tcp://HOST[:PORT]` (pymodbus;
TCP port 502 by default). A coil set, or the sequence number written to a register, per
reject at address + lane; the heartbeat toggles a coil; the alarm sets one. The PLC's response to each
write is its acknowledgement (ack_timeout_ms, ack_retries); no belt speed is read."""

from __future__ import annotations

from edge.core.config import ModbusGateConfig, tcp_address
from edge.core.errors import BadInput
from edge.gate.drivers.base import PORT_ERRORS, GateLost
from edge.gate.protocol import Message


class ModbusDriver:
    """Writes coils and registers; a failed or refused write raises GateLost."""

    acks = False  # a write that returns was answered by the PLC: nothing further to wait for

    def __init__(self, config: ModbusGateConfig):
        self.cfg, self.port, self.client = config, config.port, None

    def open(self) -> None:
        try:
            from pymodbus.client import ModbusSerialClient, ModbusTcpClient
        except ImportError:
            raise BadInput("gate.driver modbus needs pymodbus: pip install .[modbus]") from None
        c = self.cfg
        wait = {"timeout": c.ack_timeout_ms / 1000, "retries": c.ack_retries}
        if tcp := tcp_address(c.port):
            self.client = ModbusTcpClient(tcp[0], port=tcp[1], **wait)
        else:
            self.client = ModbusSerialClient(c.port, baudrate=c.baudrate, parity=c.parity, stopbits=int(c.stopbits), **wait)
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

    def reject(self, seq: int, lane: int, part: int = -1) -> None:
        address = self.cfg.modbus_address + lane
        if self.cfg.modbus_reject == "coil":
            self._write("write_coil", address, True)
        else:
            self._write("write_register", address, seq & 0xFFFF)

    def heartbeat(self, count: int) -> None:
        self._write("write_coil", self.cfg.modbus_heartbeat_coil, bool(count % 2))

    def alarm(self, reason: str) -> None:
        self._write("write_coil", self.cfg.modbus_alarm_coil, True)

    def poll(self) -> list[Message]:
        return []

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
