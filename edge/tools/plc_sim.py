"""`station plc-sim`: a PLC stand-in on a serial port, for demos, tests and the gate benchmark.

    station plc-sim --pty [--link /tmp/plc] [--ack] [--speed 400] [--csv received.csv]

With --pty it opens a pseudo-terminal and prints the path the station should use as gate.port
(--link also makes a symlink to it: a stable name, as a udev rule gives a USB adapter). Every line
received is timestamped (monotonic clock, comparable with the station's on this machine),
printed and written to the CSV; with --ack each reject is answered `ACK <seq>`; with --speed a
`SPD <mm/s>` line is sent every second. The lines are edge.gate.protocol's, on the default templates.
"""

from __future__ import annotations

import csv
import datetime
import os
import pty
import select
import signal
import time
import tty
from pathlib import Path

from edge.core.config import GateConfig
from edge.core.errors import BadInput
from edge.gate.protocol import Ack, LineProtocol, Reject, Speed

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


def run(args) -> int:
    """The `station plc-sim` verb."""
    if bool(args.pty) == bool(args.port):
        raise BadInput("plc-sim: give either --pty or --port PATH")
    plc = PLCStandIn(None if args.pty else args.port, args.link)
    print(f"PLC stand-in on {plc.path}" + (f" (link {args.link})" if args.link else ""), flush=True)
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(1))
    out = open(args.csv, "a", newline="") if args.csv else None
    writer = csv.writer(out) if out else None
    end = time.monotonic() + args.duration if args.duration else float("inf")
    next_speed = time.monotonic()
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
        plc.close()
        if out:
            out.close()
    print(f"received {len(plc.received)} lines" + (f", written to {args.csv}" if args.csv else ""))
    return 0
