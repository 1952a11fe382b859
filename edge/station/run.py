"""`station run`: the daemon. Frames from a source, int8 segmentation, a verdict per frame.

    station run --config config.yaml [--source line.mp4] [--model m.tflite] [--max-frames 500]

The loop, as it reads: open the model and the source, and for each frame: segment (tiles or
resize, as the card says), find the defects, decide, record (results log line, reject overlay).
The threads and queues that make it real time live in edge.station.pipeline.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge.core.card import check_overlap
from edge.core.config import StationConfig, load_station_config, parse_overrides
from edge.inference.decision import Rules, Verdict, judge
from edge.tools.device import memory_mb
from edge.core.errors import BadInput
from edge.gate import Gate, Outcome, open_driver
from edge.station.pipeline import Pipeline, Stats
from edge.inference.predictors import load_model
from edge.sinks.results import OverlayStore, ResultsLog
from edge.inference.segment import probability_map
from edge.sources import Frame, Gap, open_source
from edge.core.state import CameraState, Counters, DiskState, GapState, StationState
from edge.station.watchdog import Notifier, supervise

log = logging.getLogger(__name__)


class Inspector:
    """The per-frame work of the station, built from its configuration and the model card.

    Every frame the source hands out is entered in `in_flight` at capture and leaves it with its
    one record: its verdict, or at `close` a fail-safe one. The record says what the gate did.
    """

    def __init__(self, config: StationConfig, tee: Callable[[dict], None] | None = None):
        self.config = config
        m = config.model
        loaded = load_model(m.path, m.threads, m.runtime, m.delegate, suffixes=(".tflite",))
        self.model, card = loaded.tflite, loaded.card
        pre = config.preprocess
        if pre.mode != "card":
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
                           d.mm_per_px, d.cleanup_px)
        self.ignore = self._ignore_mask(pre.ignore_mask)
        out = config.output
        self.results = ResultsLog(out.results_log, int(out.log_max_mb * 2**20), out.log_backups, out.buffered_records, tee)
        self.overlays = OverlayStore(out.overlays_dir, int(out.overlays_quota_mb * 2**20)) if out.overlays_dir else None
        self.tiles_per_frame = 0  # model inputs per frame, as last seen
        self.gate = Gate(config.gate, open_driver(config.gate), self.results.write)
        self.in_flight: dict[int, Frame] = {}  # captured, not yet recorded: seq -> the frame without its image
        self.publisher = None  # edge.sinks.mqtt.Publisher when mqtt.host is set
        self.observers: list = []  # each gets verdict(frame, prob, verdict, record) for every recorded frame
        self.sink_errors: dict[str, int] = {}
        self.disk_alarmed = False

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        self.tiles_per_frame = len(batch)
        return self.model.predict(batch)

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

    def lanes(self, verdict: Verdict, width: int) -> list[int]:
        """The gate lanes (1..N, across the frame width) holding the verdict's kept defects."""
        n = self.config.gate.lanes
        return sorted({min(int(d.centroid[0] / width * n), n - 1) + 1 for d in verdict.defects if d.kept})

    def record(self, frame: Frame, prob: np.ndarray | None, verdict: Verdict) -> bool:
        """Tell the gate; record what it did (results log, reject overlay, observers); True unless accepted."""
        width = frame.image.shape[1] if frame.image is not None else 1
        outcome = self.gate.verdict(verdict.seq, frame.t_capture, verdict.reject, self.lanes(verdict, width),
                                    verdict.reason, judged=prob is not None)
        record = self._record(self.in_flight.pop(frame.seq, frame), outcome, verdict)
        if outcome.verdict != "accept" and self.overlays is not None and prob is not None:
            self.overlays.save(frame.image, prob >= self.rules.threshold, verdict.defects, f"{verdict.seq:08d}")
        for observer in self.observers:
            try:
                observer.verdict(frame, prob, verdict, record)
            except Exception:  # noqa: BLE001 (a failing sink is logged and counted; inspection goes on)
                name = type(observer).__name__
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

    def open_observers(self, status) -> None:
        """Start the MQTT publisher and the operator page when the config asks for them; `status()`
        gives them the running station's snapshot (see `snapshot`)."""
        if self.config.mqtt.host:
            from edge.sinks.mqtt import Publisher

            self.publisher = Publisher(self.config.mqtt, status)
            self.observers.append(self.publisher)
            print(f"mqtt {self.config.mqtt.host}:{self.config.mqtt.port}, topic {self.publisher.topic}, "
                  f"spool {self.config.mqtt.spool_dir}", flush=True)
        if self.config.http.port is not None:
            from edge.sinks.web import OperatorPage

            page = OperatorPage(self.config.http, status, self.rules.threshold)
            self.observers.append(page)
            print(f"operator page {page.url}", flush=True)

    def close(self, why: str, stats: Stats | None) -> dict[str, int]:
        """Stop the observers; every frame still without a record is handled fail-safe by the gate (`why`
        it was never judged) and recorded; let the gate fire what is due; end the log with a `stopped`
        record (the run's figures, RunSummary's). Returns the gate's reject counts."""
        for observer in self.observers:
            try:
                observer.close()
            except Exception:  # noqa: BLE001
                log.exception("%s failed to close", type(observer).__name__)
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


