"""The station's configuration file (config.yaml), validated with pydantic.

    config = load_station_config("config.yaml", overrides={"source": {"uri": "line.mp4"}})
    config.model.path, config.decision.min_area_px

Unknown keys and wrong types are refused with the key's path, e.g.
`config.yaml: decision.min_area_px: expected an integer, got 'ten'`. Types are strict: no true for
1, no "10" for 10 (an integer is still a number); gate templates may use only their own
placeholders. The `gate:` section is validated as the model of its `driver` (serial, modbus or log),
which refuses the keys of the others: `gate.modbus_address: unknown key for driver serial`. The file
may also hold `train:` and `eval:` sections: defaults for those verbs, read by the command line (as
strictly).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from edge.core.errors import BadInput
from edge.core.schema import describe, either, key_error, one_of

MIN_AREA_PX = 10  # the default smallest region that rejects, for the station, eval and bench alike


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ModelConfig(Section):
    path: str = Field(description="the .tflite file; its .json card must lie beside it")
    threads: int = Field(2, ge=1, description="interpreter threads, shared among the streams")
    streams: int = Field(1, ge=1, description="frames inferred at once, each on an interpreter of its own: 2 (with "
                         "threads 2) keeps two cores busier on large frames, for a second interpreter's memory")
    runtime: Literal["auto", "litert", "tflite_runtime", "tf", "openvino"] = Field("auto", description="auto: the first TFLite runtime installed (LiteRT, tflite_runtime, tensorflow.lite); openvino: Intel's runtime on the same file (pip install .[openvino])")
    delegate: str | None = Field(None, description="'edgetpu' or the path of an external delegate library")


class SourceConfig(Section):
    uri: str = Field(description="0, /dev/video0, rtsp://..., a GStreamer pipeline, aravis://CAMERA-ID, picamera2, a folder, a glob or a video file")
    width: int | None = Field(None, description="camera capture width")
    height: int | None = Field(None, description="camera capture height")
    fps: float | None = Field(None, description="camera frame rate")
    exposure: float | None = Field(None, description="camera exposure (driver units; aravis: microseconds)")
    gain: float | None = Field(None, description="aravis: camera gain (dB)")
    pixel_format: str | None = Field(None, description="aravis: Mono8, RGB8 or a Bayer*8 format (default: the camera's)")
    trigger: Literal["free", "software", "hardware"] = Field("free", description="aravis: free run at fps, a software trigger per frame the station is ready for, or a frame per pulse on trigger_source")
    trigger_source: str = Field("Line0", description="aravis, trigger hardware: the camera's trigger input")
    realtime: bool = Field(False, description="video files: hand frames out at the file's frame rate, like a camera")
    reconnect_initial_s: float = Field(0.5, gt=0, description="first wait before reopening a failed live source")
    reconnect_max_s: float = Field(10.0, gt=0, description="longest wait between reopen attempts")
    stall_s: float | None = Field(None, gt=0, description="live sources: no frame for this long is a stall and the "
                                  "camera is reopened (null: 5 frame periods of the measured rate, at least 2 s)")


class PreprocessConfig(Section):
    mode: Literal["card", "tile", "resize"] = Field("card", description="card: as the model card says")
    overlap: int | None = Field(None, ge=0, description="tile overlap in pixels, at the card's scale (default: the card's)")
    stitch: Literal["mean", "max"] | None = Field(None, description="how overlapping tiles merge (default: the card's)")
    roi: Annotated[tuple[int, int, int, int], Strict(False)] | None = Field(  # not strict: a YAML list is a tuple here
        None, description="[x, y, width, height]: only this part of the frame is inspected")
    ignore_mask: str | None = Field(None, description="PNG of the frame's size; non-zero pixels are never defects")

    @field_validator("roi")
    @classmethod
    def _roi(cls, value):
        if value is not None and (min(value[:2]) < 0 or min(value[2:]) < 1):
            raise ValueError(f"x and y must be >= 0, width and height >= 1, got {list(value)}")
        return value


class DecisionConfig(Section):
    threshold: float | None = Field(None, gt=0, lt=1, description="probability threshold (default: the card's)")
    min_area_px: int = Field(MIN_AREA_PX, ge=1, description="smallest defect region, in pixels, that rejects")
    min_area_mm2: float | None = Field(None, ge=0, description="smallest defect area in mm2 (needs mm_per_px)")
    mm_per_px: float | None = Field(None, gt=0, description="calibration: millimetres per pixel")
    cleanup_px: int = Field(0, ge=0, description="morphological opening size that removes specks (0: none)")
    rule: Literal["card", "image_score", "area"] = Field(
        "card", description="card: the image score at the card's image threshold when it has one, else the area rule")
    image_threshold: float | None = Field(
        None, ge=0, le=1, description="image-score threshold (default: the card's, picked on val for a catch rate)")


class PipelineConfig(Section):
    queue_size: int = Field(2, ge=1, description="frames waiting between stages; paced sources (cameras, streams, a video with source.realtime) drop the oldest, and skip a waiting frame that could not be judged by gate.verdict_deadline_ms")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames (default: run until the source ends)")
    shed_after_ms: float | None = Field(None, gt=0, description="a frame recorded later than this after its capture sheds the optional outputs for a second: reject overlays, then the page's live view and thumbnails (default: half of gate.verdict_deadline_ms)")


class OutputConfig(Section):
    results_log: str = Field("runs/station/results.jsonl", description="one JSON line per frame, appended and flushed")
    log_max_mb: float = Field(50.0, gt=0, description="rotate the results log at this size")
    log_backups: int = Field(5, ge=0, description="rotated logs kept (results.jsonl.1 ...)")
    overlays_dir: str | None = Field("runs/station/rejects", description="reject frames with their mask overlay (null: none)")
    overlays_quota_mb: float = Field(200.0, gt=0, description="disk quota of the overlays; oldest deleted first")
    status_interval_s: float = Field(1.0, gt=0, description="seconds between live status updates")
    buffered_records: int = Field(100_000, ge=1, description="records kept in memory while the disk refuses writes; the oldest are dropped (and counted) past this")
    alarm_on_write_failure: bool = Field(False, description="send the gate's stop-line alarm while the results log cannot be written")


def check_template(template: str, values: dict[str, Any]) -> None:
    """ValueError unless `template` is ASCII and formats `values` with {name} or {name:spec} fields only."""
    if not template.isascii():
        raise ValueError(f"{template!r} is not ASCII (the lines go out as ASCII)")
    allowed = ", ".join("{%s}" % name for name in values)
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:  # a lone { or }
        raise ValueError(f"{template!r}: {exc} (write {{{{ and }}}} for a brace)") from None
    for name, spec, conversion in fields:
        field = "{%s%s%s}" % (name, "!" + conversion if conversion else "", ":" + spec if spec else "")
        if "." in name or "[" in name:
            raise ValueError(f"{field}: no attribute or index access (use {allowed})")
        if name not in values:
            raise ValueError(f"unknown placeholder {field} (use {allowed})")
        if conversion or "{" in spec:
            raise ValueError(f"{field}: no conversions (!r, !s, !a) or nested fields (use {allowed})")
    try:
        template.format(**values)
    except ValueError as exc:  # a format spec that does not fit the value, e.g. {seq:s}
        raise ValueError(f"{template!r}: {exc}") from None


PLACEHOLDERS = {"reject_template": {"seq": 0, "lane": 1, "pulse_ms": 50, "part": 0}, "heartbeat_template": {"count": 1},
                "alarm_template": {"reason": "r"}, "ack_pattern": {"seq": 0}}


class GateConfig(Section):
    """The `gate:` section. Its keys depend on `driver`: `GateConfig(**section)` is the model of the driver
    it names (default log), each refusing the keys of the others; these keys are every driver's."""

    driver: Literal["serial", "modbus", "log"] = Field("log", description="serial: ASCII lines; modbus: Modbus RTU, or TCP with port tcp://HOST[:PORT] (pip install .[modbus]), each write confirmed by the PLC's response, no belt speed read; log: a dry run that takes every driver's keys")
    port: str | None = Field(None, description="serial port (/dev/ttyUSB0, a udev name, a pty) or a pyserial URL; modbus also tcp://HOST[:PORT]")
    baudrate: int = Field(115200, gt=0, description="serial speed")
    parity: Literal["N", "E", "O"] = Field("N", description="serial parity")
    stopbits: one_of(1, 1.5, 2) = Field(1, description="serial stop bits")
    ack_timeout_ms: float = Field(50, gt=0, description="wait this long for the ack (modbus: the PLC's response) before sending again")
    ack_retries: int = Field(2, ge=0, description="resends without ack before the reject is logged unacknowledged (modbus: retries of a write)")
    timing: Literal["immediate", "delay", "encoder", "part_id"] = Field("immediate", description="immediate: the PLC tracks the part; delay: the station fires when the part reaches the gate, at the belt speed; encoder: when the belt has moved distance_mm, by the PLC's 'ENC <count>' lines (serial); part_id: at the verdict, with the part number of the PLC's 'PART <n>' line at the camera's trigger, in {part} (serial)")
    part_window_ms: float = Field(200, gt=0, description="part_id: a frame belongs to the last part the PLC announced at most this long before its capture")
    distance_mm: float = Field(0, ge=0, description="delay, encoder: camera-to-gate distance along the belt")
    counts_per_mm: float | None = Field(None, gt=0, description="encoder: counts per mm of belt travel")
    encoder_modulus: int = Field(2**32, ge=2, description="encoder: the counter wraps to 0 at this value")
    belt_speed_mm_s: float = Field(500, gt=0, description="delay: belt speed until the PLC sends 'SPD <mm/s>' (serial; fixed with modbus)")
    actuator_lead_ms: float = Field(0, ge=0, description="delay: fire this much before the part arrives")
    lanes: int = Field(1, ge=1, description="lanes across the frame width; the defect's centroid picks the lane")
    recovery_ms: float = Field(100, ge=0, description="rejects closer than this on one lane are merged")
    verdict_deadline_ms: float = Field(1000, gt=0, description="a frame with no verdict by then is handled fail-safe")
    on_missing_verdict: Literal["reject", "stop_line"] = Field("reject", description="fail-safe action for a missing verdict")
    heartbeat_ms: float = Field(500, ge=0, description="heartbeat period for the PLC's watchdog (0: none); sent only while frames are judged on time")
    stall_ms: float | None = Field(None, gt=0, description="no frame judged on time for this long stops the heartbeat (default: the larger of 4 frame periods and verdict_deadline_ms)")
    max_consecutive_rejects: int = Field(0, ge=0, description="above this many rejects in a row, send the alarm (0: off)")
    late_tolerance_ms: float = Field(20, ge=0, description="a reject sent later than this after its time is logged late")
    give_up_ms: float = Field(1000, ge=0, description="a reject this far past its time is not sent, and logged missed")
    isolation: Literal["process", "thread"] = Field("process", description="process: the gate, its driver and its port in a child process of their own, never waiting for the station's interpreter lock (its memory locked where LimitMEMLOCK allows); thread: a thread of the station's process")
    realtime_priority: int | None = Field(None, ge=1, le=99, description="run the gate's thread SCHED_FIFO at this priority, ahead of inference and everything else on the device (needs root, CAP_SYS_NICE or LimitRTPRIO; null: normal)")
    reconnect_initial_s: float = Field(0.2, gt=0, description="first wait before reopening a lost port")
    reconnect_max_s: float = Field(5.0, gt=0, description="longest wait between reopen attempts")

    refused: ClassVar[dict[str, str]] = {}  # key -> why this driver has no such key, said in the error

    def __new__(cls, **values: Any):
        """GateConfig(...) builds the model of the driver named; a driver's model builds itself."""
        return super().__new__(driver_model(values) if cls is GateConfig else cls)

    @model_validator(mode="before")
    @classmethod
    def _own_keys(cls, values: Any) -> Any:
        """A key of another driver (or of none) is refused, naming this driver."""
        if isinstance(values, dict):
            driver = cls.model_fields["driver"].default
            for key in values:
                if key not in cls.model_fields:
                    why = cls.refused.get(key)
                    raise key_error(key, values[key], "extra_forbidden", f"unknown key for driver {driver}"
                                    + (f" ({why})" if why else ""))
        return values

    @model_validator(mode="after")
    def _needs(self):
        if self.driver != "log" and not self.port:
            raise ValueError(f"driver {self.driver} needs gate.port")
        if self.timing in ("delay", "encoder") and not self.distance_mm:
            raise ValueError(f"timing {self.timing} needs gate.distance_mm")
        if self.timing == "encoder" and self.counts_per_mm is None:
            raise ValueError("timing encoder needs gate.counts_per_mm")
        if self.timing == "encoder" and self.driver == "modbus":
            raise ValueError("timing encoder: the modbus driver reads no encoder (use driver serial, whose PLC sends "
                             "'ENC <count>' lines, or let the PLC track the part: timing immediate)")
        if self.timing == "part_id" and self.driver == "modbus":
            raise ValueError("timing part_id: the modbus driver reads no part numbers (use driver serial, whose PLC "
                             "sends 'PART <n>' lines, or timing immediate)")
        if self.timing == "part_id" and "{part" not in getattr(self, "reject_template", "{part}"):
            raise ValueError("timing part_id: put {part} in gate.reject_template (e.g. 'REJ {part} {lane}\\r\\n'): "
                             "the PLC finds the part by it")
        return self


