"""A real `station run` in a child process, a PLC stand-in on a real pseudo-terminal, and the
invariant checked from the results log and the stand-in's own record.

    plc = PlcRecorder()                                       # a pty; lines timestamped as they arrive
    config = write_config(tmp_path, video, gate={"port": plc.path})
    proc = start(config)                                      # python -m edge run --config ...
    ...inject a fault...
    out = finish(proc)                                        # waits; returns stdout
    frames, events = read_log(tmp_path)
    check_invariant(frames, events, plc.rejects())

The bundled int8 model (`model.path: default`) judges every run: no training is needed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from stations import wait_until

from edge.tools.plc_sim import PLCStandIn

FINAL = {"sent", "acknowledged", "merged", "late", "missed"}


class PlcRecorder:
    """The PLC side of a pty, read by a thread: every line with its arrival time."""

    def __init__(self, link: Path | None = None):
        self.stand_in = PLCStandIn(link=str(link) if link else None)
        self.path = str(link or self.stand_in.path)
        self.lines: list[tuple[float, str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopping.is_set():
            self.lines += self.stand_in.poll(0.02)

    def rejects(self) -> list[int]:
        """Sequence numbers of the REJ lines received, in order."""
        return [int(line.split()[1]) for _, line in self.lines if line.startswith("REJ ")]

    def heartbeats(self) -> list[float]:
        return [t for t, line in self.lines if line.startswith("HB ")]

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.stand_in.close()


def write_config(tmp_path: Path, uri: str | Path, **sections) -> Path:
    """A station config: the bundled model on `uri` (paced like a camera), results under tmp_path/out,
    the gate on a serial port (sections["gate"]["port"]) in immediate timing; `sections` override."""
    doc = {
        "model": {"path": "default", "threads": 1},
        "source": {"uri": str(uri), "realtime": True},
        "decision": {"min_area_px": 30},
        "gate": {"driver": "serial", "heartbeat_ms": 100, "recovery_ms": 0, "verdict_deadline_ms": 1000},
        "output": {"results_log": str(tmp_path / "out" / "results.jsonl"), "overlays_dir": str(tmp_path / "out" / "rejects"),
                   "status_interval_s": 0.2},
    }
    for key, values in sections.items():
        doc[key] = {**doc.get(key, {}), **values}
    path = tmp_path / "station.yaml"
    path.write_text(json.dumps(doc))
    return path


STARTED: list[subprocess.Popen] = []  # killed after each test by tests/faults/conftest.py if still running


def start(config: Path, **popen) -> subprocess.Popen:
    STARTED.append(subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen))
    return STARTED[-1]


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    """tests/stations.py's wait_until, with the longer default a station under faults needs."""
    return wait_until(condition, timeout, what)


def records(tmp_path: Path, log: Path | None = None) -> list[dict]:
    """Every line of the results log (tmp_path/out/results.jsonl unless `log`) and its rotated files,
    oldest first; each must be whole JSON."""
    log = log or tmp_path / "out" / "results.jsonl"
    files = sorted(log.parent.glob("results.jsonl.*"), key=lambda p: -int(p.suffix[1:])) + [log]
    return [json.loads(line) for f in files if f.exists() for line in f.read_text().splitlines()]


def read_log(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    """(frame records, events) of the results log."""
    lines = records(tmp_path)
    return [r for r in lines if "verdict" in r], [r for r in lines if "event" in r]


def finish(proc: subprocess.Popen, sig: int | None = None, timeout: float = 60) -> str:
    """Stop the station with `sig` (or let it end) and return its stdout; fails on a native crash."""
    if sig is not None:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode >= 0, f"killed by {signal.Signals(-proc.returncode).name}: {err[-3000:]}"
    proc.stderr_text = err
    return out


def check_invariant(frames: list[dict], events: list[dict], received: list[int]) -> None:
    """Every captured frame has exactly one record; every reject record was acted on by the gate
    and each of its rejects ended with a final status; the PLC got exactly the rejects sent."""
    seqs = [r["seq"] for r in frames]
    assert sorted(seqs) == list(range(len(seqs))), f"records are not seqs 0..n-1 once each: {seqs}"
    rejected = {r["seq"] for r in frames if r["verdict"] == "reject"}
    ends = [e for e in events if e["event"] == "reject"]
    assert {e["status"] for e in ends} <= FINAL
    assert {e["seq"] for e in ends} == rejected, "a reject record without a gate reject, or the reverse"
    assert not any(r["verdict"] == "accept" and r["reason"].startswith(("not judged", "fail-safe")) for r in frames)
    delivered = {e["seq"] for e in ends if e["status"] in ("sent", "acknowledged", "late")}
    assert delivered <= set(received), f"logged as sent but never received: {sorted(delivered - set(received))}"
    assert set(received) <= rejected, f"the PLC got rejects no record accounts for: {sorted(set(received) - rejected)}"
