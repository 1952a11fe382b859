"""`station gate-bench`: how precisely does the gate fire? Measured over a real pseudo-terminal.

    station gate-bench --rejects 1000 --rate 50

Schedules rejects at `rate` per second in `delay` timing (each due `travel_ms` after its
capture) and reports the error between the scheduled fire time and the arrival of the line at a
PLC stand-in on the other end of the pseudo-terminal (both clocks are this machine's monotonic
clock); then sends `rejects` more in `immediate` timing and reports reject-to-wire latency; then,
on a simulated belt whose encoder the stand-in reports at 1 kHz (constant 1 m/s, accelerating 0.5 to
1.5 m/s, stopping every second), the reject's position error in mm (the belt's travel from the
capture to the arrival of the reject, less `distance_mm`) in `encoder` timing against `delay`
timing at the nominal 1 m/s; then,
with pymodbus installed, the same over Modbus TCP to a pymodbus server on 127.0.0.1: verdict to
the PLC's receipt of the register write (the seq), the PLC being this process's server thread.
"""

from __future__ import annotations

import csv
import importlib.util
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edge.core.config import GateConfig
from edge.gate import Gate, Reject, SerialDriver, open_driver
from edge.tools.modbus_sim import ModbusStandIn
from edge.tools.plc_sim import DEFAULT_PROTOCOL, STAND_IN_PRIORITY, PLCStandIn

BELTS = {"constant 1 m/s": "1000", "accelerating 0.5-1.5 m/s": "ramp:500:1500:{seconds}", "stopping": "stop:1000:0.8:0.2"}
DISTANCE_MM, COUNTS_PER_MM, ENCODER_HZ = 200.0, 10.0, 1000.0


def _arrivals(plc: PLCStandIn, stop: threading.Event) -> dict[int, float]:
    arrivals: dict[int, float] = {}
    while not stop.is_set():
        for t, line in plc.poll(0.01):
            if isinstance(message := plc.protocol.from_station(line), Reject):
                arrivals[message.seq] = t
    return arrivals


def _send_rejects(gate: Gate, rejects: int, rate: float) -> dict[int, float]:
    """`rejects` reject verdicts at `rate` per second, each captured at its verdict; seq -> that time."""
    at, start = {}, time.monotonic()
    for seq in range(rejects):
        time.sleep(max(start + seq / rate - time.monotonic(), 0))
        at[seq] = time.monotonic()
        gate.verdict(seq, at[seq], True, [1], "bench")
    return at


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
    verdict_at = _send_rejects(gate, rejects, rate)
    gate.close()
    time.sleep(0.1)
    stop.set()
    reader.join()
    plc.close()
    reference = scheduled if timing == "delay" else verdict_at
    return np.array([(result[s] - reference[s]) * 1000 for s in range(rejects) if s in result]), len(result)


def measure_belt(timing: str, profile: str, rejects: int, rate: float, work: Path) -> tuple[np.ndarray, int]:
    """Millimetres from where the reject should reach the part (capture position + DISTANCE_MM) to where
    the belt was when the PLC stand-in, in its own process, received it, on a belt `profile` whose
    encoder the stand-in reports."""
    link, received, reports = work / "plc", work / "received.csv", work / "encoder.csv"
    for path in (link, received, reports):
        path.unlink(missing_ok=True)
    plc = subprocess.Popen([sys.executable, "-m", "edge", "plc-sim", "--pty", "--link", str(link), "--csv", str(received),
                            "--belt", profile.format(seconds=rejects / rate), "--counts-per-mm", str(COUNTS_PER_MM),
                            "--encoder-hz", str(ENCODER_HZ), "--encoder-csv", str(reports),
                            "--realtime-priority", str(STAND_IN_PRIORITY)], stdout=subprocess.DEVNULL)
    while not link.exists():
        if plc.poll() is not None:
            raise RuntimeError("the PLC stand-in did not start")
        time.sleep(0.01)
    settings = {"counts_per_mm": COUNTS_PER_MM} if timing == "encoder" else {"belt_speed_mm_s": 1000}
    config = GateConfig(driver="serial", port=str(link), recovery_ms=0, heartbeat_ms=0, timing=timing,
                        distance_mm=DISTANCE_MM, give_up_ms=60_000, **settings)
    gate = Gate(config, SerialDriver(config), lambda e: None)
    time.sleep(0.2)  # the first counts
    captured = _send_rejects(gate, rejects, rate)
    gate.close(timeout=30)
    time.sleep(0.2)
    plc.send_signal(signal.SIGTERM)
    plc.wait(30)
    arrivals = {}
    for row in csv.reader(received.open()):
        if isinstance(message := DEFAULT_PROTOCOL.from_station(row[2]), Reject):
            arrivals.setdefault(message.seq, float(row[0]))
    t, x = np.loadtxt(reports, delimiter=",", ndmin=2).T
    errors = [np.interp(arrivals[s], t, x) - np.interp(captured[s], t, x) - DISTANCE_MM for s in range(rejects) if s in arrivals]
    return np.array(errors), len(arrivals)


def measure_modbus_tcp(rejects: int, rate: float) -> tuple[np.ndarray, int]:
    """Milliseconds from the verdict to a pymodbus TCP server's receipt of the reject's register write."""
    with ModbusStandIn("tcp") as plc:
        config = GateConfig(driver="modbus", port=plc.port, modbus_reject="register", recovery_ms=0, heartbeat_ms=0,
                            reconnect_initial_s=0.05)
        gate = Gate(config, open_driver(config), lambda e: None)
        deadline = time.monotonic() + 10
        while not gate.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        verdict_at = _send_rejects(gate, rejects, rate)
        gate.close()
        received = plc.register_writes
    return np.array([(received[s] - verdict_at[s]) * 1000 for s in range(rejects) if s in received]), len(received)


def _line(name: str, label: str, errors: np.ndarray, received: int, rejects: int, unit: str = "ms") -> str:
    return (f"{name:10s} {label}: {received}/{rejects} received; p50 {np.percentile(errors, 50):.3f} {unit}, "
            f"p99 {np.percentile(errors, 99):.3f} {unit}, max {errors.max():.3f} {unit}, min {errors.min():.3f} {unit}")


def run(args) -> int:
    """The `station gate-bench` verb."""
    for timing, label in (("delay", "scheduled fire time -> arrival"), ("immediate", "verdict -> arrival (reject-to-wire)")):
        print(_line(timing, label, *measure(timing, args.rejects, args.rate, args.travel_ms), args.rejects))
    with tempfile.TemporaryDirectory() as work:
        for name, profile in BELTS.items():
            for timing in ("encoder", "delay"):
                errors, received = measure_belt(timing, profile, args.rejects, args.rate, Path(work))
                print(_line(timing, f"{name}, position error", np.abs(errors), received, args.rejects, "mm"))
    if importlib.util.find_spec("pymodbus") is None:
        print("modbus-tcp skipped: pip install .[modbus]")
    else:
        print(_line("modbus-tcp", "verdict -> register write at the PLC", *measure_modbus_tcp(args.rejects, args.rate),
                    args.rejects))
    return 0
