"""`station quantize`: Keras model -> float32, float16 and int8 TFLite files, verified.

    station quantize --model runs/crack/model.keras --calib data/crack --out runs/crack/tflite

`--input-size 1088x1920` exports the same weights at another input size (a fully convolutional net
takes any size divisible by 2**depth): larger tiles waste less on overlap, and a 1920x1080 camera
runs as one tile (at a card's `preprocess.scale` below 1, the frame's size times the scale).

Writes OUT/model_<format>.tflite with its card, OUT/report.md and OUT/report.json. Exits 1 (after
writing the report) when the int8 file's Dice on the verification split drops more than
--max-drop below the float Keras model's.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from edge.core.card import DECISION_FIGURES, ImageDecision, ModelCard
from edge.core.errors import BadInput
from edge.evaluation.dataset import list_samples, read_pairs
from edge.inference.predictors import load_keras
from quantize.convert import (
    FORMATS,
    calibration_tiles,
    converter,
    export_saved_model,
)
from quantize.debug import layer_errors, selective_int8
from quantize.verify import report_markdown, verify

DEBUG_SHOWN = 15


def _formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in (*FORMATS, "edgetpu")]
    if unknown or not formats:
        raise BadInput(f"--formats: unknown format(s) {unknown}; expected a list of {', '.join(FORMATS)}, edgetpu")
    if "edgetpu" in formats and not shutil.which("edgetpu_compiler"):
        raise BadInput("--formats edgetpu: edgetpu_compiler is not on PATH (install it from the Coral apt repository)")
    if "edgetpu" in formats and "int8" not in formats:
        formats.insert(0, "int8")
    return formats


def _edgetpu(int8_file: Path, out: Path) -> dict:
    """Compile for the Edge TPU; returns the compiler's summary of ops left on the CPU."""
    done = subprocess.run(["edgetpu_compiler", "-s", "-o", str(out), str(int8_file)], capture_output=True, text=True)
    if done.returncode:
        raise BadInput(f"{int8_file}: edgetpu_compiler failed: {done.stderr.strip().splitlines()[-1:]}")
    cpu_ops = [line.strip() for line in done.stdout.splitlines() if "not supported" in line or "Mapped to CPU" in line]
    return {"file": str(out / f"{int8_file.stem}_edgetpu.tflite"), "cpu_ops": cpu_ops, "log": done.stdout}


def _file_card(card: ModelCard, fmt: str, path: Path, result: dict, split: str) -> ModelCard:
    """The card of one TFLite file: the Keras card with this file's format, input type and metrics."""
    file_card = dataclasses.replace(card, format=f"tflite-{fmt}", input=dataclasses.replace(card.input),
                                    metrics=copy.deepcopy(card.metrics))
    file_card.input.dtype = result["input_dtype"]
    keys = ("dice", "iou", "precision", "recall", "mean_image_dice", "image_recall", "false_reject_rate", "dice_drop",
            "image_auroc", "image_ap", *DECISION_FIGURES)
    file_card.metrics[f"{split}_{fmt}"] = {k: result[k] for k in keys if k in result}
    if "image_decision" in result:  # re-picked on val from this file's own maps: int8 shifts the scores
        file_card.decide(result["image_decision"] and ImageDecision(**result["image_decision"]))
    return file_card


def input_size(text: str) -> tuple[int, int]:
    """`--input-size`: N or HxW."""
    try:
        height, _, width = text.lower().partition("x")
        return int(height), int(width or height)
    except ValueError:
        raise BadInput(f"--input-size {text!r}: expected N or HxW, e.g. 1088x1920") from None


def resized(model, card: ModelCard, size: tuple[int, int]):
    """The model rebuilt at input `size` with the same weights, and its card saying so."""
    from training.models import build_model

    a = card.architecture
    try:
        other = build_model(a["arch"], size, card.input.channels, a["base_filters"], a["depth"], a["upsampling"])
    except (KeyError, ValueError) as exc:
        raise BadInput(f"--input-size: {exc}") from None
    other.set_weights(model.get_weights())
    return other, dataclasses.replace(card, input=dataclasses.replace(card.input, height=size[0], width=size[1]))


def run(args) -> int:
    """The `station quantize` verb."""
    formats = _formats(args.formats)
    tflite_formats = [f for f in formats if f != "edgetpu"]
    model, card = load_keras(args.model), ModelCard.load(args.model)
    if args.input_size:
        model, card = resized(model, card, input_size(args.input_size))
    out = Path(args.out)
    pairs, skipped = read_pairs(list_samples(args.calib, args.split), card.input.channels, skip_bad=True)
    tiles = calibration_tiles(args.calib, card, args.calib_images, args.seed) if "int8" in formats else None
    out.mkdir(parents=True, exist_ok=True)
    files, debug = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        saved = export_saved_model(model, Path(tmp) / "saved_model")
        for fmt in tflite_formats:
            files[fmt] = out / f"model_{fmt}.tflite"
            if fmt == "int8" and args.keep_float:
                files[fmt].write_bytes(selective_int8(converter(saved, fmt, tiles), tiles, args.keep_float))
                files["int8 without --keep-float"] = Path(tmp) / "all_int8.tflite"  # to show what sparing costs
                files["int8 without --keep-float"].write_bytes(converter(saved, fmt, tiles).convert())
            else:
                files[fmt].write_bytes(converter(saved, fmt, tiles).convert())
        if args.debug and "int8" in formats:
            debug = layer_errors(converter(saved, "int8", tiles), tiles)
        results = verify(model, files, pairs, card, calibrate_images=args.split == "val")
    files.pop("int8 without --keep-float", None)
    for fmt, path in files.items():
        _file_card(card, fmt, path, results[fmt], args.split).save(path)
    report = {"model": str(args.model), "calib": str(args.calib), "split": args.split, "calib_tiles": 0 if tiles is None else len(tiles),
              "keep_float": args.keep_float, "max_drop": args.max_drop, "skipped": skipped, "results": results}
    markdown = report_markdown(results, args.split, args.max_drop)
    if debug is not None:
        report["layer_errors"] = debug
        markdown += "\n## Per-layer int8 error, worst first (RMSE in quantization steps; ~0.29 is rounding alone)\n\n"
        markdown += "\n".join(f"- `{r['tensor']}` ({r['op']}): {r['rmse_per_scale']:.2f}" for r in debug[:DEBUG_SHOWN]) + "\n"
    if "edgetpu" in formats:
        report["edgetpu"] = _edgetpu(files["int8"], out)
        markdown += "\n## Edge TPU\n\n" + "\n".join(f"- {line}" for line in report["edgetpu"]["cpu_ops"] or ["all ops mapped"]) + "\n"
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown)
    print(markdown)
    print(f"results saved to {out} ({', '.join(p.name for p in files.values())}, report.md, report.json)")
    drop = results.get("int8", {}).get("dice_drop", 0.0)
    if drop > args.max_drop:
        print(f"station quantize: int8 Dice dropped {drop:.4f} (> --max-drop {args.max_drop}); "
              "try more or better --calib images, --debug to find the layers at fault, --keep-float to spare them")
        return 1
    return 0