@dataclass
class RunSummary:
    """A run's figures, as the `stopped` record at the end of the results log also holds them."""

    captured: int
    frames: int
    rejects: int
    dropped: int
    fps: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    inference_p50_ms: float | None
    gate: dict[str, int]

    @classmethod
    def of(cls, stats: Stats, gate: dict[str, int]) -> RunSummary:
        return cls(stats.captured, stats.judged, stats.rejects, stats.dropped, round(stats.fps(), 2),
                   _ms(stats.percentile(stats.latency_ms, 50)), _ms(stats.percentile(stats.latency_ms, 99)),
                   _ms(stats.percentile(stats.infer_ms, 50)), gate)


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def snapshot(stats: Stats, inspector: Inspector, source) -> StationState:
    """The running station now: what the operator page, /metrics, /healthz and the MQTT summaries show."""
    now = time.monotonic()
    gaps = list(source.gaps)
    last = gaps[-1] if gaps else None
    return StationState(
        model=inspector.model.path.name,
        uptime_s=round(now - stats.started, 1),
        counters=Counters(stats.judged, stats.captured, stats.rejects, stats.dropped, inspector.gate.failsafe_frames,
                          getattr(source, "unreadable", 0), round(stats.fps(), 2),
                          _ms(stats.percentile(stats.latency_ms, 50)), _ms(stats.percentile(stats.latency_ms, 99)),
                          _ms(stats.percentile(stats.infer_ms, 50))),
        gate=inspector.gate.state(),
        camera=CameraState(source.name, type(source).__name__, source.live, len(gaps),
                           round(sum(g.t_end - g.t_start for g in gaps), 2),
                           last and GapState(round(last.t_end - last.t_start, 2), round(now - last.t_end, 1), last.reason),
                           getattr(source, "superseded", 0), getattr(source, "stalled", False),
                           None if stats.last_verdict is None else round(now - stats.last_verdict, 2)),
        disk=DiskState(inspector.results.state(), inspector.overlays.state() if inspector.overlays else None),
        sink_errors=dict(inspector.sink_errors),
        mqtt=inspector.publisher.state() if inspector.publisher is not None else None,
    )


def _status_printer(interval: float, inspector: Inspector):
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(stats: Stats) -> None:
        inspector.check_disk()
        if tty:
            print("\r" + stats.line(), end="", file=sys.stderr, flush=True)
        elif time.monotonic() - last[0] >= max(interval, 10):
            last[0] = time.monotonic()
            print(stats.line(), file=sys.stderr, flush=True)
    return show


