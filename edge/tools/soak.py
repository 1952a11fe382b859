"""`station soak`: the station for N minutes on a camera stream, with faults injected on a schedule.

    station soak --video runs/soak/line.avi --minutes 30      # make soak

What runs, each a real process on this machine: an MJPEG-over-HTTP camera stand-in serving the
video in a loop (edge.tools.camera_sim), the PLC stand-in on a pseudo-terminal (`station plc-sim`),
and `station run` reading the stream, with its results log and overlays on a small tmpfs (when
root). Every `cycle_s` the faults come in turn: the camera frozen (SIGSTOP) then resumed, the
camera killed and restarted, the PLC killed and restarted, the disk filled then freed, a burst of
half-sent connections to the operator page. At the end the station gets SIGTERM and the soak
checks the invariant from the results log and the stand-in's own record, and prints: frames
captured and records written, rejects owed and how they ended, heartbeat gaps against camera
gaps, peak RSS and its drift. `run_soak` returns the same figures as a SoakResult.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.core.config import GateConfig
from edge.core.device import memory_mb
from edge.core.errors import BadInput
from edge.gate.protocol import Heartbeat, LineProtocol, Reject

FINAL = ("sent", "acknowledged", "merged", "late", "missed")
HEARTBEAT_MS = 100
SCHEDULE = [(15, "camera frozen 4 s"), (35, "camera killed, back after 3 s"), (55, "PLC killed, back after 2 s"),
            (75, "disk full 8 s"), (95, "500 half-sent connections for 10 s")]  # (s into a 120 s cycle, fault)


@dataclass
class SoakResult:
    """What one soak run measured; `problems` lists every broken promise (empty: none)."""

    minutes: float
    exit_code: int
    frames_captured: int
    records: int
    frames_without_record: int
    duplicate_records: int
    rejects_owed: int
    reject_status: dict[str, int]
    rejects_without_final_status: int
    failsafe_frames: int
    camera_gaps_s: list[float]
    heartbeat_gaps_s: list[float]
    camera_gaps_with_heartbeat: int  # camera outages during which the PLC still got heartbeats (must be 0)
    faults: list[str]
    rss_mb: dict[str, float]
    problems: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stand:
    """One stand-in process (camera or PLC), restartable with the same arguments."""

    def __init__(self, argv: list[str], ready):
        self.argv, self.ready = argv, ready
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(self.argv)} did not start")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        self.proc.wait(10)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def fill_disk(disk: Path) -> Path:
    """A file that takes every byte the disk has left (the soak's and the fault tests' full disk)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 65536, 4096, 256, 16, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * chunk)
    return filler


def _hostile(port: int, count: int) -> list[socket.socket]:
    """Half-sent requests: a request line and one header, never the blank line that ends them."""
    clients = []
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"GET /api/state HTTP/1.1\r\nHost: station\r\n")
            clients.append(s)
        except OSError:
            break
    return clients


def _rss(pid: int, field: str = "VmRSS") -> float | None:
    try:
        return memory_mb(field, pid)
    except OSError:  # the process is gone
        return None


def _gaps(times: list[float], longer_than: float) -> list[tuple[float, float]]:
    return [(a, b) for a, b in zip(times, times[1:]) if b - a > longer_than]


