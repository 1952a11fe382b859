"""Video sources chosen by the string the user wrote, as jetson-inference's videoSource does.

    source = open_source("line.mp4")       # or "0", "/dev/video0", "rtsp://...", a GStreamer
    while (frame := source.read()) is not None:    #   pipeline ("... ! appsink"), "picamera2",
        frame.seq, frame.t_capture, frame.image    #   "aravis://CAMERA-ID", a folder or a glob of images
    source.close()

Every frame the station takes gets the next sequence number and its monotonic capture time, and
is RGB uint8, or has no image and says in `error` why it cannot be judged (an image file that is
truncated or not an image: the station rejects it, fail-safe). Files and folders are finite and
hand out every frame, unreadable files included. Live sources (cameras, streams) are read by a
thread that keeps only the newest frame, so a slow consumer never gets a stale buffered one; the
frames overwritten before anyone took them are counted in `superseded`. A failed read never
becomes a frame, and no frame for `stall_s` is a stall: the source reopens with backoff, and the
outage, from the last good frame to the next, is recorded in `gaps`. A capture is only ever
released by the thread that reads it, so `close()` never pulls one from under a read in progress.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.sources.base import Frame, Gap, Source
from edge.sources.files import FileSource, FolderSource
from edge.sources.live import LiveSource, has_gstreamer

__all__ = ["FileSource", "FolderSource", "Frame", "Gap", "LiveSource", "Source", "open_source"]

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://")


def open_source(uri: str, settings: SourceConfig | None = None) -> Source:
    """The source the string names: camera index or /dev/videoN, URL, GStreamer pipeline,
    "aravis://" and a GenICam camera's id, "picamera2", a folder or glob of images, or a video file."""
    settings = settings or SourceConfig(uri=str(uri))
    uri = str(uri).strip()
    if uri.isdigit():
        return LiveSource(int(uri), settings)
    if uri.startswith("/dev/"):  # /dev/video0, a udev name (/dev/inspection-camera), /dev/v4l/by-id/...
        return LiveSource(uri, settings, api=cv2.CAP_V4L2)
    if uri.startswith(URL_SCHEMES):
        return LiveSource(uri, settings, api=cv2.CAP_FFMPEG)
    if "!" in uri:
        if not has_gstreamer():
            raise BadInput("source: a GStreamer pipeline needs OpenCV built with GStreamer; pip's opencv wheels "
                           "have none (on Jetson use JetPack's system OpenCV)")
        return LiveSource(uri, settings, api=cv2.CAP_GSTREAMER)
    if uri.startswith("aravis://"):
        from edge.sources.aravis import AravisSource

        return AravisSource(uri[len("aravis://"):], settings)
    if uri == "picamera2":
        from edge.sources.picamera2 import Picamera2Source

        return Picamera2Source(settings)
    if Path(uri).is_dir() or any(c in uri for c in "*?["):
        return FolderSource(uri)
    return FileSource(uri, settings)
