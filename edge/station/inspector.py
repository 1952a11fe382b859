"""The per-frame work of the station: segment, decide, tell the gate, record what it did.

    inspector = Inspector(config)                     # model, card, rules, results log, gate
    prob = inspector.segment(frame); verdict = inspector.decide(frame, prob, timing, reason)
    inspector.record(frame, prob, verdict)            # the frame's one record
    inspector.close(why, stats)                       # frames still owed: fail-safe, recorded
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import queue
import time
from collections.abc import Callable

import cv2
import numpy as np

from edge.core.card import ModelCard, check_overlap
from edge.core.config import DecisionConfig, StationConfig
from edge.core.errors import BadInput
from edge.gate import Outcome, open_gate
from edge.inference.decision import Rules, Verdict, judge
from edge.inference.predictors import load_model
from edge.inference.segment import probability_map
from edge.sinks import Sink
from edge.sinks.results import OverlayStore, ResultsLog
from edge.sources import Frame, Gap
from edge.station.pipeline import RunSummary, Stats

log = logging.getLogger(__name__)

SHED_HOLD_S = 1.0  # after a late frame, the optional outputs stay off this long


def image_rule(decision: DecisionConfig, card: ModelCard, model_path: str) -> tuple[float | None, int]:
    """The image-score rule's (threshold, smooth_px) as config and card say; (None, 0): the area rule."""
    point = card.image_decision
    threshold = decision.image_threshold if decision.image_threshold is not None else point and point.image_threshold
    if decision.rule == "area" or (decision.rule == "card" and threshold is None):
        return None, 0
    if threshold is None:
        raise BadInput(f"decision.rule: image_score needs an image threshold, and {ModelCard.path_for(model_path)} has "
                       "none: set decision.image_threshold or run `station eval --calibrate` on the model")
    return threshold, point.smooth_px if point else 0