def run_soak(video: Path, minutes: float, work: Path, cycle_s: float = 120.0, fps: float = 15.0) -> SoakResult:
    """Run the station on `video` served as a camera for `minutes`, faults every `cycle_s`, and measure."""
    if not video.is_file():
        raise BadInput(f"--video {video}: not found (make soak writes it with python -m training.surfaces)")
    disk, mounted = _prepare(work)
    camera_port, http_port, link = _free_port(), _free_port(), work / "plc"
    camera = Stand([sys.executable, "-m", "edge.tools.camera_sim", "--video", str(video), "--port", str(camera_port),
                    "--fps", str(fps)], lambda: _port_open(camera_port))
    link.unlink(missing_ok=True)
    plc = Stand([sys.executable, "-m", "edge", "plc-sim", "--pty", "--link", str(link), "--csv", str(work / "plc.csv")],
                link.exists)
    config = _station_config(camera_port, link, disk, http_port)
    (work / "station.yaml").write_text(json.dumps(config))
    station = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(work / "station.yaml")],
                               stdout=(work / "station.out").open("w"), stderr=(work / "station.err").open("w"))
    scale = cycle_s / 120  # the faults of one cycle, spread over its length
    faults = [(k * cycle_s + offset * scale, name) for k in range(math.ceil(minutes * 60 / cycle_s))
              for offset, name in SCHEDULE if offset * scale + k * cycle_s < minutes * 60
              and (mounted or not name.startswith("disk"))]
    injected, rss, t0 = [], [], time.monotonic()
    try:
        for at, name in [*faults, (minutes * 60, None)]:
            while time.monotonic() - t0 < at and station.poll() is None:
                rss.append((time.monotonic() - t0, _rss(station.pid)))
                time.sleep(min(1.0, max(at - (time.monotonic() - t0), 0.01)))
            if name is None or station.poll() is not None:
                break
            injected.append(f"{time.monotonic() - t0:.0f} s: {name}")
            _inject(name, camera, plc, disk, http_port, scale)
        peak = _rss(station.pid, "VmHWM") or float("nan")
        station.send_signal(signal.SIGTERM)
        station.wait(60)
    finally:
        if station.poll() is None:
            station.kill()
        camera.stop()
        plc.stop()
    protocol = LineProtocol.of(GateConfig(**config["gate"]))
    result = _measure(work, disk, station.returncode, minutes, injected, rss, peak, protocol)
    (work / "soak.json").write_text(json.dumps(dataclasses.asdict(result), indent=1) + "\n")
    if mounted:
        for log in disk.glob("results.jsonl*"):
            shutil.copy(log, work / log.name)
        subprocess.run(["umount", "-l", str(disk)], check=False)
    return result


def _prepare(work: Path) -> tuple[Path, bool]:
    """WORK/disk for the station's output, a 64 MB tmpfs when root (so it can be filled), emptied of
    an earlier run's logs; returns it and whether it is mounted."""
    work.mkdir(parents=True, exist_ok=True)
    disk, mounted = work / "disk", False
    disk.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["umount", "-l", str(disk)], stderr=subprocess.DEVNULL, check=False)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)]).returncode == 0
    for old in (disk / "results.jsonl", disk / "plc.csv", work / "plc.csv"):
        old.unlink(missing_ok=True)
    return disk, mounted


