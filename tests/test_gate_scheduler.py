"""The gate's scheduler on a fake clock: every time is a number the test chooses; no thread, no wire, no sleep."""

import itertools
import logging
import math

import pytest

from edge.core.config import GateConfig
from edge.gate import ALL_LANES, BeltTracker, Outcome, Scheduler

T = 1024.0  # the fake clock's start; times here are sums of powers of two where the test compares them exactly


class Line:
    """The scheduler and what the gate thread would do with it at each time: what it sent, what it recorded."""

    def __init__(self, acks: bool = False, **settings):
        self.events: list[dict] = []
        self.sent: list[tuple[float, str, int, int]] = []  # (time, "reject"/"heartbeat", seq or count, lane)
        self.s = Scheduler(GateConfig(**settings), self.events.append, T, acks)

    def at(self, now: float) -> None:
        """One pass of the gate thread at `now`, every send taking no time."""
        self.s.check(now)
        for command in self.s.due(now) + self.s.unacknowledged(now):
            self.sent.append((now, "reject", command.seq, command.lane))
            self.s.sent(command, now)
        if (count := self.s.heartbeat(now)) is not None:
            self.sent.append((now, "heartbeat", count, 0))
            self.s.heartbeat_sent(now)

    def run(self, start: float, end: float, step: float = 0.001) -> None:
        for i in range(round((end - start) / step) + 1):
            self.at(start + i * step)

    def rejects(self) -> dict[int, dict]:
        return {e["seq"]: e for e in self.events if e["event"] == "reject"}

    def named(self, event: str) -> list[dict]:
        return [e for e in self.events if e["event"] == event]


def test_delay_timing_fires_at_capture_plus_travel_minus_lead_and_not_before():
    line = Line(timing="delay", distance_mm=125, belt_speed_mm_s=500, actuator_lead_ms=62.5, heartbeat_ms=0)
    line.s.verdict(1, T, True, [2], "defect", now=T + 0.03)  # due at T + 0.25 s - 0.0625 s
    assert line.s.next_fire() == T + 0.1875
    line.at(T + 0.187)
    assert not line.sent
    line.at(T + 0.1875)
    assert line.sent == [(T + 0.1875, "reject", 1, 2)]
    event = line.rejects()[1]
    assert (event["status"], event["lane"], event["error_ms"], event["attempts"]) == ("sent", 2, 0.0, 1)
    assert event["fire_at"] == round(T + 0.1875, 6) and not line.s.pending


def test_immediate_timing_fires_at_the_verdict():
    line = Line(heartbeat_ms=0)
    line.s.verdict(1, T, True, [1], "defect", now=T + 0.08)
    assert line.s.next_fire() == T + 0.08


def test_a_reported_belt_speed_sets_the_delay_of_later_verdicts():
    line = Line(timing="delay", distance_mm=100, belt_speed_mm_s=100, heartbeat_ms=0, recovery_ms=0)
    line.s.verdict(1, T, True, [1], "defect", now=T)  # 100 mm at 100 mm/s
    line.s.set_speed(1000)
    line.s.verdict(2, T, True, [2], "defect", now=T)  # at 1000 mm/s: 0.1 s
    assert [(c.seq, c.fire_at) for c in line.s.pending] == [(2, pytest.approx(T + 0.1)), (1, pytest.approx(T + 1.0))]


def test_a_reject_found_due_late_is_logged_late_and_one_too_late_is_not_sent():
    line = Line(heartbeat_ms=0, recovery_ms=0, late_tolerance_ms=20, give_up_ms=1000)
    line.s.verdict(1, T, True, [1], "defect", now=T)
    line.s.verdict(2, T, True, [2], "defect", now=T)
    line.at(T + 0.021)  # 21 ms after its time: late
    line.s.verdict(3, T, True, [1], "defect", now=T + 0.1)
    line.at(T + 1.2)  # 1.1 s after its time: missed, never sent
    rejects = line.rejects()
    assert [rejects[s]["status"] for s in (1, 2, 3)] == ["late", "late", "missed"]
    assert rejects[1]["error_ms"] == pytest.approx(21) and rejects[3]["sent_at"] is None
    assert rejects[3]["note"] == "1100 ms past its fire time" and [s for _, _, s, _ in line.sent] == [1, 2]


