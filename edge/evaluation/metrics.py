"""Segmentation metrics, shared by `station eval`, `station bench` and training.

    report = evaluate_maps(probs, masks, threshold=0.5, min_area_px=10)
    report["dice"], report["image_recall"], report["false_reject_rate"]

Pixel metrics are global (every pixel of every image pooled), as in anomalib's pixel metrics;
`mean_image_dice` averages per image (an image with no defect and no prediction scores 1).
A prediction is `prob >= threshold`. At image level, an image is rejected by the device's own rule
(edge.inference.decision: a connected region of at least `min_area_px`), and is defective when its mask has
any defect pixel. An image's score is its highest defect probability (`image_score`); its AUROC
and average precision say how well the scores rank defective above clean images whatever the
threshold, and `threshold_for_recall` picks the operating point for a target catch rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edge.core.config import MIN_AREA_PX
from edge.inference.decision import Rules, find_defects, image_score

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


def _tie_groups(labels: np.ndarray, scores: np.ndarray):
    """Defective and clean counts at each distinct score, highest score first."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    distinct, start = np.unique(-s, return_index=True)  # -s is ascending: groups in descending score
    pos = np.add.reduceat(y.astype(np.int64), start)
    neg = np.add.reduceat((~y).astype(np.int64), start)
    return -distinct, pos, neg


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (ties count one half); None without both defective and clean images."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return None
    _, pos, neg = _tie_groups(labels, scores)
    neg_above = np.cumsum(neg) - neg  # clean images scoring strictly higher than the group
    wins = pos * (n_neg - neg_above - neg) + 0.5 * pos * neg
    return float(wins.sum() / (n_pos * n_neg))


def average_precision(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Average precision, sum over distinct thresholds of (recall step) x precision; None without defects."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    n_pos = int(labels.sum())
    if not n_pos:
        return None
    _, pos, neg = _tie_groups(labels, scores)
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    return float(np.sum(pos / n_pos * tp / (tp + fp)))


def recall_false_reject_curve(labels: Sequence[bool], scores: Sequence[float]) -> dict[str, list[float]]:
    """Catch rate (image recall) and false reject rate when rejecting `score >= t`, for every distinct
    score t, highest first: the operating points a threshold can give."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    thresholds, pos, neg = _tie_groups(labels, scores)
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    return {
        "threshold": thresholds.tolist(),
        "recall": (tp / n_pos if n_pos else np.full(len(tp), np.nan)).tolist(),
        "false_reject_rate": (fp / n_neg if n_neg else np.full(len(fp), np.nan)).tolist(),
    }


def recall_at_false_reject_rate(labels: Sequence[bool], scores: Sequence[float], max_false_rejects: float = 0.05) -> float | None:
    """The highest catch rate any threshold reaches while rejecting at most `max_false_rejects` of the
    clean images; None without both defective and clean images."""
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return None
    curve = recall_false_reject_curve(labels, scores)
    ok = [r for r, f in zip(curve["recall"], curve["false_reject_rate"]) if f <= max_false_rejects + 1e-12]
    return float(max(ok, default=0.0))


def threshold_for_recall(
    labels: Sequence[bool], scores: Sequence[float], target: float = 1.0, false_reject_budget: float = 0.0
) -> dict | None:
    """The image-score threshold that catches at least `target` of the defective images with the
    fewest false rejects; None when there is no defective image.

    Rejecting `score >= t`: t is put halfway between the lowest score that must be caught and the
    next lower score of any image, so the val outcome is the same as at that score and a slightly
    weaker defect is still caught. With n defective images a catch rate is known in steps of 1/n,
    and catching all n only says the true catch rate is at least 0.05 ** (1 / n) with 95 %
    confidence (`recall_lower_95`: 0.74 for 10 images, 0.88 for 24, 0.97 for 100).

    `false_reject_budget`: the false-reject rate the line can afford. Where the target costs less
    on val, the threshold is lowered until val's false rejects reach the budget (halfway again), so
    the affordable rejects buy a margin under the weakest val defect instead of going unspent: a
    defect weaker than any in val is still caught. The target catch rate always wins over the budget.
    """
    labels, scores = np.asarray(labels, bool), np.asarray(scores, np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos:
        return None
    need = max(1, math.ceil(target * n_pos - 1e-9))
    lowest_caught = np.sort(scores[labels])[::-1][need - 1]
    below = scores[scores < lowest_caught]
    threshold = float((lowest_caught + below.max()) / 2) if below.size else float(lowest_caught)
    allowed = math.floor(false_reject_budget * n_neg + 1e-9)  # clean images the budget may reject
    if allowed < n_neg and ((scores >= threshold) & ~labels).sum() <= allowed:
        spared = np.sort(scores[~labels])[::-1][allowed]  # the highest clean score the budget cannot reject
        threshold = min(threshold, float((spared + scores[scores > spared].min()) / 2))
    rejected = scores >= threshold
    caught = int((rejected & labels).sum())
    return {
        "image_threshold": threshold,
        "target_recall": float(target),
        "false_reject_budget": float(false_reject_budget),
        "recall": caught / n_pos,
        "false_reject_rate": _ratio((rejected & ~labels).sum(), n_neg, None),
        "defective_images": n_pos,
        "clean_images": n_neg,
        "recall_lower_95": float(0.05 ** (1 / n_pos)) if caught == n_pos else None,
    }


def image_metrics(
    probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], image_threshold: float | None = None, smooth_px: int = 0,
    scores: Sequence[float] | None = None,
) -> dict:
    """Image-level scores of the maps: AUROC and average precision of the image score (defective
    against clean images) and, at `image_threshold`, its catch rate and false reject rate. `scores`:
    the maps' image scores when the caller has them already."""
    scores = np.array([image_score(p, smooth_px) for p in probs] if scores is None else scores)
    labels = np.array([bool(np.any(m)) for m in masks])
    report = {"image_auroc": roc_auc(labels, scores), "image_ap": average_precision(labels, scores),
              "recall_at_5pct_false_rejects": recall_at_false_reject_rate(labels, scores, 0.05)}
    if image_threshold is not None:
        rejected = scores >= image_threshold
        report.update({
            "image_threshold": float(image_threshold),
            "score_recall": _ratio((rejected & labels).sum(), labels.sum(), None),
            "score_false_reject_rate": _ratio((rejected & ~labels).sum(), (~labels).sum(), None),
        })
    return report


def evaluate_maps(
    probs: Sequence[np.ndarray], masks: Sequence[np.ndarray], threshold: float, min_area_px: int = MIN_AREA_PX,
    image_threshold: float | None = None, smooth_px: int = 0, scores: Sequence[float] | None = None,
) -> dict[str, float | int | None]:
    """Pixel and image-level metrics of probability maps against 0/1 masks: the area rule's catch and
    false reject rates, the image score's AUROC and AP, and its rates at `image_threshold` if given."""
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
        **image_metrics(probs, masks, image_threshold, smooth_px, scores),
        "threshold": float(threshold),
        "min_area_px": int(min_area_px),
        "images": len(image_dice),
        "defective_images": n_defective,
        "clean_images": n_clean,
    }
