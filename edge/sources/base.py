"""What every source hands out and the interface it keeps: Frame, Gap, Source. Settings come from
the config's `source:` section (edge.core.config.SourceConfig)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Frame:
    """One captured image and when it was captured, or why there is no image to judge."""

    seq: int
    t_capture: float  # time.monotonic() seconds
    image: np.ndarray | None  # HxWx3 RGB uint8; None when `error` says why it cannot be judged
    source: str  # the image file of a folder or glob, else the source's name
    error: str | None = None
    frame_id: int | None = None  # the source's own number: index in the file or folder, frames the camera delivered
    camera_ns: int | None = None  # the camera's own timestamp of the frame (GenICam cameras), in its clock's ns


@dataclass
class Gap:
    """A time the source gave no frames, and why."""

    t_start: float
    t_end: float
    reason: str


class Source:
    """The interface: `read()` the next frame or None at the end; `close()`; `gaps`; `live`; `paced`;
    `reconnecting`; `stalled`; `unreadable` (frames handed out with an error instead of an image)."""

    live = False  # a camera or stream: close() wakes a read() waiting for the next frame
    paced = False  # frames come at their own rate whether the station keeps up or not: the newest are judged
    reconnecting = False  # True while an outage is being handled (the source reopens with backoff)
    stalled = False  # True while no frame came for the stall time
    unreadable = 0

    def __init__(self, name: str):
        self.name = name
        self.gaps: list[Gap] = []
        self.next_seq = 0

    def _frame(self, image: np.ndarray | None, t_capture: float | None = None, frame_id: int | None = None,
               source: str | None = None, error: str | None = None, camera_ns: int | None = None) -> Frame:
        frame = Frame(self.next_seq, time.monotonic() if t_capture is None else t_capture, image,
                      self.name if source is None else source, error, frame_id, camera_ns)
        self.next_seq += 1
        return frame

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""


def _to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