def summary(stats: Stats, inspector: Inspector, source, started: float) -> str:
    """The end-of-run report."""
    elapsed = time.monotonic() - stats.started
    first = f"{stats.first_verdict - started:.2f} s" if stats.first_verdict else "none"
    gaps = getattr(source, "gaps", [])
    lines = [
        f"frames {stats.judged} (captured {stats.captured}), rejects {stats.rejects}, dropped {stats.dropped}, "
        f"not judged in time {inspector.gate.failsafe_frames}"
        + (f", superseded at the camera {source.superseded}" if getattr(source, "superseded", 0) else ""),
        f"throughput {stats.fps():.1f} fps over {elapsed:.1f} s; start-up to first verdict {first}",
        f"capture-to-verdict latency p50 {stats.percentile(stats.latency_ms, 50):.1f} ms, "
        f"p99 {stats.percentile(stats.latency_ms, 99):.1f} ms; inference p50 {stats.percentile(stats.infer_ms, 50):.1f} ms",
        f"source outages {len(gaps)}" + (f" ({sum(g.t_end - g.t_start for g in gaps):.1f} s without frames)" if gaps else ""),
        f"peak RSS {memory_mb('VmHWM'):.0f} MB",
        f"results log {inspector.config.output.results_log}"
        + (f"; reject overlays in {inspector.config.output.overlays_dir}" if inspector.overlays else ""),
    ]
    return "\n".join(lines)


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP stop the station cleanly from the moment `station run` starts: a
    signal before the pipeline exists stops it as soon as it is attached. The old handlers come back
    on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self):
        self.pipeline: Pipeline | None = None
        self.received: int | None = None

    def __enter__(self) -> StopSignals:
        self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        self.received = signum
        if self.pipeline is not None:
            self.pipeline.stop()

    def attach(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        if self.received is not None:
            pipeline.stop()


def run_station(config: StationConfig, tee: Callable[[dict], None] | None = None,
                bench_invoke: int = 0) -> RunSummary:
    """Run the station until its source ends or a stop signal; `tee` also gets every results-log record
    (frames and events) as it is written. Prints its progress; returns the run's figures."""
    with StopSignals() as signals:
        return _run(config, signals, tee, bench_invoke)


def _run(config: StationConfig, signals: StopSignals, tee, bench_invoke: int) -> RunSummary:
    started = time.monotonic()
    inspector = Inspector(config, tee)
    print(f"model {inspector.model.describe()}; {inspector.card.preprocess.mode} "
          f"{inspector.card.input.height}x{inspector.card.input.width}, threshold {inspector.rules.threshold:.2f}",
          flush=True)
    source, pipeline, failure, notifier = None, None, None, Notifier.from_environment()
    try:
        source = open_source(config.source.uri, config.source)
        print(f"source {config.source.uri} ({type(source).__name__})")
        pipeline = Pipeline(source, inspector.segment, inspector.decide, inspector.record, inspector.record_gap,
                            inspector.captured, config.pipeline.queue_size, config.pipeline.max_frames)
        signals.attach(pipeline)
        inspector.open_observers(lambda: snapshot(pipeline.stats, inspector, source))
        notifier.send("READY=1")
        interval = config.output.status_interval_s
        pipeline.run(supervise(notifier, source, _status_printer(interval, inspector), interval), interval)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        notifier.send("STOPPING=1")
        if source is not None:
            source.close()
        why = "station stopped before its verdict" if failure is None else f"station stopped ({type(failure).__name__}: {failure})"
        gate_counts = inspector.close(why, pipeline.stats if pipeline else None)
        if pipeline is not None:
            print(("\n" if sys.stderr.isatty() else "") + summary(pipeline.stats, inspector, source, started))
            print(f"gate ({config.gate.driver}, {config.gate.timing}): "
                  + ", ".join(f"{k} {v}" for k, v in gate_counts.items()))
    stats = pipeline.stats
    if bench_invoke:
        invoke = inspector.model.invoke_ms(bench_invoke)  # the input is still shaped for one frame's tiles
        tiles = max(inspector.tiles_per_frame, 1)
        bare_fps = 1000 / invoke
        print(f"bare invoke {invoke:.2f} ms for {tiles} tile(s), one frame = {bare_fps:.1f} frames/s; "
              f"daemon/bare = {stats.fps() / bare_fps:.2f}; capture-to-verdict p99 / bare invoke = "
              f"{stats.percentile(stats.latency_ms, 99) / invoke:.2f}")
    return RunSummary.of(stats, gate_counts)


def run(args) -> int:
    """The `station run` verb."""
    if not args.config:
        raise BadInput("station run needs --config FILE (see config.yaml)")
    overrides = parse_overrides(args.set)
    for section, key, value in (("source", "uri", args.source), ("model", "path", args.model),
                                ("pipeline", "max_frames", args.max_frames)):
        if value:
            overrides.setdefault(section, {})[key] = value
    run_station(load_station_config(args.config, overrides), bench_invoke=args.bench_invoke)
    return 0
