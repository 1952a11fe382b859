"""`station gate-bench`: how precisely does the gate fire? Measured over a real pseudo-terminal.

    station gate-bench --rejects 1000 --rate 50

Schedules rejects at `rate` per second in `delay` timing (each due `travel_ms` after its
capture) and reports the error between the scheduled fire time and the arrival of the line at a
PLC stand-in on the other end of the pseudo-terminal (both clocks are this machine's monotonic
clock); then sends `rejects` more in `immediate` timing and reports reject-to-wire latency.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from edge.core.config import GateConfig
from edge.gate import Gate, Reject, SerialDriver
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


def run(args) -> int:
    """The `station gate-bench` verb."""
    for timing, label in (("delay", "scheduled fire time -> arrival"), ("immediate", "verdict -> arrival (reject-to-wire)")):
        errors, received = measure(timing, args.rejects, args.rate, args.travel_ms)
        print(f"{timing:9s} {label}: {received}/{args.rejects} received; p50 {np.percentile(errors, 50):.3f} ms, "
              f"p99 {np.percentile(errors, 99):.3f} ms, max {errors.max():.3f} ms, min {errors.min():.3f} ms")
    return 0
