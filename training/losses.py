"""Segmentation losses and metrics in keras.ops, registered so a saved model reloads.

    model.compile(loss=SegmentationLoss(bce=1.0, dice=1.0), metrics=[Dice(), IoU()])

Metrics pool intersection and union over every pixel seen in the epoch (global Dice/IoU), the same
counting as edge.evaluation.metrics.
"""

from __future__ import annotations

import keras
from keras import ops

EPS = 1e-6


@keras.saving.register_keras_serializable(package="station")
class SegmentationLoss(keras.losses.Loss):
    """Weighted sum of binary cross-entropy (or focal loss) and soft Dice loss.

    `dice_over="batch"` pools the soft Dice over every pixel of the batch, so defect-free crops do
    not each pull towards predicting nothing (what per-image Dice does when defects are faint and
    many crops are clean); `"image"` averages a per-image soft Dice.
    """

    def __init__(self, bce: float = 1.0, dice: float = 1.0, focal_gamma: float = 0.0, dice_over: str = "image",
                 name: str = "segmentation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.bce, self.dice, self.focal_gamma, self.dice_over = bce, dice, focal_gamma, dice_over

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, EPS, 1 - EPS)
        ce = -(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))
        if self.focal_gamma:
            p_true = y_true * p + (1 - y_true) * (1 - p)
            ce = ce * ops.power(1 - p_true, self.focal_gamma)
        axes = tuple(range(1, len(y_pred.shape)))
        dice_axes = None if self.dice_over == "batch" else axes
        intersection = ops.sum(y_true * y_pred, axis=dice_axes)
        total = ops.sum(y_true, axis=dice_axes) + ops.sum(y_pred, axis=dice_axes)
        soft_dice = (2 * intersection + 1.0) / (total + 1.0)
        return self.bce * ops.mean(ce, axis=axes) + self.dice * (1 - soft_dice)

    def get_config(self):
        return {**super().get_config(), "bce": self.bce, "dice": self.dice, "focal_gamma": self.focal_gamma,
                "dice_over": self.dice_over}


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
