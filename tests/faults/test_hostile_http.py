"""Hostile clients against the operator page of a real `station run` (the bundled model, a real
video paced like a camera, the PLC stand-in on a pty) limited to 100 file descriptors: hundreds
of half-sent requests, silent connections, requests trickled in byte by byte, clients that reset
the connection mid-request, a malformed path, and accept() failing with EMFILE. The station must
go on inspecting, record every frame it captured once, keep the page usable, and exit 0."""

import http.client
import json
import re
import resource
import selectors
import signal
import socket
import struct
import time
from pathlib import Path

import pytest
from stations import get as _get
from stations import start_with_page as _start
from stations import wait_until as _wait

from edge.tools.plc_sim import PLCStandIn
from training.synthetic import write_video

FDS = 100  # the station's `ulimit -n`
TIMEOUT_S = 2.0  # http.client_timeout_s
SLACK_S = 6.0  # on top of it, for a loaded machine
HALF_SENT = b"GET / HTTP/1.1\r\nHost: x\r\n"  # never finished

TOKEN = "line-7-operator"


class Clients:
    """Non-blocking client sockets, each sending its payload once connected (trickled a byte per
    0.5 s, or all at once), and the time from opening to the server's closing it."""

    def __init__(self, port: int):
        self.port, self.selector = port, selectors.DefaultSelector()
        self.received: dict[socket.socket, bytes] = {}
        self.closed: dict[socket.socket, float] = {}

    def open(self, count: int, payload: bytes = b"", trickle: bool = False) -> list[socket.socket]:
        socks = []
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", self.port))
            self.selector.register(sock, selectors.EVENT_WRITE, [time.monotonic(), payload, trickle, 0.0])
            self.received[sock] = b""
            socks.append(sock)
        return socks

    def _close(self, sock: socket.socket, opened: float) -> None:
        self.closed[sock] = time.monotonic() - opened
        self.selector.unregister(sock)
        sock.close()

    def pump(self, seconds: float) -> None:
        """Send, trickle and read for `seconds`."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0 and self.selector.get_map():
            for key, events in self.selector.select(min(left, 0.1)):
                sock, state = key.fileobj, key.data
                opened, payload, trickle, _ = state
                try:
                    if events & selectors.EVENT_WRITE:  # connected
                        if payload and not trickle:
                            sock.send(payload)
                        self.selector.modify(sock, selectors.EVENT_READ, state)
                    if events & selectors.EVENT_READ:
                        data = sock.recv(65536)
                        if not data:
                            self._close(sock, opened)
                        self.received[sock] += data
                except OSError:  # reset by the server, or refused
                    self._close(sock, opened)
            for key in list(self.selector.get_map().values()):
                opened, payload, trickle, sent_at = key.data
                if trickle and key.events == selectors.EVENT_READ and time.monotonic() - sent_at >= 0.5:
                    try:
                        key.fileobj.send(payload[:1])
                        key.data[1:] = [payload[1:] or b"x", trickle, time.monotonic()]
                    except OSError:
                        self._close(key.fileobj, opened)

    def open_count(self, socks: list[socket.socket]) -> int:
        return sum(sock not in self.closed for sock in socks)


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FDS, FDS))


def _try(url: str, headers: dict | None = None) -> tuple[int | None, bytes]:
    """(status, body), or (None, b"") when the connection was refused or reset (a 503 lost to the reset)."""
    try:
        return _get(url, headers)[:2]
    except (OSError, http.client.HTTPException):
        return None, b""


@pytest.fixture
def station(tmp_path):
    """Starts `station run` under `ulimit -n 100` on a video paced at 15 fps; killed at the end if still running."""
    running = []

    def start(frames: int, http: dict, output: dict | None = None) -> tuple:
        write_video(tmp_path / "line.avi", frames=frames, size=(120, 160), fps=15, seed=7)
        plc = PLCStandIn()
        sections = {"model": {"path": "default"}, "source": {"uri": str(tmp_path / "line.avi"), "realtime": True},
                    "gate": {"driver": "serial", "port": plc.path},
                    "output": {"results_log": str(tmp_path / "out" / "results.jsonl"),
                               "overlays_dir": str(tmp_path / "out" / "rejects"), **(output or {})},
                    "http": {"port": 0, "client_timeout_s": TIMEOUT_S, **http}}
        (tmp_path / "station.yaml").write_text(json.dumps(sections))
        proc, url = _start(tmp_path / "station.yaml", tmp_path / "stderr.txt", preexec_fn=_limit_fds)
        running.append((proc, plc))
        token = http.get("token")
        query, auth = (f"?token={token}", {"Authorization": f"Bearer {token}"}) if token else ("", {})
        _wait(lambda: _try(url + "healthz", auth)[0] == 200, what="a healthy station")
        return proc, url, Clients(int(url.rsplit(":", 1)[1].strip("/"))), query, auth

    yield start
    for proc, plc in running:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        plc.close()


def _frames(url: str, auth: dict) -> int:
    """Frames judged so far, from /api/state."""
    return _wait(lambda: (r := _try(url + "api/state", auth))[0] == 200 and json.loads(r[1])["counters"]["frames"],
                 what="/api/state")


def _finished(proc, tmp: Path) -> int:
    """Check the station exited 0 with exactly one results-log record per captured frame; the frame count."""
    out = proc.communicate(timeout=60)[0]
    stderr = (tmp / "stderr.txt").read_text()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
    judged, captured = map(int, re.search(r"frames (\d+) \(captured (\d+)\)", out).groups())
    records = [json.loads(line) for line in (tmp / "out" / "results.jsonl").read_text().splitlines()]
    seqs = [r["seq"] for r in records if "verdict" in r]  # the log also holds the gate's events
    assert judged == captured and sorted(seqs) == list(range(captured))
    return captured


@pytest.mark.parametrize("token", [None, TOKEN])
def test_half_sent_silent_trickling_and_resetting_clients_neither_stop_the_station_nor_the_page(station, tmp_path, token):
    frames = 150  # 10 s
    proc, url, clients, query, auth = station(frames, {"token": token})
    for _ in range(20):  # a whole request, then a reset instead of reading the answer: the handler's read or write fails
        sock = socket.create_connection(("127.0.0.1", clients.port), timeout=5)
        sock.sendall(f"GET /live.jpg{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    with socket.create_connection(("127.0.0.1", clients.port), timeout=5) as sock:  # a path urlsplit() refuses
        sock.sendall(b"GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")
    trickling = clients.open(3, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", trickle=True)
    clients.pump(0.3)  # the tricklers hold slots before the flood comes
    before, start = _frames(url, auth), time.monotonic()
    flood = clients.open(200, HALF_SENT) + clients.open(100)  # half-sent requests and silent connections
    _wait(lambda: clients.pump(0.2) or _try(url + "healthz", auth)[0] == 200, what="/healthz 200 during the flood")
    if token:
        _wait(lambda: clients.pump(0.2) or _try(url + "api/state")[0] == 401, what="a 401 without the token")
    while clients.open_count(flood + trickling) and time.monotonic() - start < TIMEOUT_S + SLACK_S:
        clients.pump(0.2)
    assert clients.open_count(flood + trickling) == 0, "connections the server never closed"
    # the tricklers were served (no 503), and cut at the deadline although they kept sending
    assert not any(clients.received[s] for s in trickling)
    assert min(clients.closed[s] for s in trickling) >= TIMEOUT_S - 0.2
    assert any(clients.received[s].startswith(b"HTTP/1.1 503 ") for s in flood)  # over max_clients
    assert _frames(url, auth) > before  # inspecting all along
    assert _finished(proc, tmp_path) == frames  # to the end of the video


def test_accept_failing_with_emfile_neither_stops_the_station_nor_the_page(station, tmp_path):
    # max_clients above what 100 descriptors allow: the flood exhausts them and accept() fails with EMFILE
    # (no reject overlays: a file written then would fail too, which is not the page's to handle)
    proc, url, clients, query, auth = station(300, {"max_clients": 500, "token": TOKEN}, {"overlays_dir": None})
    before = _frames(url, auth)
    flood = clients.open(150, HALF_SENT)
    stderr = tmp_path / "stderr.txt"
    _wait(lambda: clients.pump(0.2) or "cannot accept connections (Too many open files)" in stderr.read_text(),
          what="accept() failing with EMFILE")
    _wait(lambda: clients.pump(0.2) or _try(url + "healthz", auth)[0] == 200, what="/healthz 200 after the flood")
    assert _frames(url, auth) > before  # inspecting all along
    _wait(lambda: clients.pump(0.2) or not clients.open_count(flood), timeout=4 * TIMEOUT_S + SLACK_S,
          what="the server to close the flood's connections")
    proc.send_signal(signal.SIGTERM)
    assert _finished(proc, tmp_path) > 0
