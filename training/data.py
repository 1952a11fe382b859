"""Training batches from folder-dataset pairs: numpy/OpenCV only, so any Keras backend runs it.

    batches = CropDataset(pairs, crop=256, batch_size=8, samples_per_epoch=512, seed=0)
    x, y = batches[0]   # x: (8, 256, 256, C) float32 raw 0-255, y: (8, 256, 256, 1) 0/1

Crops are random, and with probability `defect_fraction` centred near a defect pixel (defects are
1-10 % of pixels, so plain random crops are mostly background). With `resize=True` whole images
are resized to the crop size instead. Augmentation is what changes on a factory line: flips,
90-degree turns, brightness, contrast, gamma, a little blur and sensor noise. Every batch is drawn
from a generator seeded by (seed, epoch, index): the same seed gives the same batches.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Geometric and photometric augmentation of one uint8 crop and its mask."""
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    if image.shape[0] == image.shape[1]:
        k = int(rng.integers(4))
        image, mask = np.rot90(image, k), np.rot90(mask, k)
    x = image.astype(np.float32) / 255.0
    x = np.power(x, rng.uniform(0.7, 1.4))  # gamma
    x = (x - x.mean()) * rng.uniform(0.75, 1.25) + x.mean() + rng.uniform(-0.12, 0.12)  # contrast, brightness
    x = x * 255.0
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.2)).reshape(x.shape)
    if rng.random() < 0.3:
        x = x + rng.normal(0.0, rng.uniform(1.0, 8.0), x.shape)
    return np.clip(x, 0, 255).astype(np.float32), np.ascontiguousarray(mask)


def pad_to(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reflect-pad an image and its mask so both sides are at least `size`."""
    pad_h, pad_w = max(size - image.shape[0], 0), max(size - image.shape[1], 0)
    if not (pad_h or pad_w):
        return image, mask
    border = (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
    padded = cv2.copyMakeBorder(image, *border, cv2.BORDER_REFLECT_101).reshape(
        image.shape[0] + pad_h, image.shape[1] + pad_w, image.shape[2])
    return padded, cv2.copyMakeBorder(mask, *border, cv2.BORDER_REFLECT_101)


def random_crop(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator, near_defect: bool):
    """A `size` crop: around a random defect pixel when `near_defect` and the mask has one, else
    one that covers an image's border as often as its centre.

    A uniform offset in [0, h - size] puts a 300 x 200 magnetic tile's corner in 1 crop of 12,600:
    the net then saw corners almost only in crops of the defects that sit there (breaks).
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask) if near_defect else ((), ())
    if len(ys):
        i = int(rng.integers(len(ys)))
        y0, x0 = ys[i] - rng.integers(size), xs[i] - rng.integers(size)
    else:  # an offset drawn past both ends and clipped: the ends get the overshoot
        y0, x0 = rng.integers(1 - size, h), rng.integers(1 - size, w)
    y0, x0 = int(np.clip(y0, 0, h - size)), int(np.clip(x0, 0, w - size))
    return image[y0 : y0 + size, x0 : x0 + size], mask[y0 : y0 + size, x0 : x0 + size]


class CropDataset(keras.utils.PyDataset):
    """Augmented crops (or resized whole images) of training pairs, seeded per epoch and batch."""

    def __init__(
        self,
        pairs: list[tuple[str, np.ndarray, np.ndarray]],
        crop: int,
        batch_size: int,
        samples_per_epoch: int,
        seed: int = 0,
        defect_fraction: float = 0.6,
        resize: bool = False,
        augmentation: bool = True,
        workers: int = 2,
        **kwargs,
    ):
        # two threads make the next batches while a step runs; with one, Keras hands the dataset to
        # tf.data, whose iterator teardown stalled the start of every epoch (1-35 s of idle cores)
        super().__init__(workers=workers, **kwargs)
        self.crop, self.batch_size, self.seed = crop, batch_size, seed
        self.defect_fraction, self.resize, self.augmentation = defect_fraction, resize, augmentation
        self.steps = max(samples_per_epoch // batch_size, 1)
        if resize:
            size = (crop, crop)
            self.pairs = [(cv2.resize(i, size, interpolation=cv2.INTER_AREA).reshape(crop, crop, i.shape[2]),
                           cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)) for _, i, m in pairs]
        else:
            self.pairs = [pad_to(i, m, crop) for _, i, m in pairs]
        self.defective = [i for i, (_, m) in enumerate(self.pairs) if m.any()]
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        xs, ys = [], []
        for _ in range(self.batch_size):
            index = int(rng.integers(len(self.pairs)))
            near_defect = rng.random() < self.defect_fraction
            if near_defect and self.defective and not self.pairs[index][1].any():
                index = self.defective[index % len(self.defective)]  # a defect crop needs a defective image
            image, mask = self.pairs[index]
            if not self.resize:
                image, mask = random_crop(image, mask, self.crop, rng, near_defect)
            if self.augmentation:
                image, mask = augment(image, mask, rng)
            xs.append(image.astype(np.float32))
            ys.append(mask)
        return np.stack(xs), np.stack(ys)[..., None].astype(np.float32)
