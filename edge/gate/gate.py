"""The reject gate: a thread that drives the scheduler with the clock, sends over the driver, and reopens a lost wire.

    gate = Gate(config.gate, open_driver(config.gate), results_log.write)
    gate.expect(frame.seq, frame.t_capture)            # at capture: a verdict is now owed
    gate.verdict(seq, t_capture, reject, lanes, reason)  # at decision
    gate.close()                                       # fires what is still due, logs the rest

What is decided (fire times, merging, deadlines, the alarm, the heartbeat's state, the accounting) is
edge.gate.scheduler's; this module adds the time, the lock and the wire, which only its thread writes
(a caller never waits for the port, nor holds a reject back). A lost port is reopened with
backoff and the rejects it held are sent late if still useful, else logged as missed. Every reject ends
in the results log as sent, acknowledged, merged, late or missed. The gate thread never touches the
disk: `record` must only hand events on (edge.sinks.results.ResultsLog).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable

from edge.core.config import GateConfig
from edge.core.errors import BadInput
from edge.core.state import GateState
from edge.gate.drivers import Driver, GateLost
from edge.gate.protocol import Ack, Encoder, Part, Speed
from edge.gate.scheduler import Outcome, Scheduler

log = logging.getLogger(__name__)

SPIN_S = 0.0015  # the last moment before a fire time is spun, not slept: a wake-up can be a millisecond late
EARLY_WAKE_S = 0.001  # wake this much before a fire time, then spin


def realtime_priority(priority: int) -> str | None:
    """Runs the calling thread (and the threads it starts after) SCHED_FIFO at `priority`; returns
    None when granted, else why it was refused (no privilege, or not Linux)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError) as exc:
        return str(exc)
    return None