class SerialGateConfig(GateConfig):
    """driver serial: ASCII lines from the templates (edge.gate.protocol)."""

    driver: Literal["serial"] = "serial"
    pulse_ms: int = Field(50, gt=0, description="gate pulse width, passed to the PLC in the template")
    reject_template: str = Field("REJ {seq} {lane} {pulse_ms}\r\n", description="line sent per reject")
    heartbeat_template: str = Field("HB {count}\r\n", description="line sent every heartbeat_ms")
    alarm_template: str = Field("STOP {reason}\r\n", description="stop-line alarm line")
    ack_pattern: str | None = Field(None, description="line the PLC answers per reject, e.g. 'ACK {seq}' (null: none)")

    @field_validator("reject_template", "heartbeat_template", "alarm_template", "ack_pattern")
    @classmethod
    def _placeholders(cls, value, info):
        if value is not None:
            check_template(value, PLACEHOLDERS[info.field_name])
        return value

    @field_validator("ack_pattern")
    @classmethod
    def _ack(cls, value):
        if value is not None and (value != value.strip() or "{seq}" not in value or value.count("{") != 1
                                  or value.count("}") != 1):
            raise ValueError(f"{value!r}: the PLC's stripped line is matched with {{seq}} as its digits: use {{seq}} "
                             "once, no format spec or other braces, no spaces at the ends")
        return value


