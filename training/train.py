"""`station train`: fit a U-Net or Attention U-Net on a folder dataset and write its model card.

    station train --data data/crackforest --out runs/crack --arch attention_unet --epochs 60

RUN/model.keras is the best epoch by val Dice (measured on whole val images, tiled as the edge
tiles them; `--val-images N` scores a fixed sample when all of val costs more than the epoch),
RUN/last.keras the latest (for --resume, which must keep the settings RUN/settings.json recorded),
RUN/log.csv one row per epoch. At the end the threshold with the best val Dice is picked and the val
and test metrics go into RUN/model.json.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import keras
import numpy as np

from edge.core.card import InputSpec, ModelCard, Preprocess
from edge.core.errors import BadInput
from edge.evaluation.dataset import (
    fingerprint,
    image_channels,
    list_samples,
    read_pairs,
)
from edge.evaluation.evaluate import calibrate, predict_maps
from edge.evaluation.metrics import (
    all_defect_dice,
    best_dice,
    best_threshold,
    dice_curve,
    evaluate_maps,
    threshold_for_recall,
)
from edge.inference.decision import image_score
from edge.inference.predictors import keras_predict
from edge.inference.segment import scaled, scaled_mask
from training.data import CropDataset
from training.losses import Dice, IoU, SegmentationLoss
from training.models import build_model

log = logging.getLogger(__name__)


class WholeImageValidation(keras.callbacks.Callback):
    """Adds val_dice, val_iou and val_threshold to the epoch logs, measured on whole val images at the
    threshold with the best val Dice (the one the card will get), val_dice_05 at 0.5, the image
    score's val_image_auroc and val_image_ap, and val_false_rejects: the share of clean val images
    rejected at the image threshold that catches `target_recall` of the defective ones.

    Scoring at a fixed 0.5 misjudged every epoch of an under-confident model: on magnetic_tile every
    probability stayed below 0.5 for epochs while the best-threshold Dice rose, so val Dice read 0,
    the checkpoint kept epoch 1 (which marked every pixel defective), and the learning-rate schedule
    and early stopping watched a flat zero.
    """

    def __init__(self, pairs, card: ModelCard, sample: int = 0, seed: int = 0, target_recall: float = 1.0):
        super().__init__()
        self.target_recall = target_recall
        if 0 < sample < len(pairs):  # a fixed sample: every epoch is scored on the same images
            pairs = [pairs[i] for i in sorted(np.random.default_rng(seed).choice(len(pairs), sample, replace=False))]
        self.images, self.masks, self.card = [p[1] for p in pairs], [p[2] for p in pairs], card
        self.seconds_per_image = 0.0  # the last epoch's pace, scoring included

    def on_epoch_end(self, epoch, logs=None):
        started = time.monotonic()
        probs = predict_maps(self.images, keras_predict(self.model), self.card)
        threshold, _ = best_dice(probs, self.masks)
        image_scores = [image_score(p) for p in probs]
        scores = evaluate_maps(probs, self.masks, threshold, scores=image_scores)
        logs["val_dice"], logs["val_iou"], logs["val_threshold"] = scores["dice"], scores["iou"], threshold
        logs["val_dice_05"] = dice_curve(probs, self.masks, [0.5])[1][0]
        for key in ("image_auroc", "image_ap"):  # how well the max probability ranks defective above clean images
            logs[f"val_{key}"] = float("nan") if scores[key] is None else scores[key]
        point = threshold_for_recall([bool(m.any()) for m in self.masks], image_scores, self.target_recall)
        rate = None if point is None else point["false_reject_rate"]  # None too when val has no clean image
        logs["val_false_rejects"] = float("nan") if rate is None else rate
        self.seconds_per_image = (time.monotonic() - started) / max(len(self.images), 1)


class TimeLimit(keras.callbacks.Callback):
    """Keeps the whole command inside `minutes` of wall time counted from `start` (0: no limit): stops
    after an epoch when one more epoch (the mean so far) and the scoring after training (`tail()`
    seconds) would not fit. Logs the `minutes` since `start` at each epoch's end.

    Stopping after the epoch that crossed the limit overran it by up to an epoch plus the final
    scoring: 31.6 minutes for a 28-minute limit on neu_seg (894 val and 447 test images to score).
    The pace leaves out the first step, which compiles the train step: on a GPU that took 1.9
    minutes of a 3 s epoch (JAX), and counting it stopped a 3-minute run after one epoch. It is
    timed at the second step's start: a batch-end hook would turn off Keras' async dispatch.
    """

    def __init__(self, minutes: float, start: float, tail: Callable[[], float]):
        super().__init__()
        self.seconds, self.start, self.tail = minutes * 60, start, tail

    def on_train_begin(self, logs=None):
        self.fit_start, self.epochs_run, self.compiled = time.monotonic(), 0, None

    def on_train_batch_begin(self, batch, logs=None):
        if self.compiled is None and batch == 1:
            self.compiled = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        self.epochs_run += 1
        logs["minutes"] = (now - self.start) / 60
        steps = self.params.get("steps") or 0
        if self.compiled is not None and steps > 1:  # the pace of every step but the first
            epoch_s = (now - self.compiled) * steps / (self.epochs_run * steps - 1)
        else:
            epoch_s = (now - self.fit_start) / self.epochs_run
        if self.seconds and now - self.start + epoch_s + self.tail() > self.seconds:
            log.warning("stopping after epoch %d: another one and the final scoring would pass the %.0f-minute "
                        "limit", epoch + 1, self.seconds / 60)
            self.model.stop_training = True


def distribution_scope(enabled: bool):
    """Data parallelism over every visible device with the backend's own engine."""
    if not enabled:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    if backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    raise BadInput(f"--distribute: not available on the {backend} backend (use tensorflow or jax)")


