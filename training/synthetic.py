"""The tests' easy task: thin dark cracks and blobs on a noisy, unevenly lit texture.

    pairs = write_dataset(tmp / "data", images=48, size=(96, 128))
    truth = write_video(tmp / "line.avi", frames=24)            # per frame: has a defect

Small and quick to learn, so a test trains a tiny model in seconds. The realistic surfaces (and
the command that writes datasets and conveyor videos) are in training.surfaces.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from training.surfaces import save_dataset


def surface(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A gray texture: smoothed noise plus a lighting gradient, float32 0-255."""
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 2.0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 30 * (xx / width - 0.5) * rng.uniform(-1, 1) + 20 * (yy / height - 0.5) * rng.uniform(-1, 1)
    return 150 + 25 * noise / (noise.std() + 1e-6) + light


def draw_defects(rng: np.random.Generator, shape: tuple[int, int], count: int) -> np.ndarray:
    """A 0/1 mask of `count` defects: random thin polylines (cracks) or small ellipses (pits)."""
    height, width = shape
    mask = np.zeros(shape, np.uint8)
    for _ in range(count):
        if rng.random() < 0.7:
            points = [rng.uniform((0, 0), (width, height))]
            for _ in range(int(rng.integers(3, 7))):
                points.append(points[-1] + rng.normal(0, max(height, width) / 8, 2))
            pts = np.round(np.array(points)).astype(np.int32)
            cv2.polylines(mask, [pts], False, 1, int(rng.integers(2, 4)))
        else:
            centre = tuple(int(v) for v in rng.uniform((0, 0), (width, height)))
            axes = tuple(int(v) for v in rng.integers(3, 9, 2))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask


def sample(rng: np.random.Generator, height: int, width: int, channels: int = 3, clean: bool = False):
    """One uint8 image (HxWxC) and its 0/1 mask; `clean` images have no defect."""
    mask = np.zeros((height, width), np.uint8) if clean else draw_defects(rng, (height, width), int(rng.integers(1, 4)))
    image = surface(rng, height, width) - 70 * mask
    image = np.clip(image, 0, 255).astype(np.uint8)
    if channels == 3:
        tint = rng.uniform(0.85, 1.15, 3)
        image = np.clip(image[..., None] * tint, 0, 255).astype(np.uint8)
    else:
        image = image[..., None]
    return image, mask


def write_dataset(out: str | Path, images: int = 40, size: tuple[int, int] = (160, 224), channels: int = 3,
                  clean_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write a folder dataset of `images` samples (70/15/15 split in index.csv); returns `out`."""
    rng = np.random.default_rng(seed)
    samples = (sample(rng, *size, channels=channels, clean=rng.random() < clean_fraction) + ({},) for _ in range(images))
    return save_dataset(out, samples, images)


def write_video(path: str | Path, frames: int = 40, size: tuple[int, int] = (120, 160), defect_frames: set[int] | None = None,
                fps: float = 20.0, seed: int = 0, min_defect_px: int = 60) -> list[bool]:
    """Write an MJPG video; frames in `defect_frames` (default: every third) have defects of at
    least `min_defect_px` pixels in view. Returns, per frame, whether it has one."""
    defect_frames = set(range(1, frames, 3)) if defect_frames is None else defect_frames
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    truth = []
    for i in range(frames):
        image, mask = sample(rng, *size, channels=3, clean=i not in defect_frames)
        while i in defect_frames and mask.sum() < min_defect_px:
            image, mask = sample(rng, *size, channels=3)
        writer.write(np.ascontiguousarray(image[..., ::-1]))
        truth.append(bool(mask.any()))
    writer.release()
    return truth


def small_defects(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A 0/1 mask of one or two small defects: pits of 1-3 px radius or short 1-2 px scratches."""
    height, width = shape
    mask = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        centre = rng.uniform((4, 4), (width - 4, height - 4))
        if rng.random() < 0.5:
            cv2.circle(mask, tuple(int(v) for v in centre), int(rng.integers(1, 4)), 1, -1)
        else:
            end = centre + rng.normal(0, 1, 2) / 1.0 * rng.uniform(6, 14)
            cv2.line(mask, tuple(int(v) for v in centre), tuple(int(v) for v in np.round(end)), 1, int(rng.integers(1, 3)))
    return mask


def write_small_defect_dataset(out: str | Path, images: int = 120, size: tuple[int, int] = (64, 96),
                               clean_fraction: float = 0.75, contrast: float = 35.0, seed: int = 0) -> Path:
    """The hard case of a real line: mostly clean parts, and on the others a pit or a short scratch
    covering 0.05-0.5 % of the image (magnetic_tile's blowholes and cracks), gray, on the same
    noisy unevenly lit texture. Written as a folder dataset (70/15/15 split, `class` column)."""
    rng = np.random.default_rng(seed)

    def samples():
        for _ in range(images):
            clean = rng.random() < clean_fraction
            mask = np.zeros(size, np.uint8) if clean else small_defects(rng, size)
            image = np.clip(surface(rng, *size) - contrast * mask, 0, 255).astype(np.uint8)[..., None]
            yield image, mask, {"class": "free" if clean else "small"}

    return save_dataset(out, samples(), images)