def _station_config(camera_port: int, link: Path, disk: Path, http_port: int) -> dict:
    """The soaked station: the bundled model on the camera stand-in, the serial gate to the PLC
    stand-in in delay mode, its output on `disk`, the operator page on."""
    return {
        "model": {"path": "default", "threads": 2},
        "source": {"uri": f"http://127.0.0.1:{camera_port}/stream.mjpg", "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0},
        "decision": {"min_area_px": 30},
        "gate": {"driver": "serial", "port": str(link), "timing": "delay", "distance_mm": 300, "belt_speed_mm_s": 1000,
                 "actuator_lead_ms": 20, "recovery_ms": 50, "verdict_deadline_ms": 400, "heartbeat_ms": HEARTBEAT_MS,
                 "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5},
        "output": {"results_log": str(disk / "results.jsonl"), "overlays_dir": str(disk / "rejects"),
                   "overlays_quota_mb": 8, "log_max_mb": 8, "log_backups": 2},
        "http": {"port": http_port},
    }


def _inject(name: str, camera: Stand, plc: Stand, disk: Path, http_port: int, scale: float) -> None:
    """One fault of the schedule, held for its time (scaled with the cycle)."""
    if name.startswith("camera frozen"):
        camera.signal(signal.SIGSTOP)
        time.sleep(4 * scale)
        camera.signal(signal.SIGCONT)
    elif name.startswith("camera killed"):
        camera.kill()
        time.sleep(3 * scale)
        camera.start()
    elif name.startswith("PLC killed"):
        plc.kill()  # its link is left dangling, to a pty number the system may hand to the next one who asks
        Path(plc.argv[plc.argv.index("--link") + 1]).unlink(missing_ok=True)
        time.sleep(2 * scale)
        plc.start()
    elif name.startswith("disk full"):
        filler = fill_disk(disk)
        time.sleep(8 * scale)
        filler.unlink()
    else:
        clients = _hostile(http_port, 500)
        time.sleep(10 * scale)
        for s in clients:
            s.close()


def _measure(work: Path, disk: Path, exit_code: int, minutes: float, faults: list[str],
             rss: list[tuple[float, float | None]], peak: float, protocol: LineProtocol) -> SoakResult:
    log = disk / "results.jsonl"
    lines = []
    for path in sorted(disk.glob("results.jsonl.*"), key=lambda p: -int(p.suffix[1:])) + [log]:
        if path.exists():
            lines += [json.loads(line) for line in path.read_text().splitlines()]
    frames = [r for r in lines if "verdict" in r]
    events = [r for r in lines if "event" in r]
    stopped = next((e for e in events if e["event"] == "stopped"), {})
    captured = stopped.get("captured", 0)
    seqs = [r["seq"] for r in frames]
    owed = {r["seq"] for r in frames if r["verdict"] == "reject"}
    ends = [e for e in events if e["event"] == "reject"]
    status = {s: sum(e["status"] == s for e in ends) for s in FINAL}
    heartbeats, received = [], set()
    plc_csv = work / "plc.csv"
    if plc_csv.exists():
        with plc_csv.open(newline="") as f:
            for t, _, line in csv.reader(f):
                message = protocol.from_station(line)
                if isinstance(message, Heartbeat):
                    heartbeats.append(float(t))
                elif isinstance(message, Reject):
                    received.add(message.seq)
    camera_gaps = [(e["t_start"], e["t_end"]) for e in events if e["event"] == "source_gap"]
    beat_gaps = _gaps(heartbeats, 3 * HEARTBEAT_MS / 1000)
    with_beats = sum(any(a < t < b for t in heartbeats) for a, b in
                     ((start + 1.0, stop - 0.1) for start, stop in camera_gaps) if b > a)
    values = [v for _, v in rss if v is not None] or [0.0]
    tenth = max(len(values) // 10, 1)  # the first tenth is start-up: drift is the second tenth to the last
    early, late = statistics.median(values[tenth : 2 * tenth] or values), statistics.median(values[-tenth:])
    rss_mb = {"peak": round(peak, 1), "early": round(early, 1), "late": round(late, 1), "drift": round(late - early, 1)}
    result = SoakResult(
        minutes=minutes, exit_code=exit_code, frames_captured=captured, records=len(frames),
        frames_without_record=len(set(range(captured)) - set(seqs)), duplicate_records=len(seqs) - len(set(seqs)),
        rejects_owed=len(owed), reject_status=status, rejects_without_final_status=len(owed - {e["seq"] for e in ends}),
        failsafe_frames=sum(r["reason"].startswith(("fail-safe", "not judged")) for r in frames),
        camera_gaps_s=[round(b - a, 2) for a, b in camera_gaps], heartbeat_gaps_s=[round(b - a, 2) for a, b in beat_gaps],
        camera_gaps_with_heartbeat=with_beats, faults=faults, rss_mb=rss_mb)
    checks = [(exit_code == 0, f"station exited {exit_code}"), (captured > 0, "no 'stopped' record: the station did not end cleanly"),
              (result.frames_without_record == 0, f"{result.frames_without_record} frames without a record"),
              (result.duplicate_records == 0, f"{result.duplicate_records} frames with two records"),
              (result.rejects_without_final_status == 0, f"{result.rejects_without_final_status} rejects without a final status"),
              (with_beats == 0, f"{with_beats} camera outages with heartbeats still sent"),
              (not {e['seq'] for e in ends if e['status'] in ('sent', 'acknowledged', 'late')} - received or not plc_csv.exists(),
               "rejects logged as sent that the PLC never received")]
    result.problems = [message for ok, message in checks if not ok]
    return result


def report(result: SoakResult) -> str:
    s, r = result, result.reject_status
    return "\n".join([
        f"soak {s.minutes:g} min: station exit {s.exit_code}; faults injected {len(s.faults)}",
        f"frames captured {s.frames_captured}, records {s.records}: without a record {s.frames_without_record}, "
        f"duplicated {s.duplicate_records}",
        f"rejects owed {s.rejects_owed}: " + ", ".join(f"{k} {v}" for k, v in r.items())
        + f"; without a final status {s.rejects_without_final_status}; frames rejected fail-safe {s.failsafe_frames}",
        f"camera gaps {len(s.camera_gaps_s)} ({sum(s.camera_gaps_s):.1f} s), heartbeat gaps {len(s.heartbeat_gaps_s)} "
        f"({sum(s.heartbeat_gaps_s):.1f} s); camera gaps with heartbeats still sent {s.camera_gaps_with_heartbeat}",
        f"RSS peak {s.rss_mb['peak']} MB; median of the second tenth of the run {s.rss_mb['early']} MB, of the last "
        f"tenth {s.rss_mb['late']} MB: drift {s.rss_mb['drift']:+} MB",
        "problems: " + ("; ".join(s.problems) if s.problems else "none"),
    ])


def run(args) -> int:
    """The `station soak` verb."""
    result = run_soak(Path(args.video), args.minutes, Path(args.out), args.cycle)
    print(report(result))
    print(f"written to {Path(args.out) / 'soak.json'}")
    return 1 if result.problems else 0
