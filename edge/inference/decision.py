"""From a probability map to a verdict: threshold, clean-up, connected components, size rules.

    rules = Rules(threshold=0.5, min_area_px=20, mm_per_px=0.2, min_area_mm2=1.0)
    verdict = judge(seq, t_capture, prob, rules, timing)   # Verdict(reject, reason, defects, score)

Two rules decide. The area rule: a region of `prob >= threshold` is kept when its area reaches
`min_area_px` and, with a `mm_per_px` calibration, `min_area_mm2`, and the frame is rejected when
any region is kept. The image-score rule, used when `image_threshold` is set (the model card's
operating point, picked on val for a target catch rate): the frame is rejected when its score, the
highest probability after a `smooth_px` box mean, reaches `image_threshold`; regions are still
found and recorded, those reaching `image_threshold` kept. Pixels under `ignore` (belt edges, fixtures) never count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from edge.core.config import MIN_AREA_PX


@dataclass(frozen=True)
class Rules:
    """What counts as a defect."""

    threshold: float = 0.5
    min_area_px: int = MIN_AREA_PX
    min_area_mm2: float | None = None
    mm_per_px: float | None = None
    cleanup_px: int = 0  # side of the morphological opening that removes specks; 0 = none
    image_threshold: float | None = None  # set: the image-score rule decides, not the area rule
    smooth_px: int = 0  # box mean before the image score's max


@dataclass(frozen=True)
class Defect:
    """One connected defect region."""

    bbox: tuple[int, int, int, int]  # x, y, width, height in frame pixels
    area_px: int
    area_mm2: float | None
    mean_prob: float
    max_prob: float
    centroid: tuple[float, float]  # x, y
    kept: bool

    def to_json(self) -> dict:
        return asdict(self)


def find_defects(prob: np.ndarray, rules: Rules, ignore: np.ndarray | None = None) -> list[Defect]:
    """Every connected region of `prob >= threshold` (outside `ignore`), largest first."""
    binary = (prob >= rules.threshold).astype(np.uint8)
    if ignore is not None:
        binary[ignore] = 0
    if rules.cleanup_px > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (rules.cleanup_px, rules.cleanup_px))
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    defects = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        values = prob[y : y + h, x : x + w][labels[y : y + h, x : x + w] == i]
        mm2 = area * rules.mm_per_px**2 if rules.mm_per_px else None
        kept = area >= rules.min_area_px and (rules.min_area_mm2 is None or mm2 is None or mm2 >= rules.min_area_mm2)
        defects.append(Defect((x, y, w, h), area, mm2, float(values.mean()), float(values.max()),
                              (float(centroids[i][0]), float(centroids[i][1])), kept))
    return sorted(defects, key=lambda d: d.area_px, reverse=True)


def image_score(prob: np.ndarray, smooth_px: int = 0) -> float:
    """An image's defect score: the highest defect probability, after a `smooth_px` box mean when > 1
    (so that one hot pixel does not reject a part; SegDecNet's decision also starts from the max)."""
    prob = np.asarray(prob, np.float32)
    if smooth_px > 1:
        prob = cv2.blur(prob, (smooth_px, smooth_px), borderType=cv2.BORDER_REFLECT)
    return float(prob.max()) if prob.size else 0.0


@dataclass
class Verdict:
    """The judgement of one frame: reject or accept, why, and what was found."""

    seq: int
    t_capture: float
    reject: bool
    reason: str  # "defect", "clean", or why the frame was not judged
    defects: list[Defect]
    timing: dict[str, float]
    score: float | None = None  # the image score, under the image-score rule


def judge(seq: int, t_capture: float, prob: np.ndarray | None, rules: Rules, timing: dict,
          ignore: np.ndarray | None = None, reason: str = "") -> Verdict:
    """Reject by the rules (module docstring); a frame without a probability map is rejected (fail-safe)."""
    if prob is None:
        return Verdict(seq, t_capture, True, reason or "not judged", [], timing)
    defects = find_defects(prob, rules, ignore)
    if rules.image_threshold is None:
        reject, score = any(d.kept for d in defects), None
    else:
        score = image_score(prob if ignore is None else np.where(ignore, 0.0, prob), rules.smooth_px)
        reject = score >= rules.image_threshold
        # kept: the regions that reach the image threshold (they give the gate its lanes; none: all lanes)
        defects = [replace(d, kept=reject and d.max_prob >= rules.image_threshold) for d in defects]
    return Verdict(seq, t_capture, reject, "defect" if reject else "clean", defects, timing, score)
