"""The station's configuration file (config.yaml), validated with pydantic.

    config = load_station_config("config.yaml", overrides={"source": {"uri": "line.mp4"}})
    config.model.path, config.decision.min_area_px

Unknown keys and wrong types are refused with the key's path, e.g.
`config.yaml: decision.min_area_px: expected an integer, got 'ten'`. The file may also hold
`train:` and `eval:` sections: defaults for those verbs, read by the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.errors import BadInput


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(Section):
    path: str = Field(description="the .tflite file; its .json card must lie beside it")
    threads: int = Field(2, ge=1, description="interpreter threads")
    runtime: Literal["auto", "litert", "tflite_runtime", "tf"] = Field("auto", description="TFLite runtime")
    delegate: str | None = Field(None, description="'edgetpu' or the path of an external delegate library")


class SourceConfig(Section):
    uri: str = Field(description="0, /dev/video0, rtsp://..., a GStreamer pipeline, picamera2, a folder, a glob or a video file")
    width: int | None = Field(None, description="camera capture width")
    height: int | None = Field(None, description="camera capture height")
    fps: float | None = Field(None, description="camera frame rate")
    exposure: float | None = Field(None, description="camera exposure (driver units)")
    realtime: bool = Field(False, description="video files: hand frames out at the file's frame rate, like a camera")
    reconnect_initial_s: float = Field(0.5, gt=0, description="first wait before reopening a failed live source")
    reconnect_max_s: float = Field(10.0, gt=0, description="longest wait between reopen attempts")


class PreprocessConfig(Section):
    mode: Literal["card", "tile", "resize"] = Field("card", description="card: as the model card says")
    overlap: int | None = Field(None, ge=0, description="tile overlap in pixels (default: the card's)")
    stitch: Literal["mean", "max"] | None = Field(None, description="how overlapping tiles merge (default: the card's)")
    roi: tuple[int, int, int, int] | None = Field(None, description="[x, y, width, height]: only this part of the frame is inspected")
    ignore_mask: str | None = Field(None, description="PNG of the frame's size; non-zero pixels are never defects")


class DecisionConfig(Section):
    threshold: float | None = Field(None, gt=0, lt=1, description="probability threshold (default: the card's)")
    min_area_px: int = Field(10, ge=1, description="smallest defect region, in pixels, that rejects")
    min_area_mm2: float | None = Field(None, ge=0, description="smallest defect area in mm2 (needs mm_per_px)")
    mm_per_px: float | None = Field(None, gt=0, description="calibration: millimetres per pixel")
    cleanup_px: int = Field(0, ge=0, description="morphological opening size that removes specks (0: none)")


class PipelineConfig(Section):
    queue_size: int = Field(2, ge=1, description="frames waiting between stages; live sources drop the oldest")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames (default: run until the source ends)")


class OutputConfig(Section):
    results_log: str = Field("runs/station/results.jsonl", description="one JSON line per frame, appended and flushed")
    log_max_mb: float = Field(50.0, gt=0, description="rotate the results log at this size")
    log_backups: int = Field(5, ge=0, description="rotated logs kept (results.jsonl.1 ...)")
    overlays_dir: str | None = Field("runs/station/rejects", description="reject frames with their mask overlay (null: none)")
    overlays_quota_mb: float = Field(200.0, gt=0, description="disk quota of the overlays; oldest deleted first")
    status_interval_s: float = Field(1.0, gt=0, description="seconds between live status updates")


class StationConfig(Section):
    model: ModelConfig
    source: SourceConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    decision: DecisionConfig = DecisionConfig()
    pipeline: PipelineConfig = PipelineConfig()
    output: OutputConfig = OutputConfig()


STATION_SECTIONS = tuple(StationConfig.model_fields)
KINDS = {"int_parsing": "an integer", "int_type": "an integer", "float_parsing": "a number", "float_type": "a number",
         "bool_parsing": "true or false", "bool_type": "true or false", "string_type": "a string"}


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


def _message(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: missing"
    expected = KINDS.get(error["type"], error["msg"].lower().removeprefix("input should be "))
    return f"{key}: expected {expected}, got {error['input']!r}"


def reference_markdown() -> str:
    """The README's configuration reference: every key of every station section, from the models."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for section, field in StationConfig.model_fields.items():
        for key, info in field.annotation.model_fields.items():
            default = "required" if info.is_required() else "null" if info.default is None else repr(info.default).lower() \
                if isinstance(info.default, bool) else str(info.default)
            lines.append(f"| `{section}.{key}` | {default} | {info.description} |")
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
        raise BadInput(f"{path}: {_message(exc.errors()[0])}") from None