def _read_log(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# the settings that shape the model and what it sees: a resumed run must keep them
RUN_SETTINGS = ("arch", "input_size", "base_filters", "depth", "upsampling", "channels", "resize", "scale", "overlap")


def _check_resumable(out: Path, settings: dict) -> None:
    """Refuses to resume a run with settings other than the ones RUN/settings.json recorded at its start."""
    path = out / "settings.json"
    if not path.is_file():  # a run from before the file existed
        return
    recorded = json.loads(path.read_text())
    for key, value in settings.items():
        if key in recorded and recorded[key] != value:
            flag = "--" + key.replace("_", "-")
            raise BadInput(f"--resume: {out} was trained with {flag}={recorded[key]}, not {value} "
                           f"(give the run's settings, or a new --out)")


def run(args) -> int:
    """The `station train` verb."""
    started = time.monotonic()
    cv2.setNumThreads(1)  # the crops are cheap; OpenCV's own thread pool only fought the backend's (30 % slower steps)
    out = Path(args.out)
    if not 0 < args.scale <= 1 or (args.resize and args.scale != 1):
        raise BadInput(f"--scale: expected a number in (0, 1] for crops and tiles (not with --resize), got {args.scale}")
    samples = list_samples(args.data)
    by_split = {s: [x for x in samples if x.split == s] for s in ("train", "val", "test")}
    for split in ("train", "val"):
        if not by_split[split]:
            raise BadInput(f"{args.data}: no images in split {split!r} (training needs train and val)")
    channels = args.channels or image_channels(by_split["train"][0].image)
    history = _read_log(out / "log.csv") if args.resume and (out / "last.keras").is_file() else []
    settings = {key: getattr(args, key) for key in RUN_SETTINGS} | {"channels": channels}
    if history:
        _check_resumable(out, settings)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "settings.json").write_text(json.dumps(settings, indent=1) + "\n")
    train_pairs, skipped = read_pairs(by_split["train"], channels, args.skip_bad)
    val_pairs, skipped_val = read_pairs(by_split["val"], channels, args.skip_bad)
    read_s = (time.monotonic() - started) / len(by_split["train"] + by_split["val"])  # per image
    for image, reason in skipped + skipped_val:
        print(f"skipped {image}: {reason}")

    card = ModelCard(
        name=f"{Path(args.data).name}_{args.arch}",
        input=InputSpec(args.input_size, args.input_size, channels, "RGB" if channels == 3 else "GRAY"),
        preprocess=Preprocess(mode="resize" if args.resize else "tile", overlap=args.overlap, scale=args.scale),
        architecture={"arch": args.arch, "base_filters": args.base_filters, "depth": args.depth,
                      "upsampling": args.upsampling},
    )
    # the same seed gives the same model on one machine, with or without XLA (a test checks both);
    # TensorFlow's op determinism is not needed for it on a CPU, and it would switch XLA off
    keras.utils.set_random_seed(args.seed)
    out.mkdir(parents=True, exist_ok=True)
    history = _read_log(out / "log.csv") if args.resume else []
    with distribution_scope(args.distribute):
        if history and (out / "last.keras").is_file():
            model = keras.saving.load_model(out / "last.keras")
            print(f"resuming {out / 'last.keras'} after epoch {len(history)} with its optimizer's state "
                  f"(learning rate, --ema): --lr and --ema apply to new runs")
        else:
            history = []
            model = build_model(args.arch, args.input_size, channels, args.base_filters, args.depth, args.upsampling,
                                args.prior)
            model.compile(
                optimizer=keras.optimizers.Adam(args.lr, use_ema=args.ema > 0, ema_momentum=args.ema),
                loss=SegmentationLoss(args.bce_weight, args.dice_weight, args.focal_gamma, args.dice_over,
                                      args.tversky_alpha, args.tversky_gamma),
                metrics=[Dice(), IoU()],
            )
        model.jit_compile = args.xla  # a new or a resumed model alike
    crop_pairs = [(name, scaled(image, args.scale), scaled_mask(mask, args.scale)) for name, image, mask in train_pairs]
    if lost := sum(m.any() and not small.any() for (_, _, m), (_, _, small) in zip(train_pairs, crop_pairs)):
        print(f"warning: at --scale {args.scale:g} the defects of {lost} training images cover no pixel by half "
              f"and train as clean: thin or tiny defects need a larger scale")
    batches = CropDataset(crop_pairs, args.input_size, args.batch, args.epoch_size, args.seed, resize=args.resize)
    best_so_far = max((float(row["val_dice"]) for row in history), default=None)
    validation = WholeImageValidation(val_pairs, card, args.val_images, args.seed, args.target_recall)
    # with --ema the averaged weights are in the model from each epoch's end to the next one's start:
    # they are what is validated and saved (SwapEMAWeights first, so the callbacks after it see them)
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if model.optimizer.use_ema else []
    callbacks += [
        validation,
        # after training: all of val and test to score, test to read
        TimeLimit(args.time, started, lambda: validation.seconds_per_image * (len(val_pairs) + len(by_split["test"]))
                  + read_s * len(by_split["test"])),
        keras.callbacks.ModelCheckpoint(out / "model.keras", monitor="val_dice", mode="max", save_best_only=True,
                                        initial_value_threshold=best_so_far),
        keras.callbacks.ModelCheckpoint(out / "last.keras"),
        keras.callbacks.CSVLogger(out / "log.csv", append=bool(history)),
        keras.callbacks.ReduceLROnPlateau(monitor="val_dice", mode="max", factor=0.5, patience=max(args.patience // 3, 1)),
        keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=args.patience),
    ]
    model.fit(batches, epochs=args.epochs, initial_epoch=len(history), callbacks=callbacks, verbose=args.verbose)

    best = keras.saving.load_model(out / "model.keras")
    predict = keras_predict(best)
    val_probs = predict_maps([p[1] for p in val_pairs], predict, card)
    val_masks = [p[2] for p in val_pairs]
    card.threshold = best_threshold(val_probs, val_masks)
    card.image_decision = calibrate(val_probs, val_masks, args.target_recall, args.score_smooth,
                                   args.false_reject_budget)
    decision = card.image_decision
    point = (decision.image_threshold, decision.smooth_px) if decision else (None, 0)
    card.metrics = {"val": evaluate_maps(val_probs, val_masks, card.threshold, args.min_area, *point)}
    if by_split["test"]:
        test_pairs, _ = read_pairs(by_split["test"], channels, args.skip_bad)
        test_probs = predict_maps([p[1] for p in test_pairs], predict, card)
        card.metrics["test"] = evaluate_maps(test_probs, [p[2] for p in test_pairs], card.threshold, args.min_area, *point)
    epochs = _read_log(out / "log.csv")
    card.training = {
        "data": Path(args.data).name,
        "data_hash": fingerprint(by_split["train"] + by_split["val"]),
        "images": {s: len(v) for s, v in by_split.items()},
        "val_images_per_epoch": len(validation.images),
        "skipped": len(skipped) + len(skipped_val),
        "epochs": len(epochs),
        "best_epoch": 1 + int(np.argmax([float(r["val_dice"]) for r in epochs])),
        "wall_time_s": round(time.monotonic() - started, 1),
        "params": best.count_params(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "ema": float(model.optimizer.ema_momentum) if model.optimizer.use_ema else 0.0,
        **{k: getattr(args, k) for k in ("seed", "batch", "lr", "epoch_size", "bce_weight", "dice_weight",
                                          "focal_gamma", "dice_over", "tversky_alpha", "tversky_gamma", "prior",
                                          "distribute")},
    }
    card.save(out / "model.keras")
    floor = all_defect_dice(val_masks)
    if card.metrics["val"]["dice"] <= floor + 0.01:
        print(f"warning: val Dice {card.metrics['val']['dice']:.4f} is no better than marking every pixel defective "
              f"({floor:.4f}): the model has learnt nothing usable")
    summary = ", ".join(f"{split} dice {m['dice']:.4f} iou {m['iou']:.4f}" for split, m in card.metrics.items())
    if d := card.image_decision:
        rates = lambda m: f"catches {m['score_recall']:.3f}, false rejects {m['score_false_reject_rate']}"  # noqa: E731
        print(f"image threshold {d.image_threshold:.6f} (val, target catch rate {d.target_recall:.2f}, "
              f"false-reject budget {d.false_reject_budget:.2f}, "
              f"{d.defective_images} defective val images): " + "; ".join(f"{k} {rates(m)}" for k, m in card.metrics.items()))
    print(f"threshold {card.threshold:.2f} (best val Dice); {summary}")
    print(f"results saved to {out} (model.keras, model.json, log.csv) in {card.training['wall_time_s']:.0f} s")
    return 0
