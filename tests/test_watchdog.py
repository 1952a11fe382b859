"""systemd supervision: sd_notify datagrams from a real `station run`, and the watchdog's feeding rule."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np

from edge.sources import Source
from edge.station.pipeline import Pipeline
from edge.station.watchdog import Notifier, WatchdogRule, supervise
from training.synthetic import write_video


def _receive(sock: socket.socket, proc: subprocess.Popen | None = None) -> list[str]:
    """The datagrams on `sock`: those waiting, or all of them until `proc` has ended."""
    sock.settimeout(0.2)
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            if proc is None or proc.poll() is not None:
                return messages


def test_station_run_tells_systemd_ready_watchdog_and_stopping(tmp_path):
    write_video(tmp_path / "line.avi", frames=40, fps=20)
    config = tmp_path / "station.yaml"
    config.write_text(json.dumps({
        "model": {"path": "default"},
        "source": {"uri": str(tmp_path / "line.avi"), "realtime": True},  # 2 s, paced like a camera
        "output": {"results_log": str(tmp_path / "results.jsonl"), "overlays_dir": None, "status_interval_s": 0.05},
    }))
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}  # fed every 0.1 s
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        messages = _receive(sock, proc)  # read as they come, like systemd: a full queue blocks the sender
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    fields = [field for message in messages for field in message.split("\n")]
    assert fields[0] == "READY=1" and fields[-1] == "STOPPING=1"
    assert fields.count("READY=1") == 1 and fields.count("STOPPING=1") == 1
    assert "WATCHDOG=1" in fields
    statuses = [f for f in fields if f.startswith("STATUS=")]
    assert statuses and "frames 40 " in statuses[-1]


def test_without_notify_socket_nothing_is_sent_and_show_is_unchanged(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_environment()
    assert notifier.sock is None
    notifier.send("READY=1")  # no error, no socket
    show = print
    assert supervise(notifier, None, show, 1.0) is show


def test_abstract_socket_names_start_with_at(tmp_path):
    name = f"inspection-station-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        Notifier("@" + name).send("READY=1", "STATUS=ok")
        assert _receive(sock) == ["READY=1\nSTATUS=ok"]


def test_watchdog_pid_of_another_process_disables_the_watchdog(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert Notifier.from_environment().watchdog_s == 30
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier.from_environment().watchdog_s == 0


def _looks(rule: WatchdogRule, judged_by_model: list[int], reconnecting: bool = False) -> list[bool]:
    """The rule asked once a second (t = 1, 2, ...) with the given counts."""
    return [rule.feed(float(t), count, reconnecting) for t, count in enumerate(judged_by_model, 1)]


def test_watchdog_is_fed_at_half_period_while_frames_are_judged():
    fed = _looks(WatchdogRule(period_s=5), list(range(1, 21)))
    assert [t for t, f in enumerate(fed, 1) if f] == [1, 6, 11, 16]


def test_watchdog_is_not_fed_when_no_frame_progresses():
    assert not any(_looks(WatchdogRule(period_s=5), [0] * 30))  # never a frame
    rule = WatchdogRule(period_s=5)
    fed = _looks(rule, [1, 2, 3] + [3] * 27)  # inference hangs after frame 3, judged at t = 3
    assert [t for t, f in enumerate(fed, 1) if f] == [1, 6]  # 6: frame 3 was less than 5 s ago; then never


def test_dropped_frames_judged_fail_safe_are_not_progress():
    """A hung inference thread: capture drops each new frame (dropped + 1), the output stage rejects it
    (judged + 1), so judged - dropped, as the looks see it, dips by one and comes back, never past 2."""
    fed = _looks(WatchdogRule(period_s=5), [1, 2] + [1, 2] * 14)
    assert [t for t, f in enumerate(fed, 1) if f] == [1, 6]  # 6: frame 2 was less than 5 s ago; then never


def test_watchdog_is_fed_while_the_source_handles_an_outage():
    rule = WatchdogRule(period_s=5)
    assert [t for t, f in enumerate(_looks(rule, [0] * 12, reconnecting=True), 1) if f] == [1, 6, 11]
    fed = [rule.feed(float(t), 0, False) for t in range(13, 30)]  # the outage is over, still no frames
    assert [t for t, f in zip(range(13, 30), fed) if f] == [16]


class _Camera(Source):
    """A live source: a new frame every 10 ms until closed."""

    live = paced = True

    def __init__(self):
        super().__init__("camera")
        self.closed = False

    def read(self):
        time.sleep(0.01)
        return None if self.closed else self._frame(np.zeros((8, 8, 3), np.uint8))

    def close(self):
        self.closed = True


def test_a_hung_inference_thread_stops_the_watchdog_while_the_pipeline_runs_on(tmp_path):
    """Inference hangs at frame 30; capture goes on dropping frames and the output stage rejects them,
    but WATCHDOG=1 stops, so systemd would restart the station."""
    hang, hung_at, released_at = threading.Event(), [], []

    def infer(frame):
        if frame.seq >= 30 and not hung_at:
            hung_at.append(time.monotonic())
            hang.wait()

    address, received, listening = str(tmp_path / "notify.sock"), [], threading.Event()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(0.1)

        def listen():
            while not listening.is_set():
                try:
                    fields = sock.recv(4096).decode().split("\n")
                except TimeoutError:
                    continue
                received.append((time.monotonic(), fields))
        listener = threading.Thread(target=listen)
        listener.start()
        source = _Camera()
        pipeline = Pipeline(source, infer, lambda frame, result, timing, reason: result, lambda frame, prob, verdict: False)

        def release():
            released_at.append(time.monotonic())
            pipeline.stop()
            hang.set()
        threading.Timer(3.0, release).start()
        status = supervise(Notifier(address, watchdog_usec=400_000), source, lambda stats: None, 0.05)  # fed every 0.2 s
        stats = pipeline.run(status, 0.05)
        listening.set()
        listener.join()
    feeds = [t for t, fields in received if "WATCHDOG=1" in fields]
    assert hung_at and feeds and feeds[0] < hung_at[0]
    assert stats.dropped > 20  # the pipeline went on taking (and rejecting) frames
    assert not [t for t in feeds if hung_at[0] + 1.0 < t < released_at[0]]