def test_a_reject_whose_write_takes_long_is_logged_late_with_the_time_it_went_out():
    line = Line(heartbeat_ms=0, late_tolerance_ms=20)
    line.s.verdict(1, T, True, [1], "defect", now=T)
    (command,) = line.s.due(T)
    line.s.sent(command, T + 0.03125)  # a port that drained slowly
    assert (line.rejects()[1]["status"], line.rejects()[1]["error_ms"]) == ("late", 31.25)


def test_a_missing_verdict_is_rejected_on_all_lanes_at_its_deadline_and_its_late_verdict_changes_nothing():
    line = Line(verdict_deadline_ms=50, heartbeat_ms=0)
    line.s.expect(1, T)
    line.s.expect(2, T + 0.01)
    assert line.s.verdict(2, T + 0.01, False, [], "clean", now=T + 0.02) == Outcome("accept", "clean")
    line.at(T + 0.0499)
    assert not line.named("missing_verdict")  # not yet
    assert line.s.wake_at(T + 0.0499) == pytest.approx(T + 0.05)  # the deadline wakes the gate
    line.at(T + 0.05)
    assert line.sent == [(T + 0.05, "reject", 1, ALL_LANES)]
    assert line.named("missing_verdict") == [{"event": "missing_verdict", "seq": 1, "action": "reject",
                                              "reason": "no verdict within 50 ms"}]
    assert line.rejects()[1]["reason"] == "fail-safe: no verdict within 50 ms"
    late = line.s.verdict(1, T, False, [], "clean", now=T + 0.06)
    assert late == Outcome("reject", "fail-safe: no verdict within 50 ms", on_time=False, late_verdict="accept")
    assert line.s.failsafe_frames == 1 and len(line.rejects()) == 1


def test_a_fail_safe_reject_fires_when_the_part_reaches_the_gate_or_at_once_when_that_has_passed():
    line = Line(timing="delay", distance_mm=500, belt_speed_mm_s=1000, verdict_deadline_ms=62.5, heartbeat_ms=0,
                recovery_ms=0)
    line.s.expect(1, T)
    line.s.check(T + 0.0625)
    line.s.set_speed(16000)  # the belt sped up: frame 2's part reaches the gate before its deadline
    line.s.expect(2, T + 0.125)
    line.s.check(T + 0.1875)
    assert [(c.seq, c.fire_at) for c in line.s.pending] == [(2, T + 0.1875), (1, T + 0.5)]


def test_a_missing_verdict_stops_the_line_when_so_configured():
    line = Line(verdict_deadline_ms=50, heartbeat_ms=0, on_missing_verdict="stop_line")
    line.s.expect(4, T)
    line.at(T + 0.05)
    assert not line.sent and not line.rejects()
    assert [e["reason"] for e in line.named("alarm")] == ["frame 4: no verdict within 50 ms"]
    assert line.s.unsent_alarm == "frame 4: no verdict within 50 ms"
    line.s.alarm_sent()
    assert line.s.unsent_alarm is None
    assert line.s.verdict(4, T, True, [1], "defect", now=T + 0.1).verdict == "stop_line"


def test_abandon_handles_every_owed_frame_fail_safe_and_returns_what_was_done():
    line = Line(verdict_deadline_ms=1000, heartbeat_ms=0, recovery_ms=0)
    for seq in (1, 2, 3):
        line.s.expect(seq, T + seq * 0.1)
    line.s.verdict(2, T + 0.2, False, [], "clean", now=T + 0.25)
    outcomes = line.s.abandon("station stopped before the verdict", now=T + 0.4)
    assert set(outcomes) == {1, 3}
    assert outcomes[1] == Outcome("reject", "fail-safe: station stopped before the verdict", on_time=False)
    assert [c.seq for c in line.s.pending] == [1, 3] and not line.s.owed
    line.at(T + 0.4)
    assert [s for _, _, s, _ in line.sent] == [1, 3]


