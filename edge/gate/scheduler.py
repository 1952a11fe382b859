"""The gate's decisions, without a thread or a wire: when each reject fires and what the gate owes.

    scheduler = Scheduler(config.gate, record, now=clock(), acks=False)
    scheduler.expect(seq, t_capture)                      # a verdict is owed by the deadline
    scheduler.verdict(seq, t_capture, True, [1], "defect", now=clock())   # -> Outcome
    scheduler.check(now)                                  # deadlines passed; inspecting on time or not
    for command in scheduler.due(now):                    # the rejects to send now
        ...send...; scheduler.sent(command, clock())
    scheduler.wake_at(now)                                # when to look again (a fire time aside: next_fire)

Every method takes the time `now`, in seconds on the clock of the capture times (the monotonic clock in
the station), so tests drive it with a fake clock. It records the gate's events (reject endings,
missing verdicts, inspecting or not, alarms) through `record`, and leaves the stop-line alarm the wire
still owes in `unsent_alarm`. `delay` timing fires at capture time + distance / belt speed - actuator
lead; `immediate` at once; `encoder` when the belt has moved `distance_mm` since the capture, by the
encoder counts the PLC reports (edge.gate.belt), the actuator lead taken at the belt's speed then: each
report moves the fire times of the pending rejects (a stopped belt holds them; until the first report,
and for a capture older than the reports kept, `delay` timing stands in); `part_id` at once, carrying
the number of the part the PLC announced (`PART <n>`) last before the frame's capture, within
part_window_ms: a part that gets no frame by the verdict deadline is rejected, and a rejected frame
that belongs to no part raises the alarm (neither may pass). Rejects closer than the recovery time on one lane are merged; a frame with no
verdict by its deadline is rejected on all lanes (or the line stopped); too many rejects in a row raise
the alarm; the heartbeat goes out only while a frame was judged on time within the stall time.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edge.core.config import GateConfig
from edge.gate.belt import BeltTracker

log = logging.getLogger(__name__)

ALL_LANES = 0  # the lane of a fail-safe reject, whose defect has no known place
FINAL = ("sent", "acknowledged", "merged", "late", "missed")
WAKE_EVERY_S = 0.005  # the longest sleep: the PLC's lines are read this often
ENCODER_WAKE_S = 0.001  # in encoder timing: each count is read within a millisecond


@dataclass
class RejectCommand:
    """One reject on its way to the gate, and how it ended."""

    seq: int
    lane: int
    fire_at: float  # seconds on the capture clock
    reason: str
    status: str = "pending"  # then: sent, acknowledged, merged, late, missed
    sent_at: float | None = None
    attempts: int = 0
    merged_into: int | None = None
    ack_due: float | None = None
    at_mm: float | None = None  # encoder timing: the belt position (mm) at which it fires
    part: int = -1  # part_id timing: the PLC's part number


@dataclass(frozen=True)
class Outcome:
    """What the gate did with a frame: `verdict` is accept, reject or stop_line (the alarm instead of a
    reject); `late_verdict` is the model's verdict when it came after the frame was handled fail-safe."""

    verdict: str
    reason: str
    on_time: bool = True
    late_verdict: str | None = None


