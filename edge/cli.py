"""`station <verb>` (also `python -m edge`): one command line for training and the device.

Each verb names the module that runs it; the module is imported only when its verb is used, so the
device, which installs only the edge extra, never loads Keras or TensorFlow to run or bench.
Exit codes: 0 success, 2 bad input (one line naming what is wrong), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge import __version__
from edge.core.config import MIN_AREA_PX, STATION_SECTIONS, read_yaml
from edge.core.errors import BadInput

COMMON = argparse.ArgumentParser(add_help=False)
COMMON.add_argument("--config", default=None, help="YAML file: its section named after the verb sets the defaults")

HANDLERS = {"train": "training.train", "eval": "edge.evaluation.evaluate", "quantize": "quantize.command", "run": "edge.station.run",
            "plc-sim": "edge.tools.plc_sim", "gate-bench": "edge.tools.gate_bench", "bench": "edge.tools.bench", "demo": "edge.tools.demo",
            "camera-sim": "edge.tools.camera_sim", "soak": "edge.tools.soak", "record": "edge.tools.record"}


def _smooth(text: str) -> int | None:
    """--score-smooth: pixels, or auto (None)."""
    if text == "auto":
        return None
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _fraction(text: str) -> float:
    """A share in [0, 1): --false-reject-budget, --ema."""
    value = float(text)
    if not 0 <= value < 1:
        raise ValueError(text)
    return value


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a segmentation model on a folder dataset",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--data", required=True, help="folder dataset: images/, masks/ (or LabelMe JSON), optional index.csv")
    p.add_argument("--out", required=True, help="run folder: model.keras, model.json, last.keras, log.csv")
    p.add_argument("--arch", default="attention_unet", choices=["attention_unet", "unet", "attention_unet_ds"],
                   help="model architecture (attention_unet_ds: depthwise separable convs, the device variant for high resolution)")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs")
    p.add_argument("--batch", type=int, default=8, help="batch size")
    p.add_argument("--input-size", type=int, default=256, help="crop and model input side, divisible by 2**depth")
    p.add_argument("--base-filters", type=int, default=16, help="filters of the first level, doubled per level")
    p.add_argument("--depth", type=int, default=4, help="number of down-sampling levels")
    p.add_argument("--upsampling", default="transpose", choices=["transpose", "resize"], help="transposed conv or bilinear resize + conv")
    p.add_argument("--channels", type=int, default=0, choices=[0, 1, 3], help="0: 1 if the images are gray, else 3")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, halved when val Dice stalls")
    p.add_argument("--ema", type=_fraction, default=0.0, metavar="MOMENTUM",
                   help="> 0: validate and keep an exponential moving average of the weights with this momentum per step (0.99)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same run")
    p.add_argument("--xla", action=argparse.BooleanOptionalAction, default=True,
                   help="compile the train and predict steps with XLA (Keras leaves it off on a CPU-only machine, where "
                        "it takes a third off each step after about 20 s of compiling)")
    p.add_argument("--epoch-size", type=int, default=512, help="training crops per epoch")
    p.add_argument("--patience", type=int, default=15, help="early stopping: epochs without a better val Dice")
    p.add_argument("--time", type=float, default=0, help="minutes for the whole command: stop training when another epoch and the final scoring would not fit (0: no limit)")
    p.add_argument("--val-images", type=int, default=0,
                   help="score each epoch on this many val images drawn with the seed (0: all); the threshold and the card's metrics use all")
    p.add_argument("--resize", action="store_true", help="train on whole images resized to the input size, not crops")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels when whole images are tiled (pixels at --scale)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="resolution the model works at: images (and, from the card, the device's frames) are resized by "
                        "this before cropping and tiling; 0.5 sees twice the context per crop at a quarter of the cost, "
                        "for defects a few pixels across or more")
    p.add_argument("--bce-weight", type=float, default=1.0, help="weight of the cross-entropy loss")
    p.add_argument("--dice-weight", type=float, default=1.0, help="weight of the soft Dice loss")
    p.add_argument("--focal-gamma", type=float, default=0.0, help="> 0 turns the cross-entropy into focal loss")
    p.add_argument("--dice-over", default="image", choices=["batch", "image", "defective"],
                   help="soft Dice pooled over the batch, averaged per image, or averaged over the images with a defect")
    p.add_argument("--tversky-alpha", type=float, default=0.5,
                   help="weight of missed defect pixels in the Dice term (0.5: Dice; more: a Tversky loss that favours recall)")
    p.add_argument("--prior", type=float, default=0.01,
                   help="defect probability the untrained model starts at (output bias logit(prior); 0.5: a zero bias)")
    p.add_argument("--tversky-gamma", type=float, default=1.0, help="power of the Dice/Tversky loss (0.75: focal Tversky)")
    p.add_argument("--target-recall", type=float, default=1.0,
                   help="image-level threshold picked on val to catch this share of defective images (stored in the card)")
    p.add_argument("--false-reject-budget", type=_fraction, default=0.0, metavar="RATE",
                   help="share of clean val images the image threshold may reject to catch weaker defects than val's weakest")
    p.add_argument("--score-smooth", type=_smooth, default=None, metavar="PX|auto",
                   help="box mean (px) before the image score's max (0: the plain max; auto: the one of 0, 3, 5, 9 with the fewest val false rejects)")
    p.add_argument("--min-area", type=int, default=MIN_AREA_PX, help="smallest predicted region (px) that rejects an image (card metrics)")
    p.add_argument("--resume", action="store_true", help="continue RUN/last.keras from its last epoch (with the settings RUN/settings.json recorded)")
    p.add_argument("--distribute", action="store_true",
                   help="data-parallel over all devices (MirroredStrategy on tensorflow, DataParallel on jax)")
    p.add_argument("--skip-bad", action="store_true", help="list and skip bad image/mask pairs instead of stopping")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress: 0 none, 1 bar, 2 a line per epoch")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="Dice, IoU, precision, recall and image-level rates of a model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--model", required=True, help="model file (.keras or .tflite) with its .json card beside it")
    p.add_argument("--data", required=True, help="folder dataset")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split to measure")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the card's, picked on val)")
    p.add_argument("--min-area", type=int, default=MIN_AREA_PX, help="smallest predicted region (px) that rejects an image")
    p.add_argument("--json", default=None, help="also write the results to this JSON file, and the curve and worst images as PNG beside it")
    p.add_argument("--calibrate", action="store_true",
                   help="first pick the image-level threshold on val for --target-recall and store it in the model's card")
    p.add_argument("--target-recall", type=float, default=1.0, help="share of defective val images to catch (--calibrate)")
    p.add_argument("--false-reject-budget", type=_fraction, default=0.0, metavar="RATE",
                   help="share of clean val images the image threshold may reject to catch weaker defects (--calibrate)")
    p.add_argument("--score-smooth", type=_smooth, default=None, metavar="PX|auto",
                   help="box mean (px) before the image score's max (--calibrate; auto: the one of 0, 3, 5, 9 with the fewest val false rejects)")
    p.add_argument("--threads", type=int, default=2, help="TFLite interpreter threads")
    p.add_argument("--skip-bad", action="store_true", help="list and skip bad image/mask pairs instead of stopping")


def _add_quantize(sub) -> None:
    p = sub.add_parser("quantize", help="convert a Keras model to int8/float16/float32 TFLite and verify accuracy",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--model", required=True, help="trained model (RUN/model.keras) with its card")
    p.add_argument("--calib", required=True, help="folder dataset: calibration tiles from train, verification on --split")
    p.add_argument("--out", required=True, help="folder for model_<format>.tflite, their cards and report.md/json")
    p.add_argument("--formats", default="int8,float16,float32", help="comma-separated: int8, float16, float32, edgetpu")
    p.add_argument("--calib-images", type=int, default=200, help="calibration tiles (half with a defect where possible)")
    p.add_argument("--split", default="val", choices=["val", "test"], help="split used to verify the files")
    p.add_argument("--max-drop", type=float, default=0.02, help="fail (exit 1) when int8 Dice drops more than this")
    p.add_argument("--debug", action="store_true", help="per-layer int8 error (TFLite quantization debugger), worst first")
    p.add_argument("--keep-float", nargs="+", default=[], metavar="LAYER",
                   help="tensor names (or op types in capitals) to leave in float in the int8 file")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration tile choice")
    p.add_argument("--input-size", default=None, metavar="N|HxW",
                   help="export the same weights at this input size (divisible by 2**depth): larger tiles waste less "
                        "on overlap; 1088x1920 runs a 1920x1080 frame as one tile (use fewer --calib-images; with the card's "
                        "scale below 1, the frame size times the scale: 544x960 at 0.5)")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="the station daemon: frames -> segmentation -> verdicts, results log, overlays",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--source", default=None, help="override source.uri: 0, /dev/video0, rtsp://..., a pipeline, a folder, a video")
    p.add_argument("--model", default=None, help="override model.path (a .tflite file with its card)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set source.realtime=false --set decision.min_area_px=20")
    p.add_argument("--bench-invoke", type=int, default=0, metavar="N",
                   help="after the run, time N bare invoke() calls and compare the daemon's throughput and latency")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="speed and accuracy of model files on this device: a report to compare devices",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--model", action="append", default=[], metavar="M",
                   help="model file (.tflite, or .keras when Keras is installed); repeat for several")
    p.add_argument("--data", default=None, help="folder dataset (or folder of images): end-to-end rate, and accuracy with masks")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of a dataset with masks")
    p.add_argument("--threads", default="1,2", help="comma-separated interpreter thread counts")
    p.add_argument("--runtime", default="litert,tflite_runtime,tf,openvino", help="runtimes to try (TFLite's, and OpenVINO on the same file); missing ones are skipped")
    p.add_argument("--warmup", type=int, default=5, help="untimed invokes after the first")
    p.add_argument("--runs", type=int, default=50, help="timed invokes per run")
    p.add_argument("--min-area", type=int, default=MIN_AREA_PX, help="smallest predicted region (px) that rejects an image")
    p.add_argument("--json", default="runs/device_bench/bench.json", help="write the full results here")
    p.add_argument("--report", default="runs/device_bench/bench.md", help="Markdown report; PNG plots go beside it")
    p.add_argument("--compare", nargs=2, default=None, metavar=("A.json", "B.json"),
                   help="print two earlier reports side by side with B/A ratios, and stop")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the station on the demo video with a PLC stand-in; score it against the truth",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--load", type=int, default=0, help="start this many CPU-bound processes beside the station (timing under load)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. source.uri=runs/demo8/line.avi gate.realtime_priority=50 (repeatable)")


def _add_soak(sub) -> None:
    p = sub.add_parser("soak", help="the station on a camera stream for N minutes with faults injected; checks the invariant",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--video", required=True, help="video served as the camera, in a loop (python -m training.surfaces --video)")
    p.add_argument("--minutes", type=float, default=30, help="how long the station runs")
    p.add_argument("--cycle", type=float, default=120, help="seconds per round of faults (camera, PLC, disk, page)")
    p.add_argument("--out", default="runs/soak", help="work folder: config, logs, soak.json")


def _add_plc_sim(sub) -> None:
    p = sub.add_parser("plc-sim", help="a PLC stand-in on a serial port or pseudo-terminal",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--pty", action="store_true", help="open a pseudo-terminal and print its path")
    p.add_argument("--port", default=None, help="use this existing serial port instead")
    p.add_argument("--link", default=None, help="also make this symlink to the port (a stable name)")
    p.add_argument("--ack", action="store_true", help="answer each reject with 'ACK <seq>'")
    p.add_argument("--speed", type=float, default=0, help="send 'SPD <mm/s>' every second (0: never)")
    p.add_argument("--csv", default=None, help="append every received line to this CSV (monotonic time, wall time, line)")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: on SIGTERM/Ctrl-C)")
    p.add_argument("--belt", default=None, help="simulate a belt encoder: MM_S, ramp:FROM:TO:SECONDS or stop:MM_S:RUN_S:STOP_S")
    p.add_argument("--counts-per-mm", type=float, default=10, help="the simulated encoder's counts per mm (--belt)")
    p.add_argument("--encoder-hz", type=float, default=1000, help="ENC lines per second (--belt)")
    p.add_argument("--encoder-csv", default=None, help="write every ENC report's monotonic time and belt position (mm) here at exit")
    p.add_argument("--realtime-priority", type=int, default=None,
                   help="run SCHED_FIFO at this priority where allowed: a PLC is a device of its own, and a stand-in "
                        "waiting for a core behind the station would time itself, not the station")


def _add_camera_sim(sub) -> None:
    p = sub.add_parser("camera-sim", help="an IP-camera stand-in: MJPEG over HTTP on 127.0.0.1",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--video", default=None, help="serve this video's frames, looped (default: generated frames)")
    p.add_argument("--port", type=int, default=0, help="TCP port (0: any free port; the URL is printed)")
    p.add_argument("--fps", type=float, default=15, help="frames per second")
    p.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of generated frames")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: on SIGTERM/Ctrl-C)")


def _add_record(sub) -> None:
    p = sub.add_parser("record", help="frames from a source into a video (.avi, .mkv) or a folder of PNGs",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--source", default=None, help="the source (default: the config's source.uri, with its settings)")
    p.add_argument("--frames", type=int, default=300, help="how many frames")
    p.add_argument("--out", required=True, help="a .avi or .mkv file (lossless FFV1), or a folder for PNGs")
    p.add_argument("--fps", type=float, default=15, help="the video's frame rate")


def _add_gate_bench(sub) -> None:
    p = sub.add_parser("gate-bench", help="reject timing precision over a pseudo-terminal, with a PLC stand-in",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[COMMON])
    p.add_argument("--rejects", type=int, default=1000, help="rejects per timing mode")
    p.add_argument("--rate", type=float, default=50, help="rejects per second")
    p.add_argument("--travel-ms", type=float, default=200, help="delay timing: time from capture to the gate")


def parser(config: str | None = None) -> argparse.ArgumentParser:
    """The `station` argument parser with every verb; a config file's sections set their defaults."""
    p = argparse.ArgumentParser(prog="station", description="Edge inspection station: train, evaluate and run defect segmentation.")
    p.add_argument("--version", action="version", version=f"station {__version__}")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    _add_train(sub)
    _add_eval(sub)
    _add_quantize(sub)
    _add_run(sub)
    _add_bench(sub)
    _add_demo(sub)
    _add_soak(sub)
    _add_plc_sim(sub)
    _add_camera_sim(sub)
    _add_gate_bench(sub)
    _add_record(sub)
    if config:
        apply_config(sub.choices, config)
    return p