def tcp_address(port: str | None) -> tuple[str, int] | None:
    """(host, port) of a `tcp://HOST[:PORT]` gate port (Modbus TCP, port 502 by default); None for a serial port."""
    if not port or not port.startswith("tcp://"):
        return None
    host, colon, number = port[len("tcp://"):].rpartition(":")
    if not colon:
        host, number = number, "502"
    host = host.strip("[]")  # an IPv6 address in brackets
    if not host or not number.isdigit() or not 0 < int(number) < 65536:
        raise ValueError(f"{port!r}: expected tcp://HOST or tcp://HOST:PORT with a port of 1-65535")
    return host, int(number)


class ModbusGateConfig(GateConfig):
    """driver modbus: a coil or register per reject, over a serial port (RTU) or `tcp://HOST[:PORT]` (TCP). The
    PLC's response to each write is its acknowledgement, and no belt speed is read: `delay` timing uses
    belt_speed_mm_s."""

    driver: Literal["modbus"] = "modbus"
    modbus_device_id: int = Field(1, ge=0, le=247, description="the PLC's device (slave) id")
    modbus_reject: Literal["coil", "register"] = Field("coil", description="set a coil, or write the seq to a register, per reject")
    modbus_address: int = Field(0, ge=0, description="reject coil/register of lane L is this + L")
    modbus_heartbeat_coil: int = Field(100, ge=0, description="coil toggled every heartbeat")
    modbus_alarm_coil: int = Field(101, ge=0, description="coil set by the stop-line alarm")

    refused: ClassVar[dict[str, str]] = {
        "ack_pattern": "the PLC's response to each write is its ack; ack_timeout_ms and ack_retries apply to it",
        "pulse_ms": "a reject sets the coil, the PLC times the pulse"}

    @field_validator("port")
    @classmethod
    def _tcp(cls, value):
        tcp_address(value)  # a ValueError names what is wrong with a tcp:// port
        return value


