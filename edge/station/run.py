"""`station run`: the daemon. Frames from a source, int8 segmentation, a verdict per frame.

    station run --config config.yaml [--source line.mp4] [--model m.tflite] [--max-frames 500]

The loop, as it reads: open the model and the source, and for each frame: segment (tiles or
resize, as the card says), find the defects, decide, record (results log line, reject overlay).
The threads and queues that make it real time live in edge.station.pipeline.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from edge.core.config import StationConfig, load_station_config, parse_overrides
from edge.core.device import memory_mb
from edge.core.errors import BadInput
from edge.core.state import CameraState, Counters, DiskState, GapState, StationState
from edge.sources import open_source
from edge.station.inspector import Inspector
from edge.station.pipeline import Pipeline, RunSummary, Stats
from edge.station.watchdog import Notifier, supervise

log = logging.getLogger(__name__)


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
                          stats.ms(stats.latency_ms, 50), stats.ms(stats.latency_ms, 99),
                          stats.ms(stats.infer_ms, 50)),
        gate=inspector.gate.state(),
        camera=CameraState(source.name, type(source).__name__, source.live, len(gaps),
                           round(sum(g.t_end - g.t_start for g in gaps), 2),
                           last and GapState(round(last.t_end - last.t_start, 2), round(now - last.t_end, 1), last.reason),
                           getattr(source, "superseded", 0), getattr(source, "stalled", False),
                           None if stats.last_verdict is None else round(now - stats.last_verdict, 2)),
        disk=DiskState(inspector.results.state(), inspector.overlays.state() if inspector.overlays else None),
        sink_errors=dict(inspector.sink_errors),
        shedding=inspector.shedding(),
        shed=dict(inspector.shed),
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
        f"throughput {stats.fps():.1f} fps over {elapsed:.1f} s, {stats.steady_fps():.1f} fps after the first verdict; "
        f"start-up to first verdict {first}",
        f"capture-to-verdict latency p50 {stats.percentile(stats.latency_ms, 50):.1f} ms, "
        f"p99 {stats.percentile(stats.latency_ms, 99):.1f} ms; inference p50 {stats.percentile(stats.infer_ms, 50):.1f} ms",
        f"source outages {len(gaps)}" + (f" ({sum(g.t_end - g.t_start for g in gaps):.1f} s without frames)" if gaps else ""),
        f"peak RSS {memory_mb('VmHWM'):.0f} MB"
        + (f" (the gate's own process: {inspector.gate.peak_rss_mb:.0f} MB)" if inspector.gate.peak_rss_mb else ""),
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
    streams = f" x {len(inspector.models)} streams" if len(inspector.models) > 1 else ""
    pre = inspector.card.preprocess
    scale = f" at scale {pre.scale:g}" if pre.mode == "tile" and pre.scale != 1 else ""
    print(f"model {inspector.model.describe()}{streams}; {pre.mode} "
          f"{inspector.card.input.height}x{inspector.card.input.width}{scale}, threshold {inspector.rules.threshold:.2f}",
          flush=True)
    source, pipeline, failure, notifier = None, None, None, Notifier.from_environment()
    try:
        source = open_source(config.source.uri, config.source)
        print(f"source {config.source.uri} ({type(source).__name__})")
        pipeline = Pipeline(source, inspector.segment, inspector.decide, inspector.record, inspector.record_gap,
                            inspector.captured, config.pipeline.queue_size, config.pipeline.max_frames,
                            config.gate.verdict_deadline_ms / 1000, config.model.streams)
        signals.attach(pipeline)
        inspector.open_sinks(lambda: snapshot(pipeline.stats, inspector, source))
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
        invoke, bare_fps = bare_rate(inspector.models, bench_invoke)  # inputs are still shaped for one frame's tiles
        tiles = max(inspector.tiles_per_frame, 1)
        print(f"bare invoke {invoke:.2f} ms for {tiles} tile(s), {len(inspector.models)} at once: {bare_fps:.1f} "
              f"frames/s; daemon (after its first verdict) / bare = {stats.steady_fps() / bare_fps:.2f}; "
              f"capture-to-verdict p99 / bare invoke = {stats.percentile(stats.latency_ms, 99) / invoke:.2f}")
    return RunSummary.of(stats, gate_counts)


def bare_rate(models: list, runs: int) -> tuple[float, float]:
    """The bare invoke (ms, the median over the models' medians) at each model's current input, and the
    frames per second of all the models invoked at once, each from a thread of its own (`runs` each)."""
    medians = [0.0] * len(models)

    def time_one(i: int) -> None:
        medians[i] = models[i].invoke_ms(runs)
    threads = [threading.Thread(target=time_one, args=(i,)) for i in range(len(models))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return float(np.median(medians)), sum(1000 / ms for ms in medians)


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
