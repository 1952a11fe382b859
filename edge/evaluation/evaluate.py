"""`station eval`: a model's metrics on a split of a folder dataset.

    report = evaluate_model("runs/crack/model.keras", "data/crackforest", split="test")

The threshold is the card's (picked on val, best Dice, when the model was trained) unless given.
The image-level operating point is the card's `image_decision` (picked on val for a target catch
rate by `station train`, or by `station eval --calibrate`); with `--json OUT` the catch-rate / false
reject curve and the worst misses and false rejects are drawn beside OUT as PNG files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.core.card import ImageDecision, ModelCard
from edge.core.config import MIN_AREA_PX
from edge.evaluation.dataset import list_samples, read_pairs
from edge.evaluation.figures import write_figures
from edge.evaluation.metrics import (
    evaluate_maps,
    image_score,
    recall_false_reject_curve,
    threshold_for_recall,
)
from edge.inference.predictors import load_model
from edge.inference.segment import Predict, probability_map

log = logging.getLogger(__name__)


def predict_maps(
    images: list[np.ndarray], predict: Predict, card: ModelCard, progress: bool = False
) -> list[np.ndarray]:
    """The probability map of every image."""
    return [probability_map(image, predict, card) for image in tqdm(images, desc="eval", disable=not progress)]


SMOOTH_CHOICES = (0, 3, 5, 9)  # box means (px) the image score may start from; 0: the plain max


def calibrate(
    probs: list[np.ndarray], masks: list[np.ndarray], target_recall: float = 1.0, smooth_px: int | None = None,
    false_reject_budget: float = 0.0,
) -> ImageDecision | None:
    """The card's image_decision: the image-score threshold that catches `target_recall` of the
    defective images of these (val) maps with the fewest false rejects, then lowered while val's false
    rejects stay within `false_reject_budget`; None when none is defective or none is clean.
    `smooth_px` None: the box mean of SMOOTH_CHOICES with the fewest val false rejects at the target
    (the smaller on a tie): where a speck's one hot pixel is what rejects a clean part, a mean over a
    few pixels tells it from a defect's patch."""
    labels = [bool(np.any(m)) for m in masks]
    points, scores = {}, {}
    for smooth in SMOOTH_CHOICES if smooth_px is None else (smooth_px,):
        scores[smooth] = [image_score(p, smooth) for p in probs]
        point = threshold_for_recall(labels, scores[smooth], target_recall)
        if point is None or not point["clean_images"]:
            # without clean images nothing says what a threshold costs (crackforest: every val image is
            # defective, and the lowest one's max probability, 0.9999, caught only 0.85 of test)
            log.warning("no %s image to calibrate on: no image-level threshold", "defective" if point is None else "clean")
            return None
        points[smooth] = point
    smooth = min(points, key=lambda k: (points[k]["false_reject_rate"], -points[k]["recall"], k))
    point = threshold_for_recall(labels, scores[smooth], target_recall, false_reject_budget)
    if point["defective_images"] < 10:
        log.warning("only %d defective images to calibrate on: the catch rate is known in steps of 1/%d",
                    point["defective_images"], point["defective_images"])
    return ImageDecision(**point, smooth_px=int(smooth))


def evaluate_model(
    model: str | Path,
    data: str | Path,
    split: str = "test",
    threshold: float | None = None,
    min_area_px: int = MIN_AREA_PX,
    skip_bad: bool = False,
    progress: bool = False,
    num_threads: int = 2,
    with_maps: bool = False,
) -> dict:
    """Metrics of the model file on one split of `data`, with what was measured (and, with
    `with_maps`, the pairs and probability maps under "_pairs" and "_probs")."""
    loaded = load_model(model, num_threads)
    predict, card = loaded.predict, loaded.card
    pairs, skipped = read_pairs(list_samples(data, split), card.input.channels, skip_bad)
    probs = predict_maps([image for _, image, _ in pairs], predict, card, progress)
    masks = [mask for _, _, mask in pairs]
    point = card.image_decision
    smooth = point.smooth_px if point else 0
    labels, scores = [bool(np.any(m)) for m in masks], [image_score(p, smooth) for p in probs]
    report = evaluate_maps(probs, masks, card.threshold if threshold is None else threshold, min_area_px,
                           point and point.image_threshold, smooth, scores)
    report = {"model": str(model), "data": str(data), "split": split, **report, "skipped": skipped,
              "image_scores": {pid: round(s, 6) for (pid, _, _), s in zip(pairs, scores)},
              "curve": recall_false_reject_curve(labels, scores)}
    if with_maps:
        report["_pairs"], report["_probs"] = pairs, probs
    return report


def format_report(report: dict) -> str:
    """The report as the aligned lines `station eval` prints."""
    keys = ("dice", "iou", "precision", "recall", "mean_image_dice", "image_recall", "false_reject_rate",
            "image_auroc", "image_ap", "recall_at_5pct_false_rejects", "image_threshold", "score_recall", "score_false_reject_rate",
            "threshold", "min_area_px", "images", "defective_images", "clean_images")
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(f"  {k:<23} {fmt(report[k])}" for k in keys if k in report)


def run(args) -> int:
    """The `station eval` verb."""
    if args.calibrate:
        loaded = load_model(args.model, args.threads)
        predict, card = loaded.predict, loaded.card
        pairs, _ = read_pairs(list_samples(args.data, "val"), card.input.channels, args.skip_bad)
        probs = predict_maps([image for _, image, _ in pairs], predict, card, progress=True)
        card.decide(calibrate(probs, [m for _, _, m in pairs], args.target_recall, args.score_smooth,
                              args.false_reject_budget))
        card.save(args.model)
        if point := card.image_decision:
            print(f"image threshold {point.image_threshold:.6f} on val: catches {point.recall:.3f} of "
                  f"{point.defective_images} defective images, false rejects {point.false_reject_rate:.3f} "
                  f"of {point.clean_images} clean; saved in {card.path_for(args.model)}")
    report = evaluate_model(args.model, args.data, args.split, args.threshold, args.min_area, args.skip_bad,
                            progress=True, num_threads=args.threads, with_maps=bool(args.json))
    for image, reason in report["skipped"]:
        print(f"skipped {image}: {reason}")
    print(f"{args.model} on {args.data} [{args.split}]\n{format_report(report)}")
    if args.json:
        pairs, probs = report.pop("_pairs"), report.pop("_probs")
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        figures = write_figures(report, pairs, probs, Path(args.json).with_suffix(""))
        print(f"results saved to {args.json} ({', '.join(p.name for p in figures)} beside it)")
    return 0
