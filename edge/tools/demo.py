"""`station demo`: the station on the demo conveyor video, a PLC stand-in as the gate, scored against the truth.

    python -m training.surfaces --video runs/demo/line.avi     # the video and its ground truth line.csv
    station demo --config config.yaml

Starts `station plc-sim` on a pseudo-terminal at the config's `gate.port` (a separate process at
real-time priority where allowed, as a PLC is a device of its own), runs `station run --config`
on the video, stops the stand-in and compares what it received with the ground truth beside the
video (`frame,defect,...`): rejects expected, missed and false, and how far each reject's arrival
(and the gate's write) was from its scheduled fire time. Writes the scores to
demo.json beside the results log.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge.core.config import load_station_config, parse_overrides
from edge.core.errors import BadInput
from edge.gate.protocol import LineProtocol, Reject
from edge.station.run import run_station
from edge.tools.plc_sim import STAND_IN_PRIORITY


def read_truth(path: Path) -> dict[int, bool]:
    """Frame number -> whether it holds a defect, from the ground-truth CSV beside the video."""
    try:
        with path.open(newline="") as f:
            return {int(row["frame"]): row["defect"] == "1" for row in csv.DictReader(f)}
    except OSError:
        raise BadInput(f"{path}: no ground truth (make the demo video with: python -m training.surfaces "
                       f"--video {path.with_suffix('.avi')})") from None
    except (KeyError, ValueError) as exc:
        raise BadInput(f"{path}: expected columns frame and defect ({exc})") from None


def read_received(path: Path, protocol: LineProtocol) -> dict[int, float]:
    """Reject sequence number -> monotonic arrival time, from the stand-in's CSV (first arrival)."""
    arrivals: dict[int, float] = {}
    if path.is_file():
        with path.open(newline="") as f:
            for t, _, line in csv.reader(f):
                if isinstance(message := protocol.from_station(line), Reject):
                    arrivals.setdefault(message.seq, float(t))
    return arrivals


def score(truth: dict[int, bool], received: dict[int, float], records: list[dict]) -> dict:
    """Rejects expected, received, missed and false; fire-time error; throughput and latency of the run."""
    frames = [r for r in records if "seq" in r and "verdict" in r]
    expected = {seq for seq, defect in truth.items() if defect}
    judged = {r["seq"] for r in frames}
    sent = [r for r in records if r.get("event") == "reject" and r.get("fire_at")]
    fire_at = {r["seq"]: r["fire_at"] for r in sent}
    errors = [(t - fire_at[seq]) * 1000 for seq, t in received.items() if seq in fire_at]
    written = [r["error_ms"] for r in sent if r.get("error_ms") is not None]  # the gate's write - fire time
    latency = [r["latency_ms"]["capture_to_verdict"] for r in frames]
    span = frames[-1]["t_capture"] - frames[0]["t_capture"] if len(frames) > 1 else 0
    pct = lambda values, q: round(float(np.percentile(values, q)), 2) if values else None  # noqa: E731
    spread = lambda values: {"p50": pct(values, 50), "p99": pct(values, 99),  # noqa: E731
                             "max": round(max(values), 2) if values else None}
    return {
        "frames": len(frames), "defect_frames": len(expected & judged),
        "rejects_received": len(received), "rejects_expected": len(expected & judged),
        "missed": sorted(expected & judged - set(received)), "false_rejects": sorted(set(received) - expected),
        "fire_error_ms": spread(errors), "write_error_ms": spread(written),
        "fps": round((len(frames) - 1) / span, 2) if span else None,
        "latency_ms": {"p50": pct(latency, 50), "p99": pct(latency, 99)},
    }


def _start_stand_in(port: Path, csv_path: Path) -> subprocess.Popen:
    port.unlink(missing_ok=True)
    plc = subprocess.Popen([sys.executable, "-m", "edge", "plc-sim", "--pty", "--link", str(port), "--csv", str(csv_path),
                            "--realtime-priority", str(STAND_IN_PRIORITY)],
                           stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not port.exists():
        if plc.poll() is not None or time.monotonic() > deadline:
            plc.kill()
            raise RuntimeError(f"the PLC stand-in did not open {port}")
        time.sleep(0.05)
    return plc


def run(args) -> int:
    """The `station demo` verb."""
    if not args.config:
        raise BadInput("station demo needs --config FILE (see config.yaml)")
    config = load_station_config(args.config, parse_overrides(args.set))
    if config.gate.driver != "serial":
        raise BadInput(f"{args.config}: gate.driver: the demo needs the serial driver (its PLC stand-in is on a pty)")
    truth = read_truth(Path(config.source.uri).with_suffix(".csv"))
    log_path = Path(config.output.results_log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path = log_path.with_name("plc_received.csv")
    csv_path.unlink(missing_ok=True)
    plc = _start_stand_in(Path(config.gate.port), csv_path)
    print(f"PLC stand-in on {config.gate.port}, writing {csv_path}")
    records: list[dict] = []
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    if hogs:
        print(f"load: {len(hogs)} CPU-bound processes beside the station, at its priority")
    try:
        run_station(config, tee=records.append)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        time.sleep(0.2)  # the last reject's bytes reach the stand-in
        plc.terminate()
        plc.wait(10)
    result = score(truth, read_received(csv_path, LineProtocol.of(config.gate)), records)
    result.update(results_log=str(log_path), overlays=config.output.overlays_dir, plc_csv=str(csv_path))
    (log_path.parent / "demo.json").write_text(json.dumps(result, indent=1) + "\n")
    fire, write = result["fire_error_ms"], result["write_error_ms"]
    print(f"\ndemo: {result['frames']} frames, {result['defect_frames']} with a defect in the ground truth\n"
          f"  rejects expected {result['rejects_expected']}, received by the PLC stand-in {result['rejects_received']}: "
          f"missed {len(result['missed'])}, false rejects {len(result['false_rejects'])}\n"
          f"  reject arrival - scheduled fire time: p50 {fire['p50']} ms, p99 {fire['p99']} ms, max {fire['max']} ms "
          f"(the gate's write: p50 {write['p50']} ms, p99 {write['p99']} ms, max {write['max']} ms)\n"
          f"  {result['fps']} fps, capture-to-verdict latency p50 {result['latency_ms']['p50']} ms, "
          f"p99 {result['latency_ms']['p99']} ms\n"
          f"  results log {log_path}, reject overlays {config.output.overlays_dir}, scores {log_path.parent / 'demo.json'}")
    return 0
