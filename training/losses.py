"""Segmentation losses and metrics in keras.ops, registered so a saved model reloads.

    model.compile(loss=SegmentationLoss(bce=1.0, dice=1.0), metrics=[Dice(), IoU()])

Metrics pool intersection and union over every pixel seen in the epoch (global Dice/IoU), the same
counting as edge.evaluation.metrics.
"""

from __future__ import annotations

import keras
from keras import ops

EPS = 1e-6
DICE_OVER = ("image", "batch", "defective")


@keras.saving.register_keras_serializable(package="station")
class SegmentationLoss(keras.losses.Loss):
    """Weighted sum of binary cross-entropy (or focal loss) and a soft Dice (Tversky) loss.

    `dice_over` says what the soft Dice is counted over:
    - `"image"`: a Dice per crop, averaged. A defect-free crop scores 1 only when its predicted
      mass is near zero, so every clean crop pulls towards predicting nothing at all.
    - `"batch"`: every pixel of the batch pooled; large defects outweigh small ones.
    - `"defective"`: a Dice per crop, averaged over the crops that hold a defect; clean crops add
      nothing here (the cross-entropy keeps them clean). A 20-pixel blowhole counts as much as a
      region covering half the crop.

    `alpha` makes it a Tversky index, TP / (TP + alpha FN + (1 - alpha) FP) (0.5: Dice; above 0.5
    missed defect pixels cost more than false ones), and `gamma` raises the loss to that power
    (focal Tversky, Abraham and Khan 2019: 0.75 keeps pushing crops that are already good).
    """

    def __init__(self, bce: float = 1.0, dice: float = 1.0, focal_gamma: float = 0.0, dice_over: str = "image",
                 alpha: float = 0.5, gamma: float = 1.0, name: str = "segmentation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if dice_over not in DICE_OVER:
            raise ValueError(f"dice_over: expected one of {DICE_OVER}, got {dice_over!r}")
        self.bce, self.dice, self.focal_gamma, self.dice_over = bce, dice, focal_gamma, dice_over
        self.alpha, self.gamma = alpha, gamma

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, EPS, 1 - EPS)
        ce = -(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))
        if self.focal_gamma:
            p_true = y_true * p + (1 - y_true) * (1 - p)
            ce = ce * ops.power(1 - p_true, self.focal_gamma)
        axes = tuple(range(1, len(y_pred.shape)))
        dice_axes = None if self.dice_over == "batch" else axes
        tp = ops.sum(y_true * y_pred, axis=dice_axes)
        fn = ops.sum(y_true, axis=dice_axes) - tp
        fp = ops.sum(y_pred, axis=dice_axes) - tp
        # smoothing 0.5: at alpha 0.5 this is (2 TP + 1) / (|truth| + |prediction| + 1)
        tversky = (tp + 0.5) / (tp + self.alpha * fn + (1 - self.alpha) * fp + 0.5)
        overlap_loss = 1 - tversky
        if self.gamma != 1.0:
            overlap_loss = ops.power(ops.maximum(overlap_loss, EPS), self.gamma)
        if self.dice_over == "defective":
            has = ops.cast(ops.sum(y_true, axis=axes) > 0, y_pred.dtype)
            overlap_loss = overlap_loss * has / ops.maximum(ops.mean(has), EPS)  # the batch mean = mean over defective crops
        return self.bce * ops.mean(ce, axis=axes) + self.dice * overlap_loss

    def get_config(self):
        return {**super().get_config(), "bce": self.bce, "dice": self.dice, "focal_gamma": self.focal_gamma,
                "dice_over": self.dice_over, "alpha": self.alpha, "gamma": self.gamma}


class _OverlapMetric(keras.metrics.Metric):
    """Pooled true-positive, false-positive and false-negative pixel counts at a threshold."""

    def __init__(self, threshold: float = 0.5, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.tp = self.add_variable((), initializer="zeros", name="tp")
        self.fp = self.add_variable((), initializer="zeros", name="fp")
        self.fn = self.add_variable((), initializer="zeros", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = ops.cast(y_true > 0.5, "float32")
        pred = ops.cast(y_pred >= self.threshold, "float32")
        tp = ops.sum(truth * pred)
        self.tp.assign_add(tp)
        self.fp.assign_add(ops.sum(pred) - tp)
        self.fn.assign_add(ops.sum(truth) - tp)

    def reset_state(self):
        for v in (self.tp, self.fp, self.fn):
            v.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="station")
class Dice(_OverlapMetric):
    """Global Dice (F1) of the defect class."""

    def __init__(self, threshold: float = 0.5, name: str = "dice", **kwargs):
        super().__init__(threshold, name=name, **kwargs)

    def result(self):
        den = 2 * self.tp + self.fp + self.fn
        return ops.where(den > 0, 2 * self.tp / ops.maximum(den, EPS), 1.0)


@keras.saving.register_keras_serializable(package="station")
class IoU(_OverlapMetric):
    """Global intersection over union of the defect class."""

    def __init__(self, threshold: float = 0.5, name: str = "iou", **kwargs):
        super().__init__(threshold, name=name, **kwargs)

    def result(self):
        den = self.tp + self.fp + self.fn
        return ops.where(den > 0, self.tp / ops.maximum(den, EPS), 1.0)
