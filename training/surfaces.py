"""Procedural factory surfaces with defects and their exact masks: the demo's data and the default model's.

    python -m training.surfaces --out data/surfaces --images 600          # a folder dataset
    python -m training.surfaces --video line.avi --frames 300 --fps 15    # + line.csv ground truth

Four surfaces the station is for (leather grain, concrete, brushed metal, glazed tile) under
uneven lighting, each with the defects it gets on a line (cracks, scratches, holes, stains,
folds). A defect changes exactly the pixels of its mask and nothing else, so the masks are what
was drawn. Surfaces come as strips: parts of random kinds one after another, as on a belt; a
dataset image is a window of a strip, and the conveyor video shows a strip scrolling by one frame
height per frame (an encoder-triggered camera), with defects placed inside known frames.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

KINDS = ("leather", "concrete", "metal", "tile")
DEFECTS = {  # what each surface gets
    "leather": ("fold", "hole", "stain", "scratch"),
    "concrete": ("crack", "hole", "stain"),
    "metal": ("scratch", "hole", "stain"),
    "tile": ("crack", "hole", "stain", "scratch"),
}
TINTS = {  # RGB multipliers of the gray texture
    "leather": (1.0, 0.72, 0.5), "concrete": (1.0, 1.0, 0.96), "metal": (0.94, 0.98, 1.05), "tile": (1.0, 1.0, 1.0),
}


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian noise smoothed at `sigma` pixels, scaled to unit standard deviation."""
    field = rng.normal(0, 1, shape).astype(np.float32)
    if sigma > 0:
        field = cv2.GaussianBlur(field, (0, 0), sigma)
    return field / (field.std() + 1e-6)


