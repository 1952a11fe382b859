"""`station gate-bench`: how precisely does the gate fire? Measured over a real pseudo-terminal.

    station gate-bench --rejects 1000 --rate 50

Schedules rejects at `rate` per second in `delay` timing (each due `travel_ms` after its
capture) and reports the error between the scheduled fire time and the arrival of the line at a
PLC stand-in on the other end of the pseudo-terminal (both clocks are this machine's monotonic
clock); then sends `rejects` more in `immediate` timing and reports reject-to-wire latency; then,
with pymodbus installed, the same over Modbus TCP to a pymodbus server on 127.0.0.1: verdict to
the PLC's receipt of the register write (the seq), the PLC being this process's server thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import threading
import time

import numpy as np

from edge.core.config import GateConfig
from edge.gate import Gate, Reject, SerialDriver, open_driver
from edge.tools.plc_sim import PLCStandIn


def _arrivals(plc: PLCStandIn, stop: threading.Event) -> dict[int, float]:
    arrivals: dict[int, float] = {}
    while not stop.is_set():
        for t, line in plc.poll(0.01):
            if isinstance(message := plc.protocol.from_station(line), Reject):
                arrivals[message.seq] = t
    return arrivals


def measure(timing: str, rejects: int, rate: float, travel_ms: float) -> tuple[np.ndarray, int]:
    """Milliseconds from the scheduled fire time (delay) or the verdict (immediate) to arrival."""
    plc = PLCStandIn()
    settings = {"timing": timing, "distance_mm": travel_ms, "belt_speed_mm_s": 1000} if timing == "delay" else {}
    config = GateConfig(driver="serial", port=plc.path, recovery_ms=0, heartbeat_ms=500, **settings)
    scheduled: dict[int, float] = {}
    gate = Gate(config, SerialDriver(config), lambda e: scheduled.__setitem__(e["seq"], e["fire_at"])
                if e.get("event") == "reject" else None)
    stop, result = threading.Event(), {}
    reader = threading.Thread(target=lambda: result.update(_arrivals(plc, stop)))
    reader.start()
    verdict_at = {}
    start = time.monotonic()
    for seq in range(rejects):
        time.sleep(max(start + seq / rate - time.monotonic(), 0))
        verdict_at[seq] = time.monotonic()
        gate.verdict(seq, verdict_at[seq], True, [1], "bench")
    gate.close()
    time.sleep(0.1)
    stop.set()
    reader.join()
    plc.close()
    reference = scheduled if timing == "delay" else verdict_at
    return np.array([(result[s] - reference[s]) * 1000 for s in range(rejects) if s in result]), len(result)


def measure_modbus_tcp(rejects: int, rate: float) -> tuple[np.ndarray, int]:
    """Milliseconds from the verdict to a pymodbus TCP server's receipt of the reject's register write."""
    from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
    from pymodbus.pdu.register_message import WriteSingleRegisterRequest
    from pymodbus.server import ModbusTcpServer

    received: dict[int, float] = {}
    logging.getLogger("pymodbus").setLevel(logging.ERROR)  # the stand-in's deprecation notices are not the bench's

    def trace(sending: bool, pdu):
        if not sending and isinstance(pdu, WriteSingleRegisterRequest):
            received.setdefault(pdu.registers[0], time.monotonic())
        return pdu

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    device = ModbusDeviceContext(co=ModbusSequentialDataBlock(1, [0] * 300), hr=ModbusSequentialDataBlock(1, [0] * 300))
    loop, servers = asyncio.new_event_loop(), []

    async def serve() -> None:  # the server is made on its own loop
        servers.append(ModbusTcpServer(ModbusServerContext(devices={1: device}, single=False),
                                       address=("127.0.0.1", port), trace_pdu=trace))
        await servers[0].serve_forever()

    threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True).start()
    config = GateConfig(driver="modbus", port=f"tcp://127.0.0.1:{port}", modbus_reject="register", recovery_ms=0,
                        heartbeat_ms=0, reconnect_initial_s=0.05)
    verdict_at = {}
    gate = Gate(config, open_driver(config), lambda e: None)
    deadline = time.monotonic() + 10
    while not gate.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.monotonic()
    for seq in range(rejects):
        time.sleep(max(start + seq / rate - time.monotonic(), 0))
        verdict_at[seq] = time.monotonic()
        gate.verdict(seq, verdict_at[seq], True, [1], "bench")
    gate.close()
    asyncio.run_coroutine_threadsafe(servers[0].shutdown(), loop).result(5)
    return np.array([(received[s] - verdict_at[s]) * 1000 for s in range(rejects) if s in received]), len(received)


def _line(name: str, label: str, errors: np.ndarray, received: int, rejects: int) -> str:
    return (f"{name:10s} {label}: {received}/{rejects} received; p50 {np.percentile(errors, 50):.3f} ms, "
            f"p99 {np.percentile(errors, 99):.3f} ms, max {errors.max():.3f} ms, min {errors.min():.3f} ms")


def run(args) -> int:
    """The `station gate-bench` verb."""
    for timing, label in (("delay", "scheduled fire time -> arrival"), ("immediate", "verdict -> arrival (reject-to-wire)")):
        print(_line(timing, label, *measure(timing, args.rejects, args.rate, args.travel_ms), args.rejects))
    if importlib.util.find_spec("pymodbus") is None:
        print("modbus-tcp skipped: pip install .[modbus]")
    else:
        print(_line("modbus-tcp", "verdict -> register write at the PLC", *measure_modbus_tcp(args.rejects, args.rate),
                    args.rejects))
    return 0