def test_rejects_closer_than_the_recovery_time_on_one_lane_are_merged():
    line = Line(timing="delay", distance_mm=50, belt_speed_mm_s=500, recovery_ms=100, heartbeat_ms=0)
    line.s.verdict(1, T, True, [1], "defect", now=T)
    line.s.verdict(2, T + 0.03, True, [1], "defect", now=T + 0.03)  # 30 ms later on the same lane: merged
    line.s.verdict(3, T + 0.03, True, [2], "defect", now=T + 0.03)  # another lane: its own pulse
    line.run(T + 0.05, T + 0.2)
    line.s.verdict(4, T + 0.08, True, [1], "defect", now=T + 0.2)  # close to reject 1, already fired
    line.s.verdict(5, T + 0.2, True, [1], "defect", now=T + 0.2)  # 200 ms after it: its own
    status = {seq: (e["status"], e["merged_into"]) for seq, e in line.rejects().items()}
    assert status == {1: ("sent", None), 2: ("merged", 1), 3: ("sent", None), 4: ("merged", 1)}
    assert [c.seq for c in line.s.pending] == [5]


def test_a_fail_safe_reject_on_all_lanes_absorbs_rejects_of_any_lane_at_its_time():
    line = Line(verdict_deadline_ms=50, heartbeat_ms=0, recovery_ms=100)
    line.s.expect(1, T)
    line.s.check(T + 0.05)
    line.s.verdict(2, T + 0.02, True, [3], "defect", now=T + 0.06)
    assert line.rejects()[2]["merged_into"] == 1


def test_too_many_consecutive_rejects_raise_the_alarm_once_until_a_frame_is_accepted():
    line = Line(max_consecutive_rejects=3, recovery_ms=0, heartbeat_ms=0)
    for seq in range(6):
        line.s.verdict(seq, T + seq, True, [1], "defect", now=T + seq)
    line.s.verdict(6, T + 6, False, [], "clean", now=T + 6)
    for seq in range(7, 11):
        line.s.verdict(seq, T + seq, True, [1], "defect", now=T + seq)
    assert [e["reason"] for e in line.named("alarm")] == ["4 consecutive rejects (limit 3)"] * 2
    assert line.s.unsent_alarm == "4 consecutive rejects (limit 3)"


def test_the_heartbeat_goes_out_only_while_frames_are_judged_on_time():
    line = Line(heartbeat_ms=20, stall_ms=150, verdict_deadline_ms=100)
    line.run(T, T + 0.2)
    assert not line.sent and not line.s.inspecting  # nothing judged yet
    seq = 0
    for i in range(25):  # a frame judged every 20 ms for 0.5 s
        now = T + 0.2 + i * 0.02
        line.s.expect(seq, now)
        line.s.verdict(seq, now, False, [], "clean", now=now)
        line.run(now, now + 0.019)
        seq += 1
    beats = [(t, n) for t, kind, n, _ in line.sent if kind == "heartbeat"]
    assert [n for _, n in beats] == list(range(1, len(beats) + 1)) and len(beats) >= 24
    assert all(0.0199 < b[0] - a[0] < 0.0211 for a, b in itertools.pairwise(beats))  # every 20 ms
    line.s.expect(seq, T + 0.7)  # the camera stalls after this frame: no verdict comes
    line.run(T + 0.7, T + 1.3)
    stalled_at = line.named("not_inspecting")[0]
    assert stalled_at["reason"] == "no frame judged on time for 0.15 s"
    last_beat = max(t for t, kind, _, _ in line.sent if kind == "heartbeat")
    assert last_beat <= T + 0.68 + 0.15 + 0.001  # none after the stall time
    assert [e["seq"] for e in line.named("missing_verdict")] == [seq]  # and the stalled frame was rejected
    before = line.s.heartbeats
    line.s.verdict(seq + 1, T + 1.3, False, [], "clean", now=T + 1.3)
    line.run(T + 1.3, T + 1.4)
    assert [e["event"] for e in line.events if "inspecting" in e["event"]] == ["inspecting", "not_inspecting", "inspecting"]
    resumed = [n for t, kind, n, _ in line.sent if kind == "heartbeat" and t >= T + 1.3]
    assert resumed[0] == before + 1 and len(resumed) >= 5  # back once frames are judged again


