"""`station eval`: a model's metrics on a split of a folder dataset.

    report = evaluate_model("runs/crack/model.keras", "data/crackforest", split="test")

The threshold is the card's (picked on val, best Dice, when the model was trained) unless given.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.core.card import ModelCard
from edge.evaluation.dataset import list_samples, read_pairs
from edge.core.config import MIN_AREA_PX
from edge.evaluation.metrics import evaluate_maps
from edge.inference.predictors import load_model
from edge.inference.segment import Predict, probability_map

log = logging.getLogger(__name__)


def predict_maps(
    images: list[np.ndarray], predict: Predict, card: ModelCard, progress: bool = False
) -> list[np.ndarray]:
    """The probability map of every image."""
    return [probability_map(image, predict, card) for image in tqdm(images, desc="eval", disable=not progress)]


def evaluate_model(
    model: str | Path,
    data: str | Path,
    split: str = "test",
    threshold: float | None = None,
    min_area_px: int = MIN_AREA_PX,
    skip_bad: bool = False,
    progress: bool = False,
    num_threads: int = 2,
) -> dict:
    """Metrics of the model file on one split of `data`, with what was measured."""
    loaded = load_model(model, num_threads)
    predict, card = loaded.predict, loaded.card
    pairs, skipped = read_pairs(list_samples(data, split), card.input.channels, skip_bad)
    probs = predict_maps([image for _, image, _ in pairs], predict, card, progress)
    report = evaluate_maps(probs, [mask for _, _, mask in pairs], card.threshold if threshold is None else threshold, min_area_px)
    return {"model": str(model), "data": str(data), "split": split, **report, "skipped": skipped}


def format_report(report: dict) -> str:
    """The report as the aligned lines `station eval` prints."""
    keys = ("dice", "iou", "precision", "recall", "mean_image_dice", "image_recall", "false_reject_rate",
            "threshold", "min_area_px", "images", "defective_images", "clean_images")
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(f"  {k:<18} {fmt(report[k])}" for k in keys)


def run(args) -> int:
    """The `station eval` verb."""
    report = evaluate_model(args.model, args.data, args.split, args.threshold, args.min_area, args.skip_bad,
                            progress=True, num_threads=args.threads)
    for image, reason in report["skipped"]:
        print(f"skipped {image}: {reason}")
    print(f"{args.model} on {args.data} [{args.split}]\n{format_report(report)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"results saved to {args.json}")
    return 0