class LogGateConfig(SerialGateConfig, ModbusGateConfig):
    """driver log: a dry run; takes every driver's keys, so a line's config is dry-run by changing `driver` only."""

    driver: Literal["log"] = "log"


GATE_DRIVERS: dict[str, type[GateConfig]] = {"serial": SerialGateConfig, "modbus": ModbusGateConfig, "log": LogGateConfig}


def driver_model(values: dict) -> type[GateConfig]:
    """The model of the gate driver `values` names (default log); a ValidationError at `driver` if none."""
    name = values.get("driver", "log")
    if not isinstance(name, str) or name not in GATE_DRIVERS:
        raise key_error("driver", name, "literal_error", f"Input should be {either(GATE_DRIVERS)}")
    return GATE_DRIVERS[name]


def gate_section(value: Any) -> GateConfig:
    """The `gate:` mapping validated as its driver's model."""
    if isinstance(value, GateConfig):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("dict_type", "Input should be a valid dictionary")
    return driver_model(value).model_validate(value)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


class HttpConfig(Section):
    host: str = Field("127.0.0.1", description="address to bind; beyond loopback (e.g. 0.0.0.0) a token is required")
    port: int | None = Field(None, ge=0, le=65535, description="serve the operator page, /metrics and /healthz on this TCP port (null: off; 0: any free port)")
    token: str | None = Field(None, min_length=8, description="when set, every request needs ?token= or 'Authorization: Bearer'")
    live_fps: float = Field(4.0, gt=0, le=15, description="most live-view JPEGs encoded per second, and only while a client asks")
    live_width: int = Field(800, ge=64, description="live view scaled down to this width")
    rejects_shown: int = Field(12, ge=1, le=100, description="last rejects kept as thumbnails for the page")
    healthy_frame_age_s: float = Field(5.0, gt=0, description="/healthz is 503 when the last verdict is older than this")
    max_clients: int = Field(32, ge=1, description="connections served at once; one more is answered 503 and closed at once")
    client_timeout_s: float = Field(10.0, gt=0, description="a request's line and headers must arrive within this many seconds of connecting or of the last response, and each send of a response progress within it; else the connection is closed")

    @model_validator(mode="after")
    def _token_beyond_loopback(self):
        if self.port is not None and self.host not in LOOPBACK and not self.token:
            raise ValueError(f"host {self.host} is reachable beyond this machine: set http.token (at least 8 "
                             "characters) or bind 127.0.0.1")
        return self


