"""A Modbus PLC stand-in: a real pymodbus server on 127.0.0.1, for the gate's tests and benchmark.

    with ModbusStandIn("tcp") as plc:          # or "rtu": RTU framing over a TCP socket
        config = GateConfig(driver="modbus", port=plc.port, ...)
        ...
        plc.coils(11, 2), plc.registers(11, 2), plc.register_writes   # {value: monotonic time received}

Coils and holding registers 0-299 of device 1. The RS-485 wire of Modbus RTU is the one thing that
cannot exist here, so RTU frames travel over a socket (`socket://` for pyserial). The server runs on
its own thread and event loop and is shut down on that loop, so one stand-in never stops another.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

from edge.tools.local_broker import free_port

SIZE = 300


class ModbusStandIn:
    """A pymodbus server (module docstring)."""

    def __init__(self, framer: str = "tcp"):
        from pymodbus import FramerType
        from pymodbus.datastore import (
            ModbusDeviceContext,
            ModbusSequentialDataBlock,
            ModbusServerContext,
        )
        from pymodbus.pdu.register_message import WriteSingleRegisterRequest
        from pymodbus.server import ModbusTcpServer

        logging.getLogger("pymodbus").setLevel(logging.ERROR)  # its deprecation notices are not the station's
        self.tcp_port = free_port()
        self.port = f"tcp://127.0.0.1:{self.tcp_port}" if framer == "tcp" else f"socket://127.0.0.1:{self.tcp_port}"
        self.framer = FramerType.SOCKET if framer == "tcp" else FramerType.RTU
        self.register_writes: dict[int, float] = {}  # value written -> when the server received it

        def trace(sending: bool, pdu):
            if not sending and isinstance(pdu, WriteSingleRegisterRequest):
                self.register_writes.setdefault(pdu.registers[0], time.monotonic())
            return pdu

        device = ModbusDeviceContext(co=ModbusSequentialDataBlock(1, [0] * SIZE), hr=ModbusSequentialDataBlock(1, [0] * SIZE))
        self.loop, self.server = asyncio.new_event_loop(), None

        async def serve() -> None:  # the server is made on its own loop
            self.server = ModbusTcpServer(ModbusServerContext(devices={1: device}, single=False), framer=self.framer,
                                          address=("127.0.0.1", self.tcp_port), trace_pdu=trace)
            await self.server.serve_forever()

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(serve()), name="modbus", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self._listening():
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the Modbus stand-in did not start on port {self.tcp_port}")
            time.sleep(0.02)
        self.reader = None

    def _listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", self.tcp_port)) == 0

    def _client(self):
        if self.reader is None:
            from pymodbus.client import ModbusSerialClient, ModbusTcpClient

            self.reader = (ModbusTcpClient("127.0.0.1", port=self.tcp_port, timeout=2) if self.port.startswith("tcp")
                           else ModbusSerialClient(self.port, timeout=2))
            self.reader.connect()
        return self.reader

    def coils(self, address: int, count: int) -> list[bool]:
        return self._client().read_coils(address, count=count, device_id=1).bits[:count]

    def registers(self, address: int, count: int) -> list[int]:
        return self._client().read_holding_registers(address, count=count, device_id=1).registers

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.thread.join(10)

    def __enter__(self) -> ModbusStandIn:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
