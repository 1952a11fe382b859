"""The reject gate in a process of its own, so that no busy interpreter holds a reject up.

    gate = GateProcess(config.gate, results_log.write)   # starts `python -m edge.gate.process`
    gate.expect(seq, t_capture); gate.verdict(...); gate.state(); gate.close()   # as edge.gate.Gate

In the station's process inference, image work and the sinks take turns at one interpreter lock;
a gate thread there waits its turn for every wake-up. Here edge.gate.Gate, its driver and its port
run in a small child process: its thread at gate.realtime_priority (SCHED_FIFO) where the OS allows
it, its memory locked where the limit allows it (LimitMEMLOCK=infinity in the unit, or root), so a
fire time never waits for the station's interpreter or for a page-in. The station talks to it over
a socket pair: calls and answers one way, and back, in order, the gate's events for the results log
(the child never touches the disk). The child goes on where the station stalls: a frame owed a
verdict is rejected fail-safe at its deadline and the heartbeat stops, even while the station's
process is stopped; it exits when the station closes it or its end of the socket closes (it ignores
SIGINT and SIGTERM, which reach it with the station's: the station stops first, then closes it).

A child that dies (or does not answer a call within CALL_TIMEOUT_S, and is killed) is replaced: the
rejects it still held end `missed`, the frames still owed a verdict are owed to the new one, and a
call in flight is made again there.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import logging
import os
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from edge.core.config import GateConfig
from edge.core.errors import BadInput
from edge.core.state import GateState
from edge.gate.scheduler import ALL_LANES, FINAL, Outcome

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 2.0  # a child that does not answer a call this long is killed and replaced
RESTART_WAIT_S = 1.0  # between failed starts of a replacement
GIL_SWITCH_INTERVAL_S = 0.0005  # as the station's: a woken gate thread gets the interpreter at once
MCL_CURRENT, MCL_FUTURE = 1, 2


class GateProcess:
    """edge.gate.Gate's calls, carried out by a child process that owns the driver and the port."""

    def __init__(self, config: GateConfig, record: Callable[[dict], None] = lambda event: None):
        self.cfg, self.record = config, record
        self.call_lock, self.send_lock = threading.Lock(), threading.Lock()
        self.replies: queue.SimpleQueue = queue.SimpleQueue()
        self.ids = itertools.count()
        self.up = threading.Event()
        self.closing = False
        self.owed: dict[int, float] = {}  # seq -> capture time: expected, no verdict handed on yet
        self.held: dict[tuple[int, int], str] = {}  # (seq, lane) -> reason: rejects the child holds, not yet ended
        self.ended: deque[tuple[int, int]] = deque(maxlen=256)  # rejects that ended before their verdict's answer
        self.lost: Counter[str] = Counter()  # rejects ended here, for a child that died holding them
        self.restarts = 0
        self.final: dict[str, Any] | None = None  # the closed child's last figures
        self.peak_rss_mb: float | None = None  # the child's, read as it closes
        self.child, self.conn = self._start()
        self.up.set()
        self.reader = threading.Thread(target=self._read, name="gate-reader", daemon=True)
        self.reader.start()

    # --- what the station tells the gate (edge.gate.Gate's calls) ---------------------------

    def expect(self, seq: int, t_capture: float) -> None:
        self.owed[seq] = t_capture
        self._send(None, "expect", seq, t_capture)

    def verdict(self, seq: int, t_capture: float, reject: bool, lanes: list[int], reason: str,
                judged: bool = True) -> Outcome:
        outcome = self._call("verdict", seq, t_capture, reject, lanes, reason, judged)
        self.owed.pop(seq, None)
        if outcome.verdict == "reject" and outcome.on_time:
            self.held.update({(seq, lane): reason for lane in lanes or [ALL_LANES] if (seq, lane) not in self.ended})
        return outcome

    def abandon(self, reason: str) -> dict[int, Outcome]:
        outcomes = self._call("abandon", reason)
        self.owed.clear()
        return outcomes

    def alarm(self, reason: str) -> None:
        self._send(None, "alarm", reason)

    def acknowledge_alarm(self, by: str) -> None:
        self._send(None, "acknowledge_alarm", by)

    def state(self) -> GateState:
        if self.final is not None:
            return self.final["state"]
        state = self._call("state")
        return dataclasses.replace(state, rejects=dict(Counter(state.rejects) + self.lost))

    @property
    def failsafe_frames(self) -> int:
        return self.state().failsafe_frames

    def close(self, timeout: float = 10.0) -> dict[str, int]:
        """Fire what is due within `timeout` s, log the rest missed; the child exits. Returns the counts."""
        if self.final is None:
            self.abandon("station stopped before the verdict")
            state = self._call("state")
            from edge.core.device import memory_mb  # not at import: the child need not load what it imports

            try:
                self.peak_rss_mb = memory_mb("VmHWM", self.child.pid)
            except OSError:
                pass
            self.closing = True
            counts = self._call("close", timeout, timeout=timeout + CALL_TIMEOUT_S) or {}
            self.reader.join(CALL_TIMEOUT_S)
            self.child.wait(CALL_TIMEOUT_S)
            counts = dict(Counter(counts) + self.lost)
            self.final = {"state": dataclasses.replace(state, connected=False, pending=0, rejects=counts)}
        return dict(self.final["state"].rejects)

    # --- the pipe -------------------------------------------------------------------------------

    def _start(self) -> tuple[subprocess.Popen, Connection]:
        """A child with a Gate on this config; its failure to start (a port that will not open) is BadInput."""
        mine, theirs = socket.socketpair()
        child = subprocess.Popen([sys.executable, "-m", "edge.gate.process", str(theirs.fileno())],
                                 pass_fds=[theirs.fileno()], close_fds=True)
        theirs.close()
        conn = Connection(mine.detach())
        conn.send(self.cfg.model_dump())
        try:
            kind, message = conn.recv()
        except (EOFError, OSError):
            kind, message = "error", f"gate process exited with {child.wait()}"
        if kind == "error":
            conn.close()
            child.wait()
            raise BadInput(message)
        for seq, t_capture in list(self.owed.items()):  # a replacement owes what its predecessor owed
            conn.send((None, "expect", (seq, t_capture)))
        return child, conn

    def _send(self, call_id: int | None, method: str, *args: Any) -> None:
        with self.send_lock:
            try:
                self.conn.send((call_id, method, args))
            except OSError:
                pass  # a dead child: the reader replaces it, and what it was owed goes to the new one

    def _call(self, method: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        """`method` carried out by the child, its answer returned; made again on a replacement child."""
        with self.call_lock:
            while True:
                self.up.wait()
                call_id, child = next(self.ids), self.restarts
                self._send(call_id, method, *args)
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        reply_id, value = self.replies.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        if self.closing:
                            return None
                        log.error("gate process: no answer to %s in %.1f s; replacing it", method, timeout)
                        self.up.clear()
                        self.child.kill()
                        break
                    if reply_id is None and (self.closing or value > child):  # the child called died
                        if self.closing:
                            return None
                        break  # made again on the next one
                    if reply_id == call_id:
                        return value

    def _read(self) -> None:
        """The child's events and answers, in the order it sent them; a dead child is replaced."""
        while True:
            try:
                call_id, value = self.conn.recv()
            except (EOFError, OSError):
                if self.closing:
                    self.replies.put((None, self.restarts + 1))
                    return
                self._replace()
                continue
            if call_id is not None:
                self.replies.put((call_id, value))
            else:
                self._event(value)

    def _event(self, event: dict) -> None:
        if event.get("event") == "reject" and event["status"] in FINAL:
            key = (event["seq"], event["lane"])
            if self.held.pop(key, None) is None:
                self.ended.append(key)
        elif event.get("event") == "missing_verdict" and event["action"] == "reject":
            self.held[(event["seq"], ALL_LANES)] = f"fail-safe: {event['reason']}"
        self.record(event)

    def _replace(self) -> None:
        self.up.clear()
        code = self.child.wait()
        log.error("gate process exited with %s; %d rejects it held are missed; starting another", code, len(self.held))
        self.record({"event": "gate_process_died", "exitcode": code, "held": len(self.held)})
        for (seq, lane), reason in sorted(self.held.items()):
            self.lost["missed"] += 1
            self.record({"event": "reject", "seq": seq, "lane": lane, "status": "missed", "reason": reason,
                         "note": f"the gate process died (exit code {code}) before its fire time"})
        self.held.clear()
        while True:
            try:
                child, conn = self._start()
                break
            except BadInput as exc:
                log.error("gate process: %s; trying again", exc)
                time.sleep(RESTART_WAIT_S)
        with self.send_lock:
            self.conn.close()
            self.child, self.conn = child, conn
        self.restarts += 1
        self.replies.put((None, self.restarts))  # a call made to the dead child is made again
        self.up.set()


# --- the child ----------------------------------------------------------------------------------

def lock_memory() -> None:
    """mlockall where RLIMIT_MEMLOCK allows the whole process (unlimited, or root): a fire time never
    waits for a page-in. Under a finite limit locking future pages would fail allocations: skipped."""
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and os.geteuid() != 0:
        log.info("gate process: memory not locked (LimitMEMLOCK=%d bytes; set LimitMEMLOCK=infinity)", soft)
        return
    if ctypes.CDLL(None, use_errno=True).mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        log.warning("gate process: mlockall failed: %s", os.strerror(ctypes.get_errno()))
    else:
        log.info("gate process: memory locked")


def serve(conn: Connection) -> None:
    """The child: a Gate on the config the station sends; its calls from `conn`, its events back."""
    from edge.gate.drivers import open_driver
    from edge.gate.gate import Gate

    out: queue.SimpleQueue = queue.SimpleQueue()

    def send_all() -> None:  # the one writer of `conn`: the gate thread only queues, never waits for the socket
        while (item := out.get()) is not None:
            try:
                conn.send(item)
            except OSError:
                return

    config = GateConfig(**conn.recv())
    try:
        gate = Gate(config, open_driver(config), lambda event: out.put((None, event)))
    except BadInput as exc:
        conn.send(("error", str(exc)))
        return
    lock_memory()
    conn.send(("ok", None))
    sender = threading.Thread(target=send_all, name="gate-events")
    sender.start()
    calls = {"expect": gate.expect, "verdict": gate.verdict, "abandon": gate.abandon, "alarm": gate.alarm,
             "acknowledge_alarm": gate.acknowledge_alarm, "state": gate.state, "close": gate.close}
    while True:
        try:
            call_id, method, args = conn.recv()
        except (EOFError, OSError):  # the station is gone: fire what is due, then exit
            gate.close()
            break
        value = calls[method](*args)
        if call_id is not None:
            out.put((call_id, value))
        if method == "close":
            break
    out.put(None)
    sender.join()


if __name__ == "__main__":
    for stop in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C and systemd's stop reach the whole group: the
        signal.signal(stop, signal.SIG_IGN)        # station stops first, then closes this gate (or dies: EOF)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    serve(Connection(int(sys.argv[1])))
