"""Does the quantized file still find the defects? Float Keras vs each TFLite file, on one split.

    results = verify(model, files, pairs, card)   # {"keras": {...}, "int8": {...}, ...}

Every file is measured through `station eval`'s code (tiling, stitching, metrics) at the card's
threshold, with the mean absolute difference of its probability maps from the Keras model's, its
size, its op types, the delegate partitions LiteRT made, and its median invoke latency.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edge.core.card import ModelCard
from edge.evaluation.evaluate import calibrate, predict_maps
from edge.evaluation.metrics import evaluate_maps, image_metrics
from edge.inference.predictors import keras_predict
from edge.inference.runtime import TFLiteModel


def verify(keras_model, files: dict[str, Path], pairs: list, card: ModelCard, calibrate_images: bool = False) -> dict[str, dict]:
    """Metrics of the Keras model and of each TFLite file on the same images and threshold; with
    `calibrate_images` (the pairs are val) and a card with an image decision, each file's own
    image threshold for the card's target catch rate under "image_decision"."""
    images, masks = [p[1] for p in pairs], [p[2] for p in pairs]
    reference = predict_maps(images, keras_predict(keras_model), card)
    results = {"keras": evaluate_maps(reference, masks, card.threshold)}
    for fmt, path in files.items():
        model = TFLiteModel(path, num_threads=2)
        probs = predict_maps(images, model.predict, card)
        scores = evaluate_maps(probs, masks, card.threshold)
        if calibrate_images and (point := card.image_decision):
            picked = calibrate(probs, masks, point.target_recall, point.smooth_px, point.false_reject_budget)
            scores["image_decision"] = picked and dataclasses.asdict(picked)
            if picked:  # the file's own catch and false-reject rates at its own image threshold
                scores.update(image_metrics(probs, masks, picked.image_threshold, picked.smooth_px))
        results[fmt] = {
            **scores,
            "dice_drop": results["keras"]["dice"] - scores["dice"],
            "mean_abs_diff": float(np.mean([np.abs(p - r).mean() for p, r in zip(probs, reference)])),
            "size_bytes": path.stat().st_size,
            "op_types": model.op_types(),
            "delegate_partitions": model.delegate_partitions(),
            "input_dtype": np.dtype(model.input["dtype"]).name,
            "output_dtype": np.dtype(model.output["dtype"]).name,
            "latency_ms": {t: TFLiteModel(path, num_threads=t).invoke_ms() for t in (1, 2)},
            "runtime": model.runtime,
        }
    return results


def report_markdown(results: dict[str, dict], split: str, max_drop: float) -> str:
    """The verification as a Markdown report."""
    lines = [
        f"# Quantization report ({split} split, threshold {results['keras']['threshold']:.2f})", "",
        "| file | size (KiB) | Dice | IoU | Dice drop | mean abs diff | invoke 1 thread (ms) | invoke 2 threads (ms) | partitions | I/O |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| keras (float) | | {results['keras']['dice']:.4f} | {results['keras']['iou']:.4f} | | | | | | |",
    ]
    for fmt, r in results.items():
        if fmt != "keras":
            lines.append(
                f"| {fmt} | {r['size_bytes'] / 1024:.0f} | {r['dice']:.4f} | {r['iou']:.4f} | {r['dice_drop']:+.4f} | "
                f"{r['mean_abs_diff']:.4f} | {r['latency_ms'][1]:.2f} | {r['latency_ms'][2]:.2f} | "
                f"{r['delegate_partitions']} | {r['input_dtype']}/{r['output_dtype']} |")
    lines += ["", f"The int8 file fails verification when its Dice drop exceeds {max_drop}.", "", "## Op types", ""]
    for fmt, r in results.items():
        if fmt != "keras":
            lines.append(f"- {fmt}: " + ", ".join(f"{op} x{n}" for op, n in r["op_types"].items()))
    return "\n".join(lines) + "\n"