class Gate:
    """Schedules, sends and accounts for every reject; one thread of its own, started here.
    `clock`: the clock of the capture times (monotonic seconds)."""

    peak_rss_mb: float | None = None  # a process of its own has one (edge.gate.process); a thread shares the station's

    def __init__(self, config: GateConfig, driver: Driver, record: Callable[[dict], None] = lambda event: None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg, self.driver, self.record, self.clock = config, driver, record, clock
        self.cond = threading.Condition()
        self.scheduler = Scheduler(config, record, clock(), driver.acks)
        self.closing, self.close_by = False, math.inf
        self.connected, self.retry_at, self.backoff = False, 0.0, config.reconnect_initial_s
        self._connect(first=True)
        self.thread = threading.Thread(target=self._loop, name="gate", daemon=True)
        self.thread.start()

    # --- what the station tells the gate ---------------------------------------------------

    def expect(self, seq: int, t_capture: float) -> None:
        """A frame was captured: its verdict is owed by the deadline."""
        with self.cond:
            self.scheduler.expect(seq, t_capture)
            self.cond.notify()

    def verdict(self, seq: int, t_capture: float, reject: bool, lanes: list[int], reason: str,
                judged: bool = True) -> Outcome:
        """The verdict of frame `seq` (`judged`: by the model, not a fail-safe reject of the pipeline);
        a reject is scheduled on each of its lanes. Returns what the gate did with the frame."""
        with self.cond:
            outcome = self.scheduler.verdict(seq, t_capture, reject, lanes, reason, now=self.clock(), judged=judged)
            self.cond.notify()
            return outcome

    def abandon(self, reason: str) -> dict[int, Outcome]:
        """The station is stopping: every frame still owed a verdict is handled fail-safe now. Returns
        what was done with each frame that never got a verdict (these have no record yet)."""
        with self.cond:
            outcomes = self.scheduler.abandon(reason, self.clock())
            self.cond.notify()
            return outcomes

    def alarm(self, reason: str) -> None:
        """Send the stop-line alarm (from any thread; the gate thread writes it)."""
        with self.cond:
            self.scheduler.alarm(reason)
            self.cond.notify()

    def acknowledge_alarm(self, by: str) -> None:
        """An operator acknowledged the consecutive-reject alarm (from any thread)."""
        with self.cond:
            self.scheduler.acknowledge_alarm(by)

    def stall_s(self) -> float:
        """No frame judged on time for this long stops the heartbeat (edge.gate.scheduler.Scheduler.stall_s)."""
        return self.scheduler.stall_s()

    def state(self) -> GateState:
        """The gate as the operator page shows it; read without the lock, so it never delays a reject."""
        s, now = self.scheduler, self.clock()
        beat, on_time = s.last_heartbeat, s.last_on_time
        return GateState(self.cfg.driver, self.cfg.port, self.cfg.timing, self.connected, s.inspecting,
                         None if on_time is None else round(now - on_time, 2), None if beat is None else round(now - beat, 2),
                         s.heartbeats, len(s.pending), s.alarmed, s.failsafe_frames, dict(s.counts))

    @property
    def failsafe_frames(self) -> int:
        """Frames rejected (or the line stopped) because they had no verdict in time."""
        return self.scheduler.failsafe_frames

    @property
    def heartbeats(self) -> int:
        return self.scheduler.heartbeats

    @property
    def speed(self) -> float:
        """The belt speed in mm/s: gate.belt_speed_mm_s, or the PLC's last `SPD` line."""
        return self.scheduler.speed

    def close(self, timeout: float = 10.0) -> dict[str, int]:
        """Fire what is still due within `timeout` seconds, log the rest as missed; returns the counts.
        Frames still owed a verdict are abandoned first (call `abandon` before to learn which)."""
        self.abandon("station stopped before the verdict")
        with self.cond:
            self.closing, self.close_by = True, self.clock() + timeout
            self.cond.notify()
        self.thread.join()
        self.driver.close()
        return dict(self.scheduler.counts)

    # --- the gate thread ---------------------------------------------------------------------

    def _realtime(self) -> None:
        """The gate thread at gate.realtime_priority (SCHED_FIFO): woken for a fire time, it runs at once,
        whatever else wants the CPU. Refused (no privilege): logged, and the thread runs as before."""
        priority = self.cfg.realtime_priority
        if priority is None:
            return
        if (refused := realtime_priority(priority)) is None:
            log.info("gate: thread at real-time priority %d (SCHED_FIFO)", priority)
        else:
            log.warning("gate: real-time priority %d refused (%s): needs root, CAP_SYS_NICE or LimitRTPRIO=%d in the "
                        "unit; the gate runs at normal priority", priority, refused, priority)

    def _loop(self) -> None:
        self._realtime()
        s = self.scheduler
        while True:
            with self.cond:
                now = self.clock()
                if self.closing and (not s.pending or now > self.close_by):
                    self._send_alarm()
                    s.stop()
                    return
                s.check(now)
                self._send_alarm()
                timeout = min(self._next_fire() - EARLY_WAKE_S, self._wake_at(now)) - now
                if timeout > 0:
                    self.cond.wait(timeout)
                fire = self._next_fire()
            while 0 < fire - self.clock() < SPIN_S:
                pass
            self._service()

    def _next_fire(self) -> float:
        return self.scheduler.next_fire() if self.connected else math.inf

    def _wake_at(self, now: float) -> float:
        wake = self.scheduler.wake_at(now)
        return wake if self.connected else min(wake, self.retry_at)

    def _service(self) -> None:
        now = self.clock()
        with self.cond:
            if not self.connected and now >= self.retry_at:
                self._connect()
            self._send_alarm()
            if self.connected:
                self._on_wire(lambda: self._exchange(now))

    def _exchange(self, now: float) -> None:
        """Read the PLC, send what is due at `now`: rejects, resends without ack, the heartbeat."""
        s = self.scheduler
        messages, read_at = self.driver.poll(), self.clock()
        if counts := [m.count for m in messages if isinstance(m, Encoder)]:
            s.encoder(counts[-1], read_at)  # the newest count at the time it was read; older ones read late
        for message in messages:
            if isinstance(message, Part):
                s.part_announced(message.number, read_at)
            elif isinstance(message, Speed):
                s.set_speed(message.mm_s)
            elif isinstance(message, Ack):
                s.acknowledged(message.seq)
        for command in s.due(now) + s.unacknowledged(now):
            self.driver.reject(command.seq, command.lane, command.part)
            s.sent(command, self.clock())
        if (count := s.heartbeat(now)) is not None:
            self.driver.heartbeat(count)
            s.heartbeat_sent(now)

    # --- the wire ----------------------------------------------------------------------------

    def _connect(self, first: bool = False) -> None:
        try:
            self.driver.open()
        except GateLost as exc:
            if first:
                raise BadInput(f"gate.port {exc}") from None
            self.retry_at = self.clock() + self.backoff
            self.backoff = min(self.backoff * 2, self.cfg.reconnect_max_s)
            return
        if not first:
            self.record({"event": "gate_reconnected", "port": self.driver.port})
            log.warning("gate: reconnected")
        self.connected, self.backoff = True, self.cfg.reconnect_initial_s

    def _lost(self, exc: GateLost) -> None:
        log.warning("gate: connection lost (%s); reconnecting, %d rejects held", exc, len(self.scheduler.pending))
        self.record({"event": "gate_lost", "error": str(exc), "pending": len(self.scheduler.pending)})
        self.driver.close()
        self.connected, self.retry_at = False, self.clock() + self.backoff

    def _send_alarm(self) -> None:
        """The alarm the wire still owes, sent now, or as soon as the port is back. Only the gate thread
        writes to the wire: a caller raising an alarm never waits for the port, nor holds a reject back."""
        if self.scheduler.unsent_alarm is not None and self.connected:
            self._on_wire(self._write_alarm)

    def _write_alarm(self) -> None:
        self.driver.alarm(self.scheduler.unsent_alarm)
        self.scheduler.alarm_sent()

    def _on_wire(self, write: Callable[[], None]) -> None:
        """`write` to the driver; a lost wire is reopened with backoff."""
        try:
            write()
        except GateLost as exc:
            self._lost(exc)
        except Exception as exc:  # never let the gate thread die: a station runs for months
            log.exception("gate: unexpected error")
            self.record({"event": "gate_error", "error": repr(exc)})
            self._lost(GateLost(repr(exc)))