class MqttConfig(Section):
    host: str | None = Field(None, description="MQTT broker (null: no MQTT; pip install .[mqtt])")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    topic_prefix: str = Field("station", min_length=1, description="topics: PREFIX/verdict, PREFIX/summary, PREFIX/status")
    client_id: str | None = Field(None, description="MQTT client id (default: station-<hostname>)")
    username: str | None = Field(None, description="broker user name (null: anonymous)")
    password: str | None = Field(None, description="broker password")
    mode: Literal["verdict", "summary"] = Field("verdict", description="verdict: one message per frame; summary: one per second")
    qos: one_of(0, 1, 2) = Field(1, description="MQTT QoS of verdicts and summaries (0 loses what the broker drops)")
    spool_dir: str = Field("runs/station/mqtt", description="messages wait on disk here until the broker has them")
    spool_max_mb: float = Field(100.0, gt=0, description="above this, new messages are dropped (counted) until the broker is back")


class OpcUaConfig(Section):
    host: str = Field("127.0.0.1", description="address to bind (the server is anonymous and unencrypted: keep it on loopback or a closed cell network)")
    port: int | None = Field(None, ge=1, le=65535, description="serve OPC UA at opc.tcp://HOST:PORT/station/ (null: off; pip install .[opcua]); 4840 is the usual port")
    update_s: float = Field(1.0, gt=0, description="the state variables are refreshed this often; LastVerdict and events come with each frame")
    allow_acknowledge: bool = Field(False, description="expose Station.AcknowledgeAlarm, which clears the consecutive-reject alarm; every variable stays read-only")


