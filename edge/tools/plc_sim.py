"""`station plc-sim`: a PLC stand-in on a serial port, for demos, tests and the gate benchmark.

    station plc-sim --pty [--link /tmp/plc] [--ack] [--speed 400] [--csv received.csv]
    station plc-sim --pty --belt stop:1000:2:0.5 --counts-per-mm 10 --encoder-hz 1000

With --pty it opens a pseudo-terminal and prints the path the station should use as gate.port
(--link also makes a symlink to it: a stable name, as a udev rule gives a USB adapter). Every line
received is timestamped (monotonic clock, comparable with the station's on this machine),
printed and written to the CSV; with --ack each reject is answered `ACK <seq>`; with --speed a
`SPD <mm/s>` line is sent every second; with --belt an encoder on a simulated belt sends
`ENC <count>` (a 32-bit counter) --encoder-hz times a second, and --encoder-csv writes the time
and belt position of every report at exit. The lines are edge.gate.protocol's,
on the default templates.

Belt profiles (`Belt.parse`): `1000` (mm/s, constant); `ramp:500:1500:20` (500 to 1500 mm/s over
20 s, then held); `stop:1000:2:0.5` (1000 mm/s for 2 s, standing 0.5 s, over and over).
"""

from __future__ import annotations

import bisect
import csv
import datetime
import os
import pty
import select
import signal
import sys
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from edge.core.config import GateConfig
from edge.core.errors import BadInput
from edge.gate.gate import realtime_priority
from edge.gate.protocol import Ack, Encoder, LineProtocol, Reject, Speed

STAND_IN_PRIORITY = 60  # the demo's and gate-bench's stand-in: above a gate at real-time priority 50

DEFAULT_PROTOCOL = LineProtocol.of(GateConfig(ack_pattern="ACK {seq}"))  # the default templates; acks 'ACK <seq>'


class PLCStandIn:
    """The PLC side of a pseudo-terminal (or of an existing port, opened raw), speaking `protocol`."""

    def __init__(self, port: str | None = None, link: str | None = None, protocol: LineProtocol = DEFAULT_PROTOCOL):
        self.protocol = protocol
        if port is None:
            self.fd, self.slave = pty.openpty()
            tty.setraw(self.slave)
            self.path = os.ttyname(self.slave)
        else:
            try:
                self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
            except OSError as exc:
                raise BadInput(f"--port {port}: {exc.strerror}") from None
            tty.setraw(self.fd)
            self.slave, self.path = None, port
        self.link = Path(link) if link else None
        if self.link:
            self.link.unlink(missing_ok=True)
            self.link.symlink_to(self.path)
        self.buffer = b""
        self.received: list[tuple[float, str]] = []

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode("ascii"))

    def answer(self, line: str) -> None:
        """Acknowledge `line` when it is a reject."""
        if isinstance(message := self.protocol.from_station(line), Reject):
            self.send(self.protocol.line(Ack(message.seq)))

    def poll(self, timeout: float) -> list[tuple[float, str]]:
        """Lines received within `timeout` seconds, each with its monotonic arrival time."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        now = time.monotonic()
        try:
            self.buffer += os.read(self.fd, 65536)
        except OSError:  # the other side closed
            return []
        *lines, self.buffer = self.buffer.split(b"\n")
        got = [(now, line.decode("ascii", "replace").strip()) for line in lines if line.strip()]
        self.received += got
        return got

    def close(self) -> None:
        for fd in (self.fd, self.slave):
            if fd is not None:
                os.close(fd)
        if self.link:
            self.link.unlink(missing_ok=True)


class Belt:
    """A simulated belt: its speed over time, its position integrated as the encoder thread runs."""

    def __init__(self, speed_at: Callable[[float], float]):
        self.speed_at = speed_at  # mm/s at t seconds after the start
        self.times: list[float] = []  # monotonic times of the encoder's reports
        self.positions: list[float] = []  # mm at those times

    @classmethod
    def parse(cls, spec: str) -> Belt:
        """A belt from a profile string (module docstring); BadInput naming it when it is not one."""
        try:
            kind, *values = spec.split(":")
            if not values:
                speed = float(kind)
                return cls(lambda t: speed)
            a, b, c = (float(v) for v in values)
            if kind == "ramp":
                return cls(lambda t: a + (b - a) * min(t / c, 1.0))
            if kind == "stop":
                return cls(lambda t: a if t % (b + c) < b else 0.0)
        except ValueError:
            pass
        raise BadInput(f"--belt {spec}: expected MM_S, ramp:FROM:TO:SECONDS or stop:MM_S:RUN_S:STOP_S")

    def position_at(self, t: float) -> float:
        """mm at monotonic time `t`, interpolated between the encoder's reports."""
        i = bisect.bisect_right(self.times, t)
        if i == 0 or i == len(self.times):
            return self.positions[min(i, len(self.times) - 1)]
        t0, t1 = self.times[i - 1], self.times[i]
        x0, x1 = self.positions[i - 1], self.positions[i]
        return x0 + (x1 - x0) * (t - t0) / (t1 - t0)

    def run_encoder(self, plc: PLCStandIn, counts_per_mm: float, hz: float, stop: threading.Event,
                    record: bool = False) -> threading.Thread:
        """Send `ENC <count>` `hz` times a second from a thread until `stop` (`record`: keep every report's
        time and position for `position_at`); returns the started thread."""

        def loop() -> None:
            start = last = time.monotonic()
            position, tick = 0.0, 0
            while not stop.is_set():
                now = time.monotonic()
                position += self.speed_at(now - start) * (now - last)  # mm since the start
                last = now
                if record:
                    self.times.append(now)
                    self.positions.append(position)
                try:
                    plc.send(plc.protocol.line(Encoder(int(position * counts_per_mm) % 2**32)))
                except OSError:
                    return
                tick += 1
                time.sleep(max(start + tick / hz - time.monotonic(), 0))

        thread = threading.Thread(target=loop, name="encoder", daemon=True)
        thread.start()
        return thread


