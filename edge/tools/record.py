"""`station record`: frames from any source into a video file or a folder of PNGs.

    station record --source aravis://Basler-21234567 --frames 300 --out runs/line/images   # PNGs, to label
    station record --source rtsp://cam/stream --frames 600 --fps 30 --out runs/line.avi    # a video (lossless FFV1)

Collects images of the line for labelling (the PNG folder is a folder dataset's images/), and
makes a camera's frames replayable: `station run` on the video at the same rate sees what the
camera sent. The source's settings come from the config's `source:` section, as for `station run`.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from edge.core.config import SourceConfig, load_station_config
from edge.core.errors import BadInput
from edge.sources import open_source

VIDEO_SUFFIXES = (".avi", ".mkv")


def record(source_uri: str, settings: SourceConfig, frames: int, out: Path, fps: float) -> int:
    """Write `frames` frames of the source to `out` (a video by its suffix, else a folder); returns how many."""
    source = open_source(source_uri, settings)
    writer, written = None, 0
    try:
        if out.suffix not in VIDEO_SUFFIXES:
            out.mkdir(parents=True, exist_ok=True)
        while written < frames and (frame := source.read()) is not None:
            if frame.image is None:
                continue  # nothing to keep of a frame the source could not read
            bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
            if out.suffix in VIDEO_SUFFIXES:
                if writer is None:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"FFV1"), fps, bgr.shape[1::-1])
                    if not writer.isOpened():
                        raise BadInput(f"--out {out}: this OpenCV cannot write FFV1 video; give a folder for PNGs")
                writer.write(bgr)
            else:
                cv2.imwrite(str(out / f"{frame.seq:06d}.png"), bgr)
            written += 1
    finally:
        source.close()
        if writer is not None:
            writer.release()
    return written


def run(args) -> int:
    """The `station record` verb."""
    if args.config:
        settings = load_station_config(args.config).source
        uri = args.source or settings.uri
        settings = settings.model_copy(update={"uri": uri})
    elif args.source:
        uri, settings = args.source, SourceConfig(uri=args.source)
    else:
        raise BadInput("record: give --source URI or --config with a source: section")
    written = record(uri, settings, args.frames, Path(args.out), args.fps)
    print(f"recorded {written} frames of {uri} to {args.out}")
    return 0