class Scheduler:
    """Owed verdicts, pending rejects and the gate's accounting; `acks`: the wire answers each reject."""

    def __init__(self, config: GateConfig, record: Callable[[dict], None], now: float, acks: bool):
        self.cfg, self.record, self.acks = config, record, acks
        self.speed = config.belt_speed_mm_s
        self.belt = BeltTracker(config.counts_per_mm, config.encoder_modulus) if config.timing == "encoder" else None
        self.parts: deque[list] = deque()  # part_id timing: [time announced, part number, seq of its frame or None]
        self.frame_part: dict[int, int] = {}  # seq -> part number, for frames owed a verdict
        self.pending: list[RejectCommand] = []  # by fire time
        self.last_fired: dict[int, tuple[float, int]] = {}  # lane -> (fire time, seq) of its last reject
        self.owed: dict[int, tuple[float, float]] = {}  # seq -> (capture time, verdict deadline), in capture order
        self.failsafe: dict[int, Outcome] = {}  # frames handled at their deadline, still waiting for a verdict
        self.captures: deque[float] = deque(maxlen=32)  # recent capture times: the frame period
        self.consecutive = self.heartbeats = 0
        self.next_heartbeat = now
        self.last_heartbeat: float | None = None  # when the last one was sent
        self.last_on_time: float | None = None  # when a frame was last judged by the model within its deadline
        self.inspecting = False  # the heartbeat's state: frames judged on time within the stall time
        self.alarmed = False  # the consecutive-reject alarm is raised until a frame is accepted
        self.unsent_alarm: str | None = None  # the last alarm, until the wire has it
        self.counts = {status: 0 for status in FINAL}
        self.failsafe_frames = 0  # frames rejected (or the line stopped) because they had no verdict in time

    # --- what the station tells the gate ----------------------------------------------------

    def expect(self, seq: int, t_capture: float) -> None:
        """A frame was captured: its verdict is owed by the deadline."""
        self.owed[seq] = (t_capture, t_capture + self.cfg.verdict_deadline_ms / 1000)
        self.captures.append(t_capture)
        if self.cfg.timing == "part_id":
            window = self.cfg.part_window_ms / 1000
            for entry in reversed(self.parts):
                if entry[0] <= t_capture:
                    if entry[2] is None and t_capture - entry[0] <= window:
                        entry[2], self.frame_part[seq] = seq, entry[1]
                    break

    def verdict(self, seq: int, t_capture: float, reject: bool, lanes: list[int], reason: str, *, now: float,
                judged: bool = True) -> Outcome:
        """The verdict of frame `seq` (`judged`: by the model); a reject is scheduled on each of its lanes."""
        if seq in self.failsafe:  # already handled when its deadline passed
            done = self.failsafe.pop(seq)
            return Outcome(done.verdict, done.reason, False, "reject" if reject else "accept")
        self.owed.pop(seq, None)
        if judged:
            self.last_on_time = now
        self._count_consecutive(reject)
        part = self.frame_part.pop(seq, -1)
        if reject and self.cfg.timing == "part_id" and part < 0:
            self.alarm(f"frame {seq} rejected, but no part was announced within {self.cfg.part_window_ms:g} ms before it")
            return Outcome("stop_line", reason)
        if reject:
            for lane in lanes or [ALL_LANES]:
                command = self._command(seq, lane, t_capture, now, reason)
                command.part = part
                self._schedule(command)
        return Outcome("reject" if reject else "accept", reason)

    def abandon(self, reason: str, now: float) -> dict[int, Outcome]:
        """Every frame still owed a verdict is handled fail-safe now; returns what was done with each frame
        that never got a verdict."""
        for seq, (t_capture, _) in list(self.owed.items()):
            self._handle_missing(seq, t_capture, now, reason)
        self.owed.clear()
        outcomes, self.failsafe = self.failsafe, {}
        return outcomes

    def alarm(self, reason: str) -> None:
        """The stop-line alarm: recorded, and owed to the wire until `alarm_sent`."""
        log.error("gate: stop-line alarm: %s", reason)
        self.record({"event": "alarm", "reason": reason})
        self.unsent_alarm = reason

    def acknowledge_alarm(self, by: str) -> None:
        """An operator acknowledged the consecutive-reject alarm: recorded; the next run of rejects raises it again."""
        self.record({"event": "alarm_acknowledged", "by": by, "alarmed": self.alarmed})
        self.alarmed = False
        self.consecutive = 0

    def alarm_sent(self) -> None:
        self.unsent_alarm = None

    def set_speed(self, mm_s: float) -> None:
        """The belt speed the PLC reported."""
        self.speed = mm_s

    def part_announced(self, number: int, t: float) -> None:
        """The PLC triggered the camera for part `number` at `t` (part_id timing)."""
        if self.cfg.timing == "part_id":
            self.parts.append([t, number, None])

    def encoder(self, count: int, t: float) -> None:
        """The PLC's encoder read `count` at `t`: the pending rejects' fire times follow the belt."""
        if self.belt is None:
            return
        self.belt.add(count, t)
        for command in self.pending:
            if command.at_mm is not None and command.ack_due is None:
                command.fire_at = self._belt_time(command.at_mm)
        self.pending.sort(key=lambda c: c.fire_at)

    def acknowledged(self, seq: int) -> None:
        """The PLC acknowledged reject `seq`."""
        for command in [c for c in self.pending if c.seq == seq and c.ack_due is not None]:
            self.pending.remove(command)
            self._finish(command, "acknowledged")

    # --- timing ------------------------------------------------------------------------------

    def _command(self, seq: int, lane: int, t_capture: float, now: float, reason: str) -> RejectCommand:
        """The reject of frame `seq` on `lane`, with its fire time (and, in encoder timing, position)."""
        if self.cfg.timing in ("immediate", "part_id"):
            return RejectCommand(seq, lane, now, reason)
        if self.belt is not None and (at := self.belt.position_at(t_capture)) is not None:
            at_mm = at + self.cfg.distance_mm
            return RejectCommand(seq, lane, self._belt_time(at_mm), reason, at_mm=at_mm)
        return RejectCommand(seq, lane, t_capture + self.cfg.distance_mm / self.speed - self.cfg.actuator_lead_ms / 1000,
                             reason)

    def _belt_time(self, at_mm: float) -> float:
        """When the belt reaches `at_mm`, less the actuator lead."""
        return self.belt.time_at(at_mm) - self.cfg.actuator_lead_ms / 1000

    def stall_s(self) -> float:
        """No frame judged on time for this long stops the heartbeat: gate.stall_ms, or the larger of
        four frame periods and the verdict deadline."""
        if self.cfg.stall_ms is not None:
            return self.cfg.stall_ms / 1000
        times = list(self.captures)
        period = float(sorted(b - a for a, b in zip(times, times[1:]))[len(times) // 2 - 1]) if len(times) > 2 else 0.0
        return max(4 * period, self.cfg.verdict_deadline_ms / 1000)

    def next_fire(self) -> float:
        """The fire time of the next reject to send (inf: none)."""
        return min((c.fire_at for c in self.pending if c.ack_due is None), default=math.inf)

    def wake_at(self, now: float) -> float:
        """When the gate thread must look again, a reject's fire time aside: the PLC's lines, the heartbeat,
        the next verdict deadline, the next ack timeout."""
        events = [now + (WAKE_EVERY_S if self.belt is None else ENCODER_WAKE_S)]
        if self.cfg.heartbeat_ms:
            events.append(self.next_heartbeat)
        if self.owed:
            events.append(next(iter(self.owed.values()))[1])
        events += [c.ack_due for c in self.pending if c.ack_due is not None]
        return min(events)

    # --- what the gate thread asks -------------------------------------------------------------

    def check(self, now: float) -> None:
        """Frames past their deadline are handled fail-safe; inspecting on time or not is updated."""
        for seq, (t_capture, deadline) in list(self.owed.items()):
            if now < deadline:
                break  # owed in capture order
            del self.owed[seq]
            self._handle_missing(seq, t_capture, now, f"no verdict within {self.cfg.verdict_deadline_ms:g} ms")
        deadline_s = self.cfg.verdict_deadline_ms / 1000
        while self.parts and now - self.parts[0][0] > deadline_s + self.cfg.part_window_ms / 1000:
            t, number, seq = self.parts.popleft()
            if seq is None:  # the camera gave no frame of this part: it is rejected unjudged
                self.failsafe_frames += 1
                self.record({"event": "missing_frame", "part": number, "reason": "no frame of this part"})
                self._schedule(RejectCommand(-1, ALL_LANES, now, f"fail-safe: no frame of part {number}", part=number))
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

    def due(self, now: float) -> list[RejectCommand]:
        """The rejects to send now, by fire time; those too far past their time are logged missed instead."""
        due = [c for c in self.pending if c.fire_at <= now and c.ack_due is None]
        for command in due:
            overdue_ms = (now - command.fire_at) * 1000
            if overdue_ms > self.cfg.give_up_ms:
                self.pending.remove(command)
                self._finish(command, "missed", note=f"{overdue_ms:.0f} ms past its fire time")
        return [c for c in due if c.status == "pending"]

    def sent(self, command: RejectCommand, sent_at: float) -> None:
        """`command` went out on the wire at `sent_at` (again, when waiting for its ack)."""
        command.attempts += 1
        if command.attempts == 1:
            command.sent_at = sent_at
            command.status = "late" if (sent_at - command.fire_at) * 1000 > self.cfg.late_tolerance_ms else "sent"
            self.last_fired[command.lane] = (command.fire_at, command.seq)
        if self.acks:
            command.ack_due = sent_at + self.cfg.ack_timeout_ms / 1000
        else:
            self.pending.remove(command)
            self._finish(command, command.status)

    def unacknowledged(self, now: float) -> list[RejectCommand]:
        """The rejects whose ack is overdue that are to be sent again; those out of retries end unacknowledged."""
        resend = []
        for command in [c for c in self.pending if c.ack_due is not None and now >= c.ack_due]:
            if command.attempts <= self.cfg.ack_retries:
                log.warning("gate: no ack for reject %d, sending again (attempt %d)", command.seq, command.attempts + 1)
                resend.append(command)
            else:
                self.pending.remove(command)
                self._finish(command, command.status, note=f"no ack after {command.attempts} attempts")
        return resend

    def heartbeat(self, now: float) -> int | None:
        """The heartbeat's number when one is due now and frames are judged on time (then `heartbeat_sent`)."""
        if not self.cfg.heartbeat_ms or now < self.next_heartbeat:
            return None
        self.next_heartbeat = now + self.cfg.heartbeat_ms / 1000
        if not self.inspecting:
            return None
        self.heartbeats += 1
        return self.heartbeats

    def heartbeat_sent(self, now: float) -> None:
        self.last_heartbeat = now

    def stop(self) -> None:
        """The gate is closing: what is still pending is missed."""
        for command in self.pending:
            self._finish(command, "missed", note="station stopped before its fire time")
        self.pending.clear()

    # --- merging, fail-safe, alarms, accounting --------------------------------------------------

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

    def _count_consecutive(self, reject: bool) -> None:
        self.consecutive = self.consecutive + 1 if reject else 0
        limit = self.cfg.max_consecutive_rejects
        if limit and self.consecutive > limit and not self.alarmed:
            self.alarmed = True
            self.alarm(f"{self.consecutive} consecutive rejects (limit {limit})")
        if not reject:
            self.alarmed = False

    def _handle_missing(self, seq: int, t_capture: float, now: float, why: str) -> None:
        """A frame without a verdict: rejected on all lanes, or the line stopped, as configured."""
        self.failsafe_frames += 1
        action = self.cfg.on_missing_verdict
        self.record({"event": "missing_verdict", "seq": seq, "action": action, "reason": why})
        if action == "stop_line":
            self.alarm(f"frame {seq}: {why}")
        else:
            self._count_consecutive(True)
            command = self._command(seq, ALL_LANES, t_capture, now, f"fail-safe: {why}")
            command.fire_at = max(command.fire_at, now)
            self._schedule(command)
        self.failsafe[seq] = Outcome(action, f"fail-safe: {why}", False)

    def _finish(self, command: RejectCommand, status: str, merged_into: int | None = None, note: str = "") -> None:
        command.status = status
        self.counts[status] += 1
        self.record({
            "event": "reject", "seq": command.seq, "lane": command.lane, "status": status, "reason": command.reason,
            **({"part": command.part} if command.part >= 0 else {}),
            "fire_at": round(command.fire_at, 6), "sent_at": None if command.sent_at is None else round(command.sent_at, 6),
            "error_ms": None if command.sent_at is None else round((command.sent_at - command.fire_at) * 1000, 3),
            "attempts": command.attempts, "merged_into": merged_into, "note": note,
        })
