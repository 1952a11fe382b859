"""The reject gate: when to fire, over which wire, and what happens when things fail.

    gate = Gate(config.gate, open_driver(config.gate), results_log.write)
    gate.expect(frame.seq, frame.t_capture)            # at capture: a verdict is now owed
    gate.verdict(seq, t_capture, reject, lanes, reason)  # at decision
    gate.close()                                       # fires what is still due, logs the rest

`immediate` timing sends a reject as soon as the verdict exists (the PLC tracks the part);
`delay` holds it until the part reaches the gate: capture time + distance / belt speed - actuator
lead, the belt speed fixed or read from `SPD <mm/s>` lines the PLC sends. Fail-safe: a frame with
no verdict by its deadline is rejected (or the line stopped), and so is every frame still owed a
verdict when the station stops (`abandon`); `verdict` returns what the gate did with the frame,
which is what its record says. The heartbeat means "inspecting on time": it is sent only while a
frame was judged on time within the stall time, so the PLC's own watchdog stops the line when the
camera or inference stalls. Too many rejects in a row send the stop-line alarm; a lost port is
reopened with backoff and the rejects it held are sent late if still useful, else logged as
missed. Every reject ends in the results log as sent, acknowledged, merged, late or missed. The
gate thread never touches the disk: `record` must only hand events on (edge.sinks.results.ResultsLog).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass

from edge.core.errors import BadInput
from edge.core.state import GateState
from edge.gate.drivers import Driver, GateLost

log = logging.getLogger(__name__)

ALL_LANES = 0  # the lane of a fail-safe reject, whose defect has no known place


@dataclass
class RejectCommand:
    """One reject on its way to the gate, and how it ended."""

    seq: int
    lane: int
    fire_at: float  # monotonic seconds
    reason: str
    status: str = "pending"  # then: sent, acknowledged, merged, late, missed
    sent_at: float | None = None
    attempts: int = 0
    merged_into: int | None = None
    ack_due: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What the gate did with a frame: `verdict` is accept, reject or stop_line (the alarm instead of a
    reject); `late_verdict` is the model's verdict when it came after the frame was handled fail-safe."""

    verdict: str
    reason: str
    on_time: bool = True
    late_verdict: str | None = None