KINDS = {int: (int, "an integer"), float: ((int, float), "a number"), _fraction: ((int, float), "a rate from 0 to below 1"),
         None: (str, "a string")}  # type -> YAML types


def _check(action: argparse.Action, key: str, value):
    """The config value converted as the command line would convert it; BadInput naming the key."""
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise BadInput(f"{key}: expected true or false, got {value!r}")
        return value
    types, kind = KINDS[action.type]
    if isinstance(value, bool) or not isinstance(value, types):  # strict: "10" is not 10, 2.5 not 2, true not 1
        raise BadInput(f"{key}: expected {kind}, got {value!r}")
    try:
        value = action.type(value) if action.type else value
    except ValueError:
        raise BadInput(f"{key}: expected {kind}, got {value!r}") from None
    if action.choices is not None and value not in action.choices:
        raise BadInput(f"{key}: expected one of {list(action.choices)}, got {value!r}")
    return value


def apply_config(verbs: dict[str, argparse.ArgumentParser], path: str) -> None:
    """Set verb defaults from the file's verb sections; unknown keys and wrong types are BadInput."""
    for section, values in read_yaml(path).items():
        if section in STATION_SECTIONS:
            continue  # the daemon's settings, validated by `station run`
        if section not in verbs or not isinstance(values, dict):
            raise BadInput(f"{path}: {section}: unknown section (expected {', '.join((*verbs, *STATION_SECTIONS))})")
        actions = {a.dest: a for a in verbs[section]._actions if a.dest not in ("help", "config")}
        for key, value in values.items():
            action = actions.get(str(key).replace("-", "_"))
            if action is None:
                raise BadInput(f"{path}: {section}.{key}: unknown key")
            action.default = _check(action, f"{path}: {section}.{key}", value)
            action.required = False


# A thread waking for a timed reject, or the inference thread back from invoke() (which releases
# the GIL), waits for the GIL up to this long; Python's default of 5 ms put 3 ms on the gate's p99.
GIL_SWITCH_INTERVAL_S = 0.0005


def main(argv: list[str] | None = None) -> int:
    """Run one verb; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    try:
        args = parser(pre.parse_known_args(argv)[0].config).parse_args(argv)
    except BadInput as exc:
        print(f"station: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        try:
            handler = importlib.import_module(HANDLERS[args.verb])
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in ("keras", "tensorflow"):
                raise
            raise BadInput(f"needs Keras and TensorFlow, which a device install has not: pip install .[train] "
                           f"({exc})") from None
        return handler.run(args)
    except BadInput as exc:
        print(f"station {args.verb}: error: {exc}", file=sys.stderr)
        return 2