def run(args) -> int:
    """The `station plc-sim` verb."""
    if bool(args.pty) == bool(args.port):
        raise BadInput("plc-sim: give either --pty or --port PATH")
    # this thread and the encoder thread it starts
    if args.realtime_priority and (refused := realtime_priority(args.realtime_priority)):
        print(f"plc-sim: real-time priority refused ({refused}); running at normal priority", file=sys.stderr)
    plc = PLCStandIn(None if args.pty else args.port, args.link)
    print(f"PLC stand-in on {plc.path}" + (f" (link {args.link})" if args.link else ""), flush=True)
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(1))
    out = open(args.csv, "a", newline="") if args.csv else None
    writer = csv.writer(out) if out else None
    end = time.monotonic() + args.duration if args.duration else float("inf")
    next_speed = time.monotonic()
    encoder_stop, belt = threading.Event(), Belt.parse(args.belt) if args.belt else None
    encoder = belt and belt.run_encoder(plc, args.counts_per_mm, args.encoder_hz, encoder_stop, bool(args.encoder_csv))
    try:
        while not stopping and time.monotonic() < end:
            if args.speed and time.monotonic() >= next_speed:
                plc.send(plc.protocol.line(Speed(args.speed)))
                next_speed += 1.0
            for t, line in plc.poll(0.05):
                wall = datetime.datetime.now().isoformat(timespec="microseconds")
                print(f"{wall} {line}", flush=True)
                if writer:
                    writer.writerow([f"{t:.6f}", wall, line])
                    out.flush()
                if args.ack:
                    plc.answer(line)
    finally:
        encoder_stop.set()
        if encoder:
            encoder.join()
        plc.close()
        if out:
            out.close()
    if belt and args.encoder_csv:
        with open(args.encoder_csv, "w", newline="") as f:
            csv.writer(f).writerows((f"{t:.6f}", f"{x:.4f}") for t, x in zip(belt.times, belt.positions))
    print(f"received {len(plc.received)} lines" + (f", written to {args.csv}" if args.csv else ""))
    return 0