def test_a_verdict_that_was_not_judged_by_the_model_keeps_the_heartbeat_off():
    line = Line(heartbeat_ms=20, stall_ms=150)
    line.s.verdict(1, T, True, [], "not judged: inference failed", now=T, judged=False)
    line.run(T, T + 0.1)
    assert not line.s.inspecting and not [s for s in line.sent if s[1] == "heartbeat"]


def test_the_stall_time_follows_the_frame_period_unless_set():
    line = Line(verdict_deadline_ms=200)
    assert line.s.stall_s() == 0.2
    for i in range(10):
        line.s.expect(i, T + i * 0.1)
    assert line.s.stall_s() == pytest.approx(0.4)  # four frame periods
    assert Line(stall_ms=75).s.stall_s() == 0.075


def test_without_an_ack_a_reject_is_sent_again_then_logged_unacknowledged(caplog):
    line = Line(acks=True, ack_timeout_ms=30, ack_retries=2, heartbeat_ms=0)
    line.s.verdict(5, T, True, [1], "defect", now=T)
    line.at(T)
    assert line.s.wake_at(T) == T + 0.005 and line.s.next_fire() == float("inf")  # waiting for the ack
    with caplog.at_level(logging.WARNING):
        line.run(T + 0.001, T + 0.1)
    assert [t for t, *_ in line.sent] == [T, pytest.approx(T + 0.03), pytest.approx(T + 0.06)]
    event = line.rejects()[5]
    assert (event["status"], event["attempts"], event["note"]) == ("sent", 3, "no ack after 3 attempts")
    assert event["sent_at"] == T  # the first sending is the reject's time
    assert sum("no ack for reject 5" in r.message for r in caplog.records) == 2


def test_an_ack_ends_the_reject_acknowledged():
    line = Line(acks=True, ack_timeout_ms=30, heartbeat_ms=0)
    line.s.verdict(6, T, True, [1], "defect", now=T)
    line.at(T)
    line.s.acknowledged(7)  # another reject's ack: nothing
    assert line.s.pending
    line.s.acknowledged(6)
    line.run(T + 0.001, T + 0.1)
    assert len(line.sent) == 1 and line.rejects()[6]["status"] == "acknowledged" and line.s.counts["acknowledged"] == 1


def test_stop_logs_what_is_still_pending_as_missed():
    line = Line(timing="delay", distance_mm=900, belt_speed_mm_s=1000, heartbeat_ms=0)
    line.s.verdict(1, T, True, [1], "defect", now=T)
    line.s.stop()
    assert line.rejects()[1]["status"] == "missed" and line.rejects()[1]["note"] == "station stopped before its fire time"
    assert line.s.counts == {"sent": 0, "acknowledged": 0, "merged": 0, "late": 0, "missed": 1}


def test_the_belt_tracker_unwraps_the_counter_and_follows_it_backwards():
    belt = BeltTracker(counts_per_mm=10, modulus=1000)
    for i, count in enumerate([990, 995, 5, 10, 0, 990, 980, 970, 960, 950, 940]):  # on past 999, then back
        belt.add(count, T + i * 0.001)
    assert [x for _, x in belt.history] == pytest.approx([0.0, 0.5, 1.5, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0])
    assert belt.position_at(T + 0.008) == pytest.approx(-3.0) and belt.position_at(T - 1) is None
    assert belt.velocity() < 0 and belt.time_at(5.0) == math.inf  # running backwards: no arrival
    for i in range(11, 40):
        belt.add(940, T + i * 0.001)  # standing
    assert belt.velocity() == 0.0 and belt.time_at(-4.5) == math.inf and belt.time_at(-5.5) == T + 0.039


def _encoder_line(speed_at, until: float, **settings) -> Line:
    """A line in encoder timing (1 count per mm) whose PLC reports the count every millisecond; the belt's
    speed (mm/s) at each time is speed_at(t - T); one reject captured at T + 10 ms, judged at T + 50 ms."""
    line = Line(timing="encoder", counts_per_mm=1.0, distance_mm=100, heartbeat_ms=0, give_up_ms=10_000, **settings)
    position = 0.0
    for i in range(round((until - T) / 0.001) + 1):
        now = T + i * 0.001
        position += speed_at(now - T) * 0.001
        line.s.encoder(int(position), now)
        if i == 50:
            line.s.verdict(1, T + 0.010, True, [1], "defect", now=now)
        line.at(now)
    return line