class Inspector:
    """The per-frame work of the station, built from its configuration and the model card.

    Every frame the source hands out is entered in `in_flight` at capture and leaves it with its
    one record: its verdict, or at `close` a fail-safe one. The record says what the gate did.
    """

    def __init__(self, config: StationConfig, tee: Callable[[dict], None] | None = None):
        self.config = config
        m = config.model
        threads = max(m.threads // m.streams, 1)
        loaded = load_model(m.path, threads, m.runtime, m.delegate, suffixes=(".tflite",))
        self.model, card = loaded.tflite, loaded.card
        # an interpreter per inference stream, lent to one thread at a time
        self.models = [self.model] + [load_model(m.path, threads, m.runtime, m.delegate).tflite
                                      for _ in range(m.streams - 1)]
        self.idle_models: queue.SimpleQueue = queue.SimpleQueue()
        for model in self.models:
            self.idle_models.put(model)
        pre = config.preprocess
        if pre.mode != "card":
            if pre.mode == "resize" and card.preprocess.scale != 1:
                log.warning("preprocess.mode resize: the model was trained at scale %g of tiles; it sees whole "
                            "frames resized instead", card.preprocess.scale)
            card.preprocess.mode = pre.mode
        card.preprocess.overlap = card.preprocess.overlap if pre.overlap is None else pre.overlap
        card.preprocess.stitch = pre.stitch or card.preprocess.stitch
        try:
            check_overlap(card.preprocess.overlap, card.input)
        except ValueError as exc:
            raise BadInput(f"preprocess.overlap: {exc}") from None
        self.card = card
        d = config.decision
        self.rules = Rules(card.threshold if d.threshold is None else d.threshold, d.min_area_px, d.min_area_mm2,
                           d.mm_per_px, d.cleanup_px, *image_rule(d, card, m.path))
        self.ignore = self._ignore_mask(pre.ignore_mask)
        out = config.output
        self.results = ResultsLog(out.results_log, int(out.log_max_mb * 2**20), out.log_backups, out.buffered_records, tee)
        self.overlays = (OverlayStore(out.overlays_dir, int(out.overlays_quota_mb * 2**20), self.rules.threshold)
                         if out.overlays_dir else None)
        self.tiles_per_frame = 0  # model inputs per frame, as last seen
        self.gate = open_gate(config.gate, self.results.write)
        self.in_flight: dict[int, Frame] = {}  # captured, not yet recorded: seq -> the frame without its image
        self.publisher = None  # edge.sinks.mqtt.Publisher when mqtt.host is set
        self.sinks: list[Sink] = [self.overlays] if self.overlays else []  # + MQTT and the page: open_sinks
        self.sink_errors: dict[str, int] = {}
        deadline_ms = config.gate.verdict_deadline_ms
        self.shed_after_s = (config.pipeline.shed_after_ms or deadline_ms / 2) / 1000
        self.shed_until = 0.0  # optional outputs are skipped until then
        self.shed: dict[str, int] = {}
        self.disk_alarmed = False

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        self.tiles_per_frame = len(batch)
        model = self.idle_models.get()
        try:
            return model.predict(batch)
        finally:
            self.idle_models.put(model)

    @staticmethod
    def _ignore_mask(path: str | None) -> np.ndarray | None:
        if path is None:
            return None
        mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise BadInput(f"preprocess.ignore_mask: {path} is not a readable image")
        return mask > 0

    def captured(self, frame: Frame) -> None:
        """The pipeline's capture callback: the frame is owed a record, and the gate a verdict."""
        self.in_flight[frame.seq] = dataclasses.replace(frame, image=None)
        self.gate.expect(frame.seq, frame.t_capture)

    def segment(self, frame: Frame) -> np.ndarray:
        """The frame's defect probability map (full frame size; zero outside the ROI)."""
        roi = self.config.preprocess.roi
        if roi is None:
            return probability_map(frame.image, self._predict, self.card)
        x, y, w, h = roi
        height, width = frame.image.shape[:2]
        if x + w > width or y + h > height:
            raise BadInput(f"preprocess.roi {list(roi)} does not fit in the {width}x{height} frame")
        prob = np.zeros((height, width), np.float32)
        prob[y : y + h, x : x + w] = probability_map(frame.image[y : y + h, x : x + w], self._predict, self.card)
        return prob

    def decide(self, frame: Frame, prob: np.ndarray | None, timing: dict[str, float], reason: str) -> Verdict:
        ignore = self.ignore
        if ignore is not None and prob is not None and ignore.shape != prob.shape:
            raise BadInput(f"preprocess.ignore_mask: {ignore.shape[::-1]} is not the frame size {prob.shape[::-1]}")
        try:
            verdict = judge(frame.seq, frame.t_capture, prob, self.rules, timing, ignore, reason)
        except Exception as exc:  # noqa: BLE001 (a frame that cannot be judged is rejected, the station goes on)
            log.exception("decision failed on frame %d", frame.seq)
            verdict = judge(frame.seq, frame.t_capture, None, self.rules, timing, reason=f"not judged: {exc!r}")
        return verdict

    def shedding(self) -> bool:
        """Whether the station is behind: a frame was recorded later than pipeline.shed_after_ms after its
        capture within the last SHED_HOLD_S. Reject overlays are skipped, the live view and thumbnails wait."""
        return time.monotonic() < self.shed_until

    def lanes(self, verdict: Verdict, width: int) -> list[int]:
        """The gate lanes (1..N, across the frame width) holding the verdict's kept defects."""
        n = self.config.gate.lanes
        return sorted({min(int(d.centroid[0] / width * n), n - 1) + 1 for d in verdict.defects if d.kept})

    def record(self, frame: Frame, prob: np.ndarray | None, verdict: Verdict) -> bool:
        """Tell the gate; record what it did (results log, then the sinks); True unless accepted."""
        width = frame.image.shape[1] if frame.image is not None else 1
        outcome = self.gate.verdict(verdict.seq, frame.t_capture, verdict.reject, self.lanes(verdict, width),
                                    verdict.reason, judged=prob is not None)
        record = self._record(self.in_flight.pop(frame.seq, frame), outcome, verdict)
        now = time.monotonic()
        if now - frame.t_capture > self.shed_after_s:
            if not self.shedding():
                log.warning("frame %d recorded %.0f ms after its capture: shedding the optional outputs",
                            frame.seq, (now - frame.t_capture) * 1000)
            self.shed_until = now + SHED_HOLD_S
        shedding = self.shedding()
        for sink in self.sinks:
            if shedding and sink.sheddable:
                name = type(sink).__name__
                self.shed[name] = self.shed.get(name, 0) + 1
                continue
            try:
                sink.verdict(frame, prob, verdict, record)
            except Exception:  # noqa: BLE001 (a failing sink is logged and counted; inspection goes on)
                name = type(sink).__name__
                self.sink_errors[name] = self.sink_errors.get(name, 0) + 1
                if self.sink_errors[name] == 1 or self.sink_errors[name] % 1000 == 0:
                    log.exception("%s failed (%d times so far)", name, self.sink_errors[name])
        return outcome.verdict != "accept"

    def _record(self, frame: Frame, outcome: Outcome, verdict: Verdict | None = None) -> dict:
        """The frame's one results-log record: what the gate did with it, and what the model found."""
        record = {
            "seq": frame.seq,
            "time": datetime.datetime.now().astimezone().isoformat(timespec="milliseconds"),
            "t_capture": round(frame.t_capture, 6),
            "source": frame.source,
            "frame_id": frame.frame_id,
            "verdict": outcome.verdict,
            "reason": outcome.reason,
            "defects": [d.to_json() for d in verdict.defects if d.kept] if verdict else [],
            "latency_ms": {"capture_to_verdict": round((time.monotonic() - frame.t_capture) * 1000, 2),
                           **{k: round(v, 2) for k, v in (verdict.timing if verdict else {}).items()}},
            "model": self.model.path.name,
        }
        if verdict is not None and verdict.score is not None:
            record["score"] = round(verdict.score, 4)  # the image score, under the image-score rule
        if frame.camera_ns is not None:
            record["camera_ns"] = frame.camera_ns  # the camera's own timestamp
        if outcome.late_verdict is not None:
            record["late_verdict"] = outcome.late_verdict
        self.results.write(record)
        return record

    def record_gap(self, gap: Gap) -> None:
        """A source outage goes into the results log as it is reported."""
        self.results.write({"event": "source_gap", "t_start": round(gap.t_start, 6), "t_end": round(gap.t_end, 6),
                            "seconds": round(gap.t_end - gap.t_start, 3), "reason": gap.reason})

    def check_disk(self) -> None:
        """Called with every status update: a results log that cannot be written sends the stop-line
        alarm once per episode when output.alarm_on_write_failure is set."""
        state = self.results.state()
        if state.ok:
            self.disk_alarmed = False
        elif self.config.output.alarm_on_write_failure and not self.disk_alarmed:
            self.disk_alarmed = True
            self.gate.alarm(f"results log not written: {state.error}")

    def open_sinks(self, status) -> None:
        """Start the MQTT publisher and the operator page when the config asks for them; `status()`
        gives them the running station's snapshot (see `snapshot`)."""
        if self.config.mqtt.host:
            from edge.sinks.mqtt import Publisher

            self.publisher = Publisher(self.config.mqtt, status)
            self.sinks.append(self.publisher)
            print(f"mqtt {self.config.mqtt.host}:{self.config.mqtt.port}, topic {self.publisher.topic}, "
                  f"spool {self.config.mqtt.spool_dir}", flush=True)
        if self.config.opcua.port is not None:
            from edge.sinks.opcua import OpcUaServer

            server = OpcUaServer(self.config.opcua, status, lambda: self.gate.acknowledge_alarm("opcua"))
            self.sinks.append(server)
            print(f"opcua {server.url}", flush=True)
        if self.config.http.port is not None:
            from edge.sinks.web import OperatorPage

            page = OperatorPage(self.config.http, status, self.rules.threshold, self.shedding)
            self.sinks.append(page)
            print(f"operator page {page.url}", flush=True)

    def close(self, why: str, stats: Stats | None) -> dict[str, int]:
        """Close the sinks; every frame still without a record is handled fail-safe by the gate (`why`
        it was never judged) and recorded; let the gate fire what is due; end the log with a `stopped`
        record (the run's figures, RunSummary's). Returns the gate's reject counts."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001
                log.exception("%s failed to close", type(sink).__name__)
        outcomes = self.gate.abandon(why)
        unjudged = len(self.in_flight)
        for seq, frame in sorted(self.in_flight.items()):
            self._record(frame, outcomes.get(seq) or Outcome(self.config.gate.on_missing_verdict, f"fail-safe: {why}", False))
        self.in_flight.clear()
        counts = self.gate.close()
        figures = dataclasses.asdict(RunSummary.of(stats or Stats(), counts))
        self.results.write({"event": "stopped", "why": why, **figures, "unjudged_at_stop": unjudged,
                            "failsafe_frames": self.gate.failsafe_frames})
        self.results.close()
        return counts
