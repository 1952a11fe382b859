"""The running station's state, typed: what the operator page, /metrics, /healthz and MQTT read.

    state = snapshot()                  # a StationState, made on demand (edge.station.run.snapshot)
    state.counters.rejects, state.gate.inspecting, state.camera.stalled
    state.to_json()                     # /api/state: the same names, nested

A new counter is one field here and the line that fills it; every reader sees it by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Counters:
    frames: int  # judged (or handled fail-safe) and recorded
    captured: int
    rejects: int  # frames rejected, fail-safe ones included
    drops: int  # dropped unjudged because inference fell behind
    failsafe: int  # without a verdict by their deadline
    unreadable: int  # images that could not be read
    fps: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    inference_p50_ms: float | None


@dataclass
class GateState:
    driver: str
    port: str | None
    timing: str
    connected: bool
    inspecting: bool  # frames judged on time within the stall time: the heartbeat is on
    last_on_time_s: float | None
    last_heartbeat_s: float | None
    heartbeats: int
    pending: int
    alarmed: bool
    failsafe_frames: int
    rejects: dict[str, int]  # by final status


@dataclass
class GapState:
    seconds: float
    ago_s: float
    reason: str


@dataclass
class CameraState:
    source: str
    kind: str
    live: bool
    outages: int
    outage_s: float
    last_gap: GapState | None
    superseded: int
    stalled: bool
    last_frame_age_s: float | None  # since the last verdict


@dataclass
class WriterState:
    """The results log's writer: whether records reach the disk."""

    ok: bool
    error: str | None
    buffered: int
    written: int
    lost: int


@dataclass
class OverlayState:
    ok: bool
    error: str | None
    failures: int
    paused: bool


@dataclass
class DiskState:
    results_log: WriterState
    overlays: OverlayState | None


@dataclass
class MqttState:
    broker: str
    topic: str
    connected: bool
    backlog: int
    dropped: int


@dataclass
class StationState:
    model: str
    uptime_s: float
    counters: Counters
    gate: GateState
    camera: CameraState
    disk: DiskState
    sink_errors: dict[str, int]
    shedding: bool  # behind: the optional outputs are skipped (pipeline.shed_after_ms)
    shed: dict[str, int]  # frames each optional output skipped
    mqtt: MqttState | None = None

    def to_json(self) -> dict:
        return asdict(self)