class StationConfig(Section):
    model: ModelConfig
    source: SourceConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    decision: DecisionConfig = DecisionConfig()
    pipeline: PipelineConfig = PipelineConfig()
    # validated by gate_section, not pydantic's tagged union, whose errors would put the driver in the key's path
    gate: Annotated[SerialGateConfig | ModbusGateConfig | LogGateConfig,
                    WrapValidator(lambda value, _: gate_section(value))] = LogGateConfig()
    output: OutputConfig = OutputConfig()
    http: HttpConfig = HttpConfig()
    mqtt: MqttConfig = MqttConfig()
    opcua: OpcUaConfig = OpcUaConfig()


STATION_SECTIONS = tuple(StationConfig.model_fields)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in `path`; BadInput when unreadable, invalid or not a mapping."""
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise BadInput(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: expected a mapping of sections, got {type(doc).__name__}")
    return doc


VARIANTS = {"gate": (GateConfig, GATE_DRIVERS)}  # sections whose keys depend on one key: (common keys, models)


def _section_keys(section: str, model: type[BaseModel]) -> list[tuple[str, FieldInfo, str]]:
    """(key, field, the drivers that take it when not all) of a section, common keys first."""
    base, variants = VARIANTS.get(section, (model, {}))
    keys = {key: (key, info, "") for key, info in base.model_fields.items()}
    for variant in variants.values():
        for key, info in variant.model_fields.items():
            takers = [name for name, other in variants.items() if key in other.model_fields]
            keys.setdefault(key, (key, info, ", ".join(takers)))
    return list(keys.values())


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md): every key of every station section, from the
    models; a key that only some gate drivers take says which."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for section, field in StationConfig.model_fields.items():
        for key, info, drivers in _section_keys(section, field.annotation):
            value = info.default
            default = ("required" if info.is_required() else "null" if value is None else str(value).lower()
                       if isinstance(value, bool) else f"`{value.encode('unicode_escape').decode()}`"
                       if isinstance(value, str) else str(value))
            lines.append(f"| `{section}.{key}` | {default} | {drivers + ': ' if drivers else ''}{info.description} |")
    return "\n".join(lines) + "\n"


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """`section.key=value` strings (values read as YAML) as {section: {key: value}}."""
    overrides: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not (sep and dot and section and name):
            raise BadInput(f"--set {item}: expected SECTION.KEY=VALUE, e.g. source.realtime=false")
        try:
            overrides.setdefault(section, {})[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise BadInput(f"--set {item}: the value is not valid YAML") from None
    return overrides


def load_station_config(path: str | Path, overrides: dict[str, dict] | None = None) -> StationConfig:
    """The station sections of the config file, with command-line overrides merged in."""
    doc = {k: v for k, v in read_yaml(path).items() if k not in ("train", "eval")}
    for section, values in (overrides or {}).items():
        doc[section] = {**(doc.get(section) or {}), **values}
    try:
        return StationConfig.model_validate(doc)
    except ValidationError as exc:
        raise BadInput(f"{path}: {describe(exc.errors()[0])}") from None
