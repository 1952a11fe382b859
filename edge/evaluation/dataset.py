"""The folder dataset: DIR/images/<id>.<ext>, DIR/masks/<id>.png, optional DIR/index.csv.

    samples = list_samples("data/crackforest", split="test")
    pairs, skipped = read_pairs(samples, channels=3)      # [(id, image HxWxC uint8, mask HxW uint8 0/1)]

A LabelMe JSON beside an image (polygons, rectangles, circles) stands in for its mask. Without
index.csv the split is made deterministically from the ids (70/15/15). Bad files raise BadInput
naming the file, or with `skip_bad=True` are returned in `skipped` as (file, reason).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.errors import BadInput
from edge.core.images import list_images, read_image_file

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"valid": "val", "validation": "val"}  # as some public datasets (DeepCrack) name it


@dataclass(frozen=True)
class Sample:
    """One image and where its label lives (a mask PNG or a LabelMe JSON)."""

    id: str
    image: Path
    label: Path | None
    split: str


def _hash_split(sample_id: str) -> str:
    bucket = int(hashlib.md5(sample_id.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 70 else "val" if bucket < 85 else "test"


def _read_index(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "id" not in reader.fieldnames or "split" not in reader.fieldnames:
            raise BadInput(f"{path}: expected columns 'id' and 'split', got {reader.fieldnames}")
        index = {row["id"]: SPLIT_ALIASES.get(row["split"], row["split"]) for row in reader}
    bad = sorted({s for s in index.values() if s not in SPLITS})
    if bad:
        raise BadInput(f"{path}: unknown split value(s) {bad}; expected one of {list(SPLITS)}")
    return index


def list_samples(root: str | Path, split: str | None = None) -> list[Sample]:
    """The samples of a folder dataset, sorted by id, optionally of one split."""
    root = Path(root)
    images_dir = root / "images"
    if not root.is_dir():
        raise BadInput(f"{root}: dataset folder not found")
    if not images_dir.is_dir():
        raise BadInput(f"{images_dir}: folder not found (a dataset needs images/ and masks/)")
    images = list_images(images_dir)
    index_path = root / "index.csv"
    index = _read_index(index_path) if index_path.is_file() else None
    samples = []
    for image in images:
        sample_id = image.stem
        if index is not None and sample_id not in index:
            log.warning("%s: not in %s, left out", image, index_path)
            continue
        mask, labelme = root / "masks" / f"{sample_id}.png", image.with_suffix(".json")
        label = mask if mask.is_file() else labelme if labelme.is_file() else None
        sample_split = index[sample_id] if index is not None else _hash_split(sample_id)
        samples.append(Sample(sample_id, image, label, sample_split))
    if split is not None:
        if split not in SPLITS:
            raise BadInput(f"--split: expected one of {list(SPLITS)}, got {split!r}")
        samples = [s for s in samples if s.split == split]
        if not samples:
            raise BadInput(f"{root}: no images in split {split!r}")
    return samples


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """An image as uint8 HxWxC, C = 1 (gray) or 3 (RGB); BadInput if unreadable or truncated."""
    image, error = read_image_file(path, cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR)
    if image is None:
        raise BadInput(f"{path}: unreadable image ({error})")
    return image[..., None] if channels == 1 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_channels(path: str | Path) -> int:
    """1 when the file is grayscale (or a colour file with equal channels), else 3."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadInput(f"{path}: unreadable image (corrupt or not an image)")
    if image.ndim == 2:
        return 1
    b, g, r = image[..., 0], image[..., 1], image[..., 2]
    return 1 if np.array_equal(b, g) and np.array_equal(g, r) else 3


def rasterize_labelme(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A LabelMe JSON's polygons, rectangles and circles drawn into a 0/1 mask of `shape`."""
    try:
        shapes = json.loads(Path(path).read_text())["shapes"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a LabelMe file ({exc})") from None
    mask = np.zeros(shape, np.uint8)
    for item in shapes:
        kind = item.get("shape_type") or "polygon"
        pts = np.round(np.asarray(item["points"], np.float64)).astype(np.int32)
        if kind == "polygon":
            cv2.fillPoly(mask, [pts], 1)
        elif kind == "rectangle":
            (x0, y0), (x1, y1) = pts[0], pts[1]
            cv2.rectangle(mask, (min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1)), 1, -1)
        elif kind == "circle":
            centre, edge = np.asarray(item["points"], np.float64)
            radius = int(round(float(np.hypot(*(edge - centre)))))
            cv2.circle(mask, tuple(int(round(v)) for v in centre), radius, 1, -1)
        else:
            log.warning("%s: shape type %r ignored (polygon, rectangle and circle are read)", path, kind)
    return mask


def read_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    """The sample's mask as uint8 0/1 of `shape`; BadInput when missing, mis-sized or not binary."""
    if sample.label is None:
        raise BadInput(f"{sample.image}: no mask (expected masks/{sample.id}.png or {sample.image.with_suffix('.json').name})")
    if sample.label.suffix == ".json":
        return rasterize_labelme(sample.label, shape)
    mask = cv2.imread(str(sample.label), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise BadInput(f"{sample.label}: unreadable mask")
    if mask.ndim == 3:
        if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, mask.shape[2])):
            raise BadInput(f"{sample.label}: colour mask; expected one channel, 0 = background, >0 = defect")
        mask = mask[..., 0]
    if mask.shape != shape:
        raise BadInput(f"{sample.label}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {shape[1]}x{shape[0]}")
    values = np.unique(mask)
    if len(values[values > 0]) > 1:
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise BadInput(f"{sample.label}: mask is not binary (values {shown}); expected 0 and one defect value")
    return (mask > 0).astype(np.uint8)


def read_pairs(
    samples: list[Sample], channels: int, skip_bad: bool = False
) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[tuple[str, str]]]:
    """Read every (image, mask) pair; bad pairs raise, or are skipped and listed with `skip_bad`."""
    pairs, skipped = [], []
    for sample in samples:
        try:
            image = read_image(sample.image, channels)
            pairs.append((sample.id, image, read_mask(sample, image.shape[:2])))
        except BadInput as exc:
            if not skip_bad:
                raise BadInput(f"{exc} (use --skip-bad to leave bad pairs out)") from None
            skipped.append((str(sample.image), str(exc)))
            log.warning("skipped: %s", exc)
    if not pairs:
        raise BadInput("no usable image/mask pairs" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return pairs, skipped


def fingerprint(samples: list[Sample]) -> str:
    """A short SHA-256 of the samples' ids, splits and file bytes: the card's training-data hash."""
    digest = hashlib.sha256()
    for sample in sorted(samples, key=lambda s: s.id):
        digest.update(f"{sample.id}:{sample.split}".encode())
        for path in (sample.image, sample.label):
            if path is not None:
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
