"""Segmentation metrics, shared by `station eval`, `station bench` and training.

    report = evaluate_maps(probs, masks, threshold=0.5, min_area_px=10)
    report["dice"], report["image_recall"], report["false_reject_rate"]

Pixel metrics are global (every pixel of every image pooled), as in anomalib's pixel metrics;
`mean_image_dice` averages per image (an image with no defect and no prediction scores 1).
A prediction is `prob >= threshold`. At image level, an image is rejected by the device's own rule
(edge.inference.decision: a connected region of at least `min_area_px`), and is defective when its mask has
any defect pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.core.config import MIN_AREA_PX
from edge.inference.decision import Rules, find_defects

BINS = 1000


def _ratio(num: float, den: float, empty: float) -> float:
    return float(num / den) if den else empty


def pixel_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Dice, IoU, precision and recall from pooled counts; empty prediction and truth score 1."""
    nothing = tp + fp + fn == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        "iou": _ratio(tp, tp + fp + fn, 1.0),
        "precision": _ratio(tp, tp + fp, 1.0 if nothing else 0.0),
        "recall": _ratio(tp, tp + fn, 1.0 if nothing else 0.0),
    }


def counts(pred: np.ndarray, mask: np.ndarray) -> tuple[int, int, int]:
    """True positive, false positive and false negative pixel counts of two boolean maps."""
    pred, mask = pred.astype(bool), mask.astype(bool)
    tp = int(np.count_nonzero(pred & mask))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(mask)) - tp


def _default_grid() -> np.ndarray:
    return np.round(np.arange(0.05, 0.951, 0.01), 2)


def dice_curve(
    probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], grid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Global Dice at every threshold of `grid` (default 0.05..0.95 by 0.01), from one pass over the maps."""
    grid = _default_grid() if grid is None else np.asarray(grid)
    pos, neg = np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)
    for prob, mask in zip(probs, masks):
        bins = np.clip((prob * BINS).astype(np.int64), 0, BINS - 1)
        defect = mask.astype(bool)
        pos += np.bincount(bins[defect], minlength=BINS)
        neg += np.bincount(bins[~defect], minlength=BINS)
    pos_at_least, neg_at_least = pos[::-1].cumsum()[::-1], neg[::-1].cumsum()[::-1]
    idx = np.clip(np.round(grid * BINS).astype(int), 0, BINS - 1)
    tp, fp = pos_at_least[idx], neg_at_least[idx]
    fn = pos.sum() - tp
    return grid, np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 1.0)


def best_dice(
    probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], grid: np.ndarray | None = None
) -> tuple[float, float]:
    """(threshold, global Dice) at the threshold of `grid` with the best Dice (mid-plateau on ties).

    This is how training scores an epoch: the threshold the card would get, not a fixed 0.5. An
    under-confident model (imbalanced data: every probability below 0.5 for the first epochs) scores
    0 at 0.5 while it already separates defects from background.
    """
    grid, dice = dice_curve(probs, masks, grid)
    tied = np.flatnonzero(dice >= dice.max() - 1e-12)
    i = tied[len(tied) // 2]  # the middle of a plateau keeps a margin on both sides
    return float(grid[i]), float(dice[i])


def best_threshold(
    probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], grid: np.ndarray | None = None
) -> float:
    """The threshold on `grid` (default 0.05..0.95 by 0.01) with the best global Dice (mid-plateau on ties)."""
    return best_dice(probs, masks, grid)[0]


def all_defect_dice(masks: Sequence[np.ndarray]) -> float:
    """Global Dice of marking every pixel defective: the floor a model must beat to have learnt anything.

    On data with few defect pixels (magnetic_tile test: 2.5 %) it is small (0.049) but not zero, and a
    best-threshold search over a model that separates nothing lands on it (threshold below every
    probability: every image rejected).
    """
    defect = sum(int(np.count_nonzero(m)) for m in masks)
    total = sum(int(m.size) for m in masks)
    return _ratio(2 * defect, defect + total, 1.0)


def evaluate_maps(
    probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float, min_area_px: int = MIN_AREA_PX
) -> dict[str, float | int | None]:
    """Pixel and image-level metrics of probability maps against 0/1 masks."""
    total = np.zeros(3, np.int64)
    image_dice, rejected, defective = [], [], []
    for prob, mask in zip(probs, masks):
        pred = prob >= threshold
        tp, fp, fn = counts(pred, mask)
        total += (tp, fp, fn)
        image_dice.append(pixel_scores(tp, fp, fn)["dice"])
        rejected.append(any(d.kept for d in find_defects(prob, Rules(threshold, min_area_px))))
        defective.append(bool(mask.any()))
    rejected_arr, defective_arr = np.array(rejected), np.array(defective)
    n_defective, n_clean = int(defective_arr.sum()), int((~defective_arr).sum())
    return {
        **pixel_scores(*(int(v) for v in total)),
        "mean_image_dice": float(np.mean(image_dice)) if image_dice else None,
        "image_recall": _ratio((rejected_arr & defective_arr).sum(), n_defective, None),
        "false_reject_rate": _ratio((rejected_arr & ~defective_arr).sum(), n_clean, None),
        "threshold": float(threshold),
        "min_area_px": int(min_area_px),
        "images": len(image_dice),
        "defective_images": n_defective,
        "clean_images": n_clean,
    }