def texture(rng: np.random.Generator, kind: str, height: int, width: int) -> np.ndarray:
    """A clean gray surface of `kind`, float32 around 100-200."""
    shape = (height, width)
    if kind == "leather":  # a network of creases (the zero lines of smooth noise) over fine grain
        creases = np.abs(_noise(rng, shape, 3.0))
        return 135 + 22 * np.minimum(creases, 1.5) + 5 * _noise(rng, shape, 0.8) + 8 * _noise(rng, shape, 12)
    if kind == "concrete":  # aggregate at several scales, pale stones, dark pores
        base = 140 + 10 * _noise(rng, shape, 1.0) + 10 * _noise(rng, shape, 4) + 8 * _noise(rng, shape, 16)
        for _ in range(height * width // 900):
            centre = (int(rng.integers(width)), int(rng.integers(height)))
            axes = (int(rng.integers(2, 6)), int(rng.integers(2, 6)))
            cv2.ellipse(base, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(120, 175)), -1)
        pores = rng.random(shape) < 0.002
        base[cv2.dilate(pores.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0] -= 35
        return base
    if kind == "metal":  # brushing streaks along x, a broad specular band
        streaks = cv2.blur(rng.normal(0, 1, shape).astype(np.float32), (61, 1))
        band = np.exp(-(((np.arange(height) / height) - rng.uniform(0.2, 0.8)) ** 2) / 0.05)[:, None]
        return 150 + 14 * streaks / (streaks.std() + 1e-6) + 40 * band + 3 * _noise(rng, shape, 0.7)
    if kind == "tile":  # a glaze with soft mottling, grout lines on a grid
        base = rng.uniform(165, 205) + 5 * _noise(rng, shape, 10) + 2 * _noise(rng, shape, 0.7)
        pitch, width_px = int(rng.integers(90, 160)), int(rng.integers(3, 6))
        y0, x0 = int(rng.integers(pitch)), int(rng.integers(pitch))
        grout = float(rng.uniform(80, 110))
        for y in range(y0 - pitch, height, pitch):
            base[max(y, 0) : max(y + width_px, 0)] = grout
        for x in range(x0 - pitch, width, pitch):
            base[:, max(x, 0) : max(x + width_px, 0)] = grout
        return base
    raise ValueError(f"unknown surface kind {kind!r} (expected one of {KINDS})")


def lighting(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An uneven illumination field around 1: a gradient and a vignette, up to about +-25 %."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / max(height - 1, 1) - 0.5, xx / max(width - 1, 1) - 0.5
    gradient = rng.uniform(-0.3, 0.3) * xx + rng.uniform(-0.3, 0.3) * yy
    vignette = -rng.uniform(0, 0.35) * (xx**2 + yy**2)
    return 1 + gradient + vignette


def _polyline(rng: np.random.Generator, start: np.ndarray, steps: int, step: float, wiggle: float) -> np.ndarray:
    angle, points = rng.uniform(0, 2 * np.pi), [start]
    for _ in range(steps):
        angle += rng.normal(0, wiggle)
        points.append(points[-1] + step * np.array([np.cos(angle), np.sin(angle)]))
    return np.round(np.array(points)).astype(np.int32)


def defect_mask(rng: np.random.Generator, kind: str, shape: tuple[int, int], centre: np.ndarray) -> np.ndarray:
    """A 0/1 mask of one defect of `kind` around `centre` (x, y)."""
    mask = np.zeros(shape, np.uint8)
    if kind == "crack":
        cv2.polylines(mask, [_polyline(rng, centre, int(rng.integers(6, 14)), rng.uniform(6, 12), 0.5)], False, 1,
                      int(rng.integers(1, 4)))
    elif kind == "scratch":
        cv2.polylines(mask, [_polyline(rng, centre, int(rng.integers(2, 5)), rng.uniform(20, 40), 0.08)], False, 1,
                      int(rng.integers(1, 3)))
    elif kind == "hole":
        axes = tuple(int(v) for v in rng.integers(3, 10, 2))
        cv2.ellipse(mask, tuple(int(v) for v in centre), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == "stain":  # an irregular blob: smooth noise above a level inside a disc
        radius = int(rng.integers(10, 28))
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        disc = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / radius**2
        mask[(1 - disc + 0.35 * _noise(rng, shape, radius / 3)) > 0.4] = 1
    elif kind == "fold":
        cv2.polylines(mask, [_polyline(rng, centre, int(rng.integers(3, 6)), rng.uniform(15, 30), 0.3)], False, 1,
                      int(rng.integers(4, 8)))
    else:
        raise ValueError(f"unknown defect kind {kind!r}")
    return mask


def apply_defect(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, kind: str) -> None:
    """Change the pixels of `mask` in the RGB float image as a defect of `kind` looks (in place)."""
    region = mask.astype(bool)
    if kind in ("crack", "hole"):
        image[region] *= rng.uniform(0.2, 0.5)
    elif kind == "scratch":
        image[region] = image[region] * rng.uniform(1.25, 1.5) + 25 if rng.random() < 0.6 else image[region] * 0.55
    elif kind == "stain":
        tint = np.array(rng.choice([(0.75, 0.5, 0.35), (0.55, 0.55, 0.6), (0.9, 0.8, 0.55)]), np.float32)
        image[region] *= tint * rng.uniform(0.8, 1.0)
    elif kind == "fold":  # a shaded crease: dark band with a bright ridge along it
        shade = cv2.GaussianBlur(rng.normal(0, 1, mask.shape).astype(np.float32), (0, 0), 2)
        image[region] *= (0.55 + 0.5 * (shade[region] > 0.3))[:, None]
    image += rng.normal(0, 3, image.shape).astype(np.float32) * region[..., None]  # the defect's own grain


@dataclass
class Part:
    """One part of a strip: its surface kind and the rows it spans."""

    kind: str
    start: int
    end: int


def _part(rng: np.random.Generator, kind: str, length: int, width: int) -> np.ndarray:
    """One clean RGB float part of `kind`, unevenly lit."""
    gray = texture(rng, kind, length, width) * lighting(rng, length, width)
    return gray[..., None] * np.array(TINTS[kind], np.float32) * rng.uniform(0.9, 1.1, 3)


def strip(rng: np.random.Generator, height: int, width: int, part_length: tuple[int, int] = (160, 480),
          kinds: tuple[str, ...] = KINDS) -> tuple[np.ndarray, list[Part]]:
    """A clean RGB float strip of parts of random kinds along its height, unevenly lit."""
    image, parts, y = np.zeros((height, width, 3), np.float32), [], 0
    while y < height:
        length = min(int(rng.integers(*part_length)), height - y)
        kind = str(rng.choice(kinds))
        image[y : y + length] = _part(rng, kind, length, width)
        parts.append(Part(kind, y, y + length))
        y += length
    return image, parts


def add_defect(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, parts: list[Part],
               rows: tuple[int, int], min_px: int = 40) -> str | None:
    """Draw one defect inside `rows` of the strip, of a kind its part gets; returns the kind (None: none fitted)."""
    view, view_mask = image[rows[0] : rows[1]], mask[rows[0] : rows[1]]
    height, width = view_mask.shape
    for _ in range(50):
        centre = rng.uniform((8, 8), (width - 8, height - 8))
        part = next(p for p in parts if p.start <= rows[0] + centre[1] < p.end)
        kind = str(rng.choice(DEFECTS[part.kind]))
        drawn = defect_mask(rng, kind, view_mask.shape, centre)
        if drawn.sum() >= min_px:
            apply_defect(rng, view, drawn, kind)
            view_mask |= drawn
            return kind
    return None


def to_uint8(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The sensor: a little noise, then 8-bit RGB."""
    return np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)


def save_dataset(out: str | Path, samples: Iterable[tuple[np.ndarray, np.ndarray, dict[str, str]]], count: int) -> Path:
    """Write `count` (uint8 RGB or gray image, 0/1 mask, extra index.csv columns) as a folder dataset, 70/15/15."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (image, mask, extra) in enumerate(samples):
        name = f"{i:04d}"
        cv2.imwrite(str(out / "images" / f"{name}.png"), image[..., ::-1] if image.shape[2] == 3 else image)
        cv2.imwrite(str(out / "masks" / f"{name}.png"), mask * 255)
        rows.append({"id": name, "split": "train" if i < 0.7 * count else "val" if i < 0.85 * count else "test", **extra})
    with (out / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def write_dataset(out: str | Path, images: int = 600, size: tuple[int, int] = (240, 320), clean_fraction: float = 0.3,
                  seed: int = 0, part_length: tuple[int, int] = (160, 480)) -> Path:
    """Write a folder dataset of strip windows (index.csv also names their surfaces and defects).

    A window starts anywhere in a strip of parts as long as the conveyor video's, so part
    boundaries are as frequent as in the video's frames.
    """
    rng = np.random.default_rng(seed)
    height, width = size

    def samples():
        for _ in range(images):
            image, parts = strip(rng, height + part_length[1], width, part_length)
            top = int(rng.integers(part_length[1]))
            rows = (top, top + height)
            mask = np.zeros(image.shape[:2], np.uint8)
            kinds = [] if rng.random() < clean_fraction else [
                add_defect(rng, image, mask, parts, rows) for _ in range(int(rng.integers(1, 4)))]
            shown = {p.kind for p in parts if p.start < rows[1] and p.end > rows[0]}
            yield (to_uint8(image[top : top + height], rng), mask[top : top + height],
                   {"surfaces": " ".join(sorted(shown)), "defects": " ".join(k for k in kinds if k)})

    return save_dataset(out, samples(), images)


def write_conveyor(path: str | Path, frames: int = 300, size: tuple[int, int] = (240, 320), fps: float = 15.0,
                   defect_every: float = 6.0, min_defect_px: int = 60, seed: int = 0,
                   part_length: tuple[int, int] = (160, 480)) -> list[dict]:
    """Write an MJPG video of a strip scrolling by one frame per frame and its ground truth CSV beside it.

    About one frame in `defect_every` holds a defect, drawn wholly inside that frame; frame 0 is
    clean. The strip is made a part at a time, so memory stays that of a few frames. Returns the
    truth per frame: frame, defect (0/1), defect_px, surfaces, defects.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    pending, parts, truth = np.zeros((0, width, 3), np.float32), [], []  # rows not yet shown, their parts
    for frame in range(frames):
        while len(pending) < height:
            length, kind = int(rng.integers(*part_length)), str(rng.choice(KINDS))
            parts.append(Part(kind, len(pending), len(pending) + length))
            pending = np.concatenate([pending, _part(rng, kind, length, width)])
        image, mask = pending[:height].copy(), np.zeros(size, np.uint8)
        shown = [p for p in parts if p.start < height]
        kind = add_defect(rng, image, mask, shown, (0, height), min_defect_px) if frame and rng.random() < 1 / defect_every else None
        writer.write(np.ascontiguousarray(to_uint8(image, rng)[..., ::-1]))
        pixels = int(mask.sum())
        truth.append({"frame": frame, "defect": int(pixels >= min_defect_px), "defect_px": pixels,
                      "surfaces": " ".join(sorted({p.kind for p in shown})), "defects": kind or ""})
        pending = pending[height:]
        parts = [Part(p.kind, p.start - height, p.end - height) for p in parts if p.end > height]
    writer.release()
    with path.with_suffix(".csv").open("w", newline="") as f:
        out = csv.DictWriter(f, list(truth[0]))
        out.writeheader()
        out.writerows(truth)
    return truth


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=None, help="folder dataset to write")
    p.add_argument("--images", type=int, default=600, help="dataset images")
    p.add_argument("--clean-fraction", type=float, default=0.3, help="share of dataset images without a defect")
    p.add_argument("--video", default=None, help="conveyor video to write (MJPG .avi), ground truth beside it as .csv")
    p.add_argument("--frames", type=int, default=300, help="video frames")
    p.add_argument("--fps", type=float, default=15.0, help="video frame rate")
    p.add_argument("--height", type=int, default=240, help="image and frame height")
    p.add_argument("--width", type=int, default=320, help="image and frame width")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    a = p.parse_args()
    if not (a.out or a.video):
        p.error("give --out, --video or both")
    if a.out:
        print(f"wrote {write_dataset(a.out, a.images, (a.height, a.width), a.clean_fraction, a.seed)} ({a.images} images)")
    if a.video:
        truth = write_conveyor(a.video, a.frames, (a.height, a.width), a.fps, seed=a.seed + 1)
        print(f"wrote {a.video} ({a.frames} frames, {sum(t['defect'] for t in truth)} with a defect) and its .csv")


if __name__ == "__main__":
    main()