class Gate:
    """Schedules, sends and accounts for every reject; one thread of its own."""

    def __init__(self, config, driver: Driver, record=lambda event: None):
        self.cfg, self.driver, self.record = config, driver, record
        self.speed = config.belt_speed_mm_s
        self.cond = threading.Condition()
        self.pending: list[RejectCommand] = []
        self.last_fired: dict[int, tuple[float, int]] = {}  # lane -> (fire time, seq) of its last reject
        self.owed: dict[int, tuple[float, float]] = {}  # seq -> (capture time, verdict deadline)
        self.failsafe: dict[int, Outcome] = {}  # frames handled at their deadline, still waiting for a verdict
        self.captures: deque[float] = deque(maxlen=32)  # recent capture times: the frame period
        self.ack_regex = re.compile(re.escape(config.ack_pattern or "").replace(re.escape("{seq}"), r"(\d+)"))
        self.consecutive = self.heartbeats = 0
        self.last_heartbeat: float | None = None  # monotonic time of the last one sent
        self.last_on_time: float | None = None  # when a frame was last judged by the model within its deadline
        self.inspecting = False  # the heartbeat's state: frames judged on time within the stall time
        self.alarmed = self.closing = False
        self.unsent_alarm: str | None = None
        self.connected, self.retry_at, self.backoff = False, 0.0, config.reconnect_initial_s
        self.counts = {s: 0 for s in ("sent", "acknowledged", "merged", "late", "missed")}
        self.failsafe_frames = 0  # frames rejected (or the line stopped) because they had no verdict in time
        self.next_heartbeat = time.monotonic()
        self._connect(first=True)
        self.thread = threading.Thread(target=self._loop, name="gate", daemon=True)
        self.thread.start()

    # --- what the station tells the gate ---------------------------------------------------

    def expect(self, seq: int, t_capture: float) -> None:
        """A frame was captured: its verdict is owed by the deadline."""
        with self.cond:
            self.owed[seq] = (t_capture, t_capture + self.cfg.verdict_deadline_ms / 1000)
            self.captures.append(t_capture)
            self.cond.notify()

    def verdict(self, seq: int, t_capture: float, reject: bool, lanes: list[int], reason: str,
                judged: bool = True) -> Outcome:
        """The verdict of frame `seq` (`judged`: by the model, not a fail-safe reject of the pipeline);
        a reject is scheduled on each of its lanes. Returns what the gate did with the frame."""
        with self.cond:
            if seq in self.failsafe:  # already handled when its deadline passed
                done = self.failsafe.pop(seq)
                return Outcome(done.verdict, done.reason, False, "reject" if reject else "accept")
            self.owed.pop(seq, None)
            if judged:
                self.last_on_time = time.monotonic()
            self._count_consecutive(reject, reason)
            if reject:
                for lane in lanes or [ALL_LANES]:
                    self._schedule(RejectCommand(seq, lane, self._fire_time(t_capture), reason))
            self.cond.notify()
            return Outcome("reject" if reject else "accept", reason)

    def abandon(self, reason: str) -> dict[int, Outcome]:
        """The station is stopping: every frame still owed a verdict is handled fail-safe now. Returns
        what was done with each frame that never got a verdict (these have no record yet)."""
        with self.cond:
            for seq, (t_capture, _) in list(self.owed.items()):
                self._handle_missing(seq, t_capture, time.monotonic(), reason)
            self.owed.clear()
            outcomes, self.failsafe = self.failsafe, {}
            self.cond.notify()
            return outcomes

    def alarm(self, reason: str) -> None:
        """Send the stop-line alarm (from any thread)."""
        with self.cond:
            self._alarm(reason)

    def stall_s(self) -> float:
        """No frame judged on time for this long stops the heartbeat: gate.stall_ms, or the larger of
        four frame periods and the verdict deadline."""
        if self.cfg.stall_ms is not None:
            return self.cfg.stall_ms / 1000
        times = list(self.captures)
        period = float(sorted(b - a for a, b in zip(times, times[1:]))[len(times) // 2 - 1]) if len(times) > 2 else 0.0
        return max(4 * period, self.cfg.verdict_deadline_ms / 1000)

    def state(self) -> GateState:
        """The gate as the operator page shows it; read without the lock, so it never delays a reject."""
        beat, on_time, now = self.last_heartbeat, self.last_on_time, time.monotonic()
        return GateState(self.cfg.driver, self.cfg.port, self.cfg.timing, self.connected, self.inspecting,
                         None if on_time is None else round(now - on_time, 2), None if beat is None else round(now - beat, 2),
                         self.heartbeats, len(self.pending), self.alarmed, self.failsafe_frames, dict(self.counts))

    # --- timing ------------------------------------------------------------------------------

    def _fire_time(self, t_capture: float) -> float:
        if self.cfg.timing == "immediate":
            return time.monotonic()
        travel = self.cfg.distance_mm / self.speed
        return t_capture + travel - self.cfg.actuator_lead_ms / 1000

    def _schedule(self, command: RejectCommand) -> None:
        recovery = self.cfg.recovery_ms / 1000
        for other in self.pending:
            if other.lane in (command.lane, ALL_LANES) and abs(other.fire_at - command.fire_at) < recovery:
                return self._finish(command, "merged", merged_into=other.seq)
        last = self.last_fired.get(command.lane)
        if last is not None and abs(command.fire_at - last[0]) < recovery:
            return self._finish(command, "merged", merged_into=last[1])
        self.pending.append(command)
        self.pending.sort(key=lambda c: c.fire_at)

    def _count_consecutive(self, reject: bool, reason: str) -> None:
        self.consecutive = self.consecutive + 1 if reject else 0
        limit = self.cfg.max_consecutive_rejects
        if limit and self.consecutive > limit and not self.alarmed:
            self.alarmed = True
            self._alarm(f"{self.consecutive} consecutive rejects (limit {limit})")
        if not reject:
            self.alarmed = False

    # --- the gate thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.cond:
                now = time.monotonic()
                if self.closing and (not self.pending or now > self.close_by):
                    for command in self.pending:
                        self._finish(command, "missed", note="station stopped before its fire time")
                    self.pending.clear()
                    return
                self._check_deadlines(now)
                self._watch_inspecting(now)
                timeout = min(self._next_fire() - 0.001, self._next_housekeeping(now)) - now
                if timeout > 0:
                    self.cond.wait(timeout)
                fire = self._next_fire()
            while 0 < fire - time.monotonic() < 0.0015:  # the last moment before a reject: spin
                pass
            self._service()

    def _next_fire(self) -> float:
        if not self.connected:
            return math.inf
        return min((c.fire_at for c in self.pending if c.ack_due is None), default=math.inf)

    def _next_housekeeping(self, now: float) -> float:
        events = [now + 0.005]  # read the PLC's lines every 5 ms
        if self.cfg.heartbeat_ms:
            events.append(self.next_heartbeat)
        if self.owed:
            events.append(next(iter(self.owed.values()))[1])
        events += [c.ack_due for c in self.pending if c.ack_due is not None]
        if not self.connected:
            events.append(self.retry_at)
        return min(events)

    def _check_deadlines(self, now: float) -> None:
        for seq, (t_capture, deadline) in list(self.owed.items()):
            if now < deadline:
                break  # owed in capture order
            del self.owed[seq]
            self._handle_missing(seq, t_capture, now, f"no verdict within {self.cfg.verdict_deadline_ms:g} ms")

    def _handle_missing(self, seq: int, t_capture: float, now: float, why: str) -> None:
        """A frame without a verdict: rejected on all lanes, or the line stopped, as configured."""
        self.failsafe_frames += 1
        action = self.cfg.on_missing_verdict
        self.record({"event": "missing_verdict", "seq": seq, "action": action, "reason": why})
        if action == "stop_line":
            self._alarm(f"frame {seq}: {why}")
        else:
            self._count_consecutive(True, why)
            self._schedule(RejectCommand(seq, ALL_LANES, max(self._fire_time(t_capture), now), f"fail-safe: {why}"))
        self.failsafe[seq] = Outcome(action, f"fail-safe: {why}", False)

    def _service(self) -> None:
        now = time.monotonic()
        with self.cond:
            if not self.connected and now >= self.retry_at:
                self._connect()
            if not self.connected:
                return
            try:
                self._read_plc()
                for command in [c for c in self.pending if c.fire_at <= now and c.ack_due is None]:
                    self._fire(command, now)
                self._check_acks(now)
                if self.cfg.heartbeat_ms and now >= self.next_heartbeat:
                    self._heartbeat(now)
            except GateLost as exc:
                self._lost(exc)
            except Exception as exc:  # never let the gate thread die: a station runs for months
                log.exception("gate: unexpected error")
                self.record({"event": "gate_error", "error": repr(exc)})
                self._lost(GateLost(repr(exc)))

    def _watch_inspecting(self, now: float) -> None:
        """Whether frames are judged on time; each stop and resumption is an event in the results log."""
        stall = self.stall_s()
        inspecting = self.last_on_time is not None and now - self.last_on_time <= stall
        if inspecting != self.inspecting:
            self.inspecting = inspecting
            if inspecting:
                log.info("gate: frames judged on time; heartbeat on")
                self.record({"event": "inspecting", "heartbeat": bool(self.cfg.heartbeat_ms)})
            else:
                log.warning("gate: no frame judged on time for %.2f s; heartbeat stopped", stall)
                self.record({"event": "not_inspecting", "reason": f"no frame judged on time for {stall:.2f} s"})

    def _heartbeat(self, now: float) -> None:
        """Sent only while inspecting on time."""
        self.next_heartbeat = now + self.cfg.heartbeat_ms / 1000
        if self.inspecting:
            self.heartbeats += 1
            self.driver.heartbeat(self.heartbeats)
            self.last_heartbeat = now

    def _fire(self, command: RejectCommand, now: float, retry: bool = False) -> None:
        overdue_ms = (now - command.fire_at) * 1000
        if not retry and overdue_ms > self.cfg.give_up_ms:
            self.pending.remove(command)
            return self._finish(command, "missed", note=f"{overdue_ms:.0f} ms past its fire time")
        self.driver.reject(command.seq, command.lane, self.cfg.pulse_ms)
        command.attempts += 1
        if not retry:
            command.sent_at = time.monotonic()
            command.status = "late" if overdue_ms > self.cfg.late_tolerance_ms else "sent"
            self.last_fired[command.lane] = (command.fire_at, command.seq)
        if self.cfg.ack_pattern:
            command.ack_due = time.monotonic() + self.cfg.ack_timeout_ms / 1000
        else:
            self.pending.remove(command)
            self._finish(command, command.status)

    def _check_acks(self, now: float) -> None:
        for command in [c for c in self.pending if c.ack_due is not None and now >= c.ack_due]:
            if command.attempts <= self.cfg.ack_retries:
                log.warning("gate: no ack for reject %d, sending again (attempt %d)", command.seq, command.attempts + 1)
                self._fire(command, now, retry=True)
            else:
                self.pending.remove(command)
                self._finish(command, command.status, note=f"no ack after {command.attempts} attempts")

    def _read_plc(self) -> None:
        for line in self.driver.read_lines():
            if line.startswith("SPD"):
                try:
                    speed = float(line.split()[1])
                    if speed <= 0:
                        raise ValueError
                    self.speed = speed
                except (IndexError, ValueError):
                    log.warning("gate: malformed speed line %r ignored (expected 'SPD <mm/s>', > 0)", line)
            elif self.cfg.ack_pattern and (match := self.ack_regex.fullmatch(line)):
                seq = int(match.group(1))
                for command in [c for c in self.pending if c.seq == seq and c.ack_due is not None]:
                    self.pending.remove(command)
                    self._finish(command, "acknowledged")

    # --- connection, alarms, accounting ------------------------------------------------------

    def _connect(self, first: bool = False) -> None:
        try:
            self.driver.open()
        except GateLost as exc:
            if first:
                raise BadInput(f"gate.port {exc}") from None
            self.retry_at = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, self.cfg.reconnect_max_s)
            return
        if not first:
            self.record({"event": "gate_reconnected", "port": getattr(self.driver, "port", None)})
            log.warning("gate: reconnected")
        self.connected, self.backoff = True, self.cfg.reconnect_initial_s
        self._send_alarm()

    def _lost(self, exc: GateLost) -> None:
        log.warning("gate: connection lost (%s); reconnecting, %d rejects held", exc, len(self.pending))
        self.record({"event": "gate_lost", "error": str(exc), "pending": len(self.pending)})
        self.driver.close()
        self.connected, self.retry_at = False, time.monotonic() + self.backoff

    def _alarm(self, reason: str) -> None:
        log.error("gate: stop-line alarm: %s", reason)
        self.record({"event": "alarm", "reason": reason})
        self.unsent_alarm = reason  # sent now, or as soon as the port is back
        self._send_alarm()

    def _send_alarm(self) -> None:
        if self.unsent_alarm is None or not self.connected:
            return
        try:
            self.driver.alarm(self.unsent_alarm)
            self.unsent_alarm = None
        except GateLost as exc:
            self._lost(exc)

    def _finish(self, command: RejectCommand, status: str, merged_into: int | None = None, note: str = "") -> None:
        command.status = status
        self.counts[status] += 1
        self.record({
            "event": "reject", "seq": command.seq, "lane": command.lane, "status": status, "reason": command.reason,
            "fire_at": round(command.fire_at, 6), "sent_at": None if command.sent_at is None else round(command.sent_at, 6),
            "error_ms": None if command.sent_at is None else round((command.sent_at - command.fire_at) * 1000, 3),
            "attempts": command.attempts, "merged_into": merged_into, "note": note,
        })

    def close(self, timeout: float = 10.0) -> dict[str, int]:
        """Fire what is still due within `timeout` seconds, log the rest as missed; returns the counts.
        Frames still owed a verdict are abandoned first (call `abandon` before to learn which)."""
        self.abandon("station stopped before the verdict")
        with self.cond:
            self.closing, self.close_by = True, time.monotonic() + timeout
            self.cond.notify()
        self.thread.join()
        self.driver.close()
        return dict(self.counts)