def test_encoder_timing_fires_when_the_belt_has_moved_the_distance():
    line = _encoder_line(lambda t: 1000.0, until=T + 0.2)  # at 10 ms the belt is at 10 mm: fire at 110 mm
    assert [(seq, lane) for _, kind, seq, lane in line.sent] == [(1, 1)]
    assert line.sent[0][0] == pytest.approx(T + 0.110, abs=0.0015)


def test_encoder_timing_holds_the_reject_while_the_belt_stands_and_fires_when_it_has_moved_on():
    # 1 m/s, standing from 80 ms to 280 ms, then 1 m/s again: 110 mm is reached at 310 ms
    line = _encoder_line(lambda t: 0.0 if 0.08 <= t < 0.28 else 1000.0, until=T + 0.4)
    assert len(line.sent) == 1 and line.sent[0][0] == pytest.approx(T + 0.310, abs=0.0015)


def test_encoder_timing_follows_an_accelerating_belt_and_takes_the_actuator_lead_at_its_speed():
    # from 0.5 m/s, +5 m/s2: position 500 t + 2500 t^2 mm; 10 mm at ~19.6 ms... fire 20 ms early
    line = _encoder_line(lambda t: 500.0 + 5000.0 * t, until=T + 0.4, actuator_lead_ms=20)
    position = lambda t: 500 * t + 2500 * t * t  # noqa: E731
    arrival = next(t / 10_000 for t in range(4000) if position(t / 10_000) >= position(0.010) + 100)
    assert len(line.sent) == 1 and line.sent[0][0] - T == pytest.approx(arrival - 0.020, abs=0.002)


def test_encoder_timing_before_the_first_count_stands_in_with_delay_timing():
    line = Line(timing="encoder", counts_per_mm=1.0, distance_mm=100, belt_speed_mm_s=500, heartbeat_ms=0)
    line.s.verdict(1, T, True, [1], "defect", now=T + 0.05)
    assert line.s.next_fire() == T + 0.2


def test_part_id_timing_echoes_the_part_of_each_frame_and_rejects_a_part_that_got_no_frame():
    line = Line(timing="part_id", reject_template="REJ {part} {lane}\r\n", heartbeat_ms=0, verdict_deadline_ms=250,
                part_window_ms=50)
    for i, part in enumerate((41, 42, 43)):
        line.s.part_announced(part, T + i * 0.125)  # the PLC triggers the camera for each part
    line.s.expect(0, T + 0.03125)  # part 41's frame
    line.s.expect(1, T + 0.15625)  # part 42's frame; part 43's never comes
    assert line.s.verdict(0, T + 0.03125, True, [2], "defect", now=T + 0.0625).verdict == "reject"
    line.s.verdict(1, T + 0.15625, False, [], "clean", now=T + 0.1875)
    line.run(T + 0.0625, T + 0.75)
    rejects = [e for e in line.events if e["event"] == "reject"]
    assert [(e["seq"], e["part"], e["lane"], e["status"]) for e in rejects] == [(0, 41, 2, "sent"), (-1, 43, ALL_LANES, "sent")]
    assert [e["part"] for e in line.named("missing_frame")] == [43] and line.s.failsafe_frames == 1
    assert line.sent[0][0] == T + 0.0625  # at the verdict


def test_part_id_timing_stops_the_line_for_a_rejected_frame_of_no_part():
    line = Line(timing="part_id", reject_template="REJ {part} {lane}\r\n", heartbeat_ms=0, part_window_ms=50)
    line.s.part_announced(7, T)
    line.s.expect(0, T + 0.25)  # 250 ms after the last part: not its frame
    outcome = line.s.verdict(0, T + 0.25, True, [1], "defect", now=T + 0.3)
    assert outcome.verdict == "stop_line" and line.s.unsent_alarm.startswith("frame 0 rejected, but no part")
    assert not line.s.pending
