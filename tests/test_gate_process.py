"""The gate in a process of its own (edge.gate.process): real child processes, a PLC stand-in on a
pseudo-terminal (in a process of its own where the test's interpreter is held), real signals."""

import csv
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from edge.core.config import GateConfig
from edge.core.errors import BadInput
from edge.gate import open_gate
from edge.gate.process import GateProcess
from edge.tools.plc_sim import PLCStandIn


def _plc_process(tmp_path):
    """`station plc-sim` in its own process: it stamps each line on arrival whatever this process does."""
    link, received = tmp_path / "plc", tmp_path / "received.csv"
    plc = subprocess.Popen([sys.executable, "-m", "edge", "plc-sim", "--pty", "--link", str(link), "--csv", str(received)],
                           stdout=subprocess.PIPE, text=True)
    plc.stdout.readline()  # the port, once it is open
    return plc, link, received


def _arrivals(plc, received):
    plc.send_signal(signal.SIGINT)
    plc.communicate(timeout=10)
    with open(received) as f:
        return [(float(t), line) for t, _, line in csv.reader(f)]


def _interpreter_hold(seconds: float):
    """A call that keeps this process's interpreter lock for about `seconds` (one C sort, made ready
    here); it returns when the hold ended."""
    sample = [random.random() for _ in range(200_000)]
    start = time.perf_counter()
    sorted(sample)
    values = [random.random() for _ in range(int(len(sample) * seconds / max(time.perf_counter() - start, 1e-3)))]

    def hold() -> float:
        sorted(values)
        return time.monotonic()

    return hold


def test_a_reject_fires_on_time_while_the_stations_interpreter_is_held(tmp_path):
    plc, link, received = _plc_process(tmp_path)
    gate = GateProcess(GateConfig(driver="serial", port=str(link), heartbeat_ms=0, timing="delay", distance_mm=100,
                                  belt_speed_mm_s=1000))
    hold = _interpreter_hold(1.0)
    t_capture = time.monotonic()
    gate.expect(1, t_capture)
    assert gate.verdict(1, t_capture, True, [1], "defect").verdict == "reject"
    held_until = hold()  # the fire time is 100 ms into it
    gate.close()
    fire_at = t_capture + 0.1
    arrivals = [t for t, line in _arrivals(plc, received) if line.startswith("REJ 1 ")]
    assert len(arrivals) == 1
    assert arrivals[0] < held_until - 0.3, "the reject waited for the station's interpreter"
    assert arrivals[0] - fire_at < 0.1


def test_a_killed_gate_process_is_replaced_its_held_rejects_end_missed_and_owed_frames_stay_owed():
    plc, events = PLCStandIn(), []
    try:
        gate = open_gate(GateConfig(driver="serial", port=plc.path, heartbeat_ms=0, timing="delay", distance_mm=500,
                                    belt_speed_mm_s=1000, verdict_deadline_ms=400), events.append)
        assert isinstance(gate, GateProcess)
        now = time.monotonic()
        gate.expect(1, now)
        gate.expect(2, now)
        gate.verdict(1, now, True, [2], "defect")  # fires in 500 ms: held by the child
        first = gate.child.pid
        os.kill(first, signal.SIGKILL)
        outcome = gate.verdict(3, now, False, [], "clean")  # made again on the replacement
        assert gate.child.pid != first and outcome.verdict == "accept"
        deadline = time.monotonic() + 5
        while not any(l.startswith("REJ 2 0") for _, l in plc.received) and time.monotonic() < deadline:
            plc.poll(0.02)
        counts = gate.close()
    finally:
        plc.close()
    lost = [e for e in events if e.get("event") == "reject" and e["seq"] == 1]
    assert [(e["lane"], e["status"], e["reason"]) for e in lost] == [(2, "missed", "defect")]
    assert [e["exitcode"] for e in events if e.get("event") == "gate_process_died"] == [-signal.SIGKILL]
    assert any(e.get("event") == "missing_verdict" and e["seq"] == 2 for e in events)  # still owed, then fail-safe
    assert counts["missed"] == 1 and counts["sent"] == 1


def test_while_the_station_is_stopped_the_gate_process_rejects_its_owed_frames_and_exits_when_it_dies(tmp_path):
    plc, link, received = _plc_process(tmp_path)
    station = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, time
        from edge.core.config import GateConfig
        from edge.gate.process import GateProcess
        gate = GateProcess(GateConfig(driver="serial", port={str(link)!r}, heartbeat_ms=0, verdict_deadline_ms=300))
        gate.expect(5, time.monotonic())
        print(gate.child.pid, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    """)], stdout=subprocess.PIPE, text=True)
    child = int(station.stdout.readline())
    stopped_at = time.monotonic()
    time.sleep(1.0)
    station.kill()
    station.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
        time.sleep(0.05)
    gone = not os.path.exists(f"/proc/{child}")
    arrivals = [t for t, line in _arrivals(plc, received) if line.startswith("REJ 5 0")]
    assert gone, "the gate process outlived the station"
    assert len(arrivals) == 1 and arrivals[0] - stopped_at < 0.9  # at the 300 ms deadline, the station still stopped


def test_a_port_that_will_not_open_is_a_one_line_error(tmp_path):
    with pytest.raises(BadInput, match=f"gate.port {tmp_path}/no-such-port"):
        GateProcess(GateConfig(driver="serial", port=str(tmp_path / "no-such-port")))
