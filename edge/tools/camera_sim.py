"""`station camera-sim`: an IP-camera stand-in serving MJPEG over HTTP, for tests and demos.

    station camera-sim --video runs/demo/line.avi --fps 15 [--port 0]   # or: python -m edge.tools.camera_sim ...
    -> camera stand-in on http://127.0.0.1:PORT/stream.mjpg

Serves the video's frames (looped), or generated ones (a moving bar and the frame number) without
--video, as multipart/x-mixed-replace JPEGs, the format IP cameras serve, at --fps to every
client: like a real camera, one clock produces the frames and a client that connects late sees
the current one. It is its own process so that tests can SIGSTOP it (the TCP connection stays
open, no frames come: a frozen camera), SIGCONT it, or SIGKILL it and start it again on the same
port (a camera that lost power).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from edge.core.errors import BadInput

log = logging.getLogger(__name__)

BOUNDARY = "frame"
STREAM_PATH = "/stream.mjpg"


class FrameClock:
    """The camera's frames: the next one every 1/fps seconds, JPEG-encoded once for all clients."""

    def __init__(self, video: str | None, fps: float, size: tuple[int, int], quality: int = 85):
        self.capture = None
        if video is not None:
            if not Path(video).is_file():
                raise BadInput(f"--video {video}: file not found")
            self.capture = cv2.VideoCapture(video)
            if not self.capture.isOpened() or not self.capture.read()[0]:
                raise BadInput(f"--video {video}: not a video OpenCV can read")
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self.period, self.size, self.quality = 1.0 / fps, size, quality
        self.changed = threading.Condition()
        self.index, self.jpeg = -1, b""
        self.stopping = False

    def _image(self, index: int) -> np.ndarray:
        """The BGR frame number `index`: the video's next (looped), or a generated one."""
        if self.capture is not None:
            ok, image = self.capture.read()
            if not ok:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self.capture.read()
            return image
        w, h = self.size
        image = np.full((h, w, 3), 90, np.uint8)
        x = index * 4 % w
        image[:, x:x + 8] = 230
        cv2.putText(image, str(index), (8, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        return image

    def run(self) -> None:
        """Produce frames at the frame rate until `stop()`."""
        due = time.monotonic()
        while not self.stopping:
            jpeg = cv2.imencode(".jpg", self._image(self.index + 1), [cv2.IMWRITE_JPEG_QUALITY, self.quality])[1]
            with self.changed:
                self.index, self.jpeg = self.index + 1, jpeg.tobytes()
                self.changed.notify_all()
            due = max(due + self.period, time.monotonic())  # after a pause (SIGSTOP), on at the frame rate
            time.sleep(max(due - time.monotonic(), 0))

    def next_after(self, index: int, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The first frame after number `index` (None when stopping or none came within `timeout`)."""
        with self.changed:
            self.changed.wait_for(lambda: self.stopping or self.index > index, timeout)
            return None if self.stopping or self.index <= index else (self.index, self.jpeg)

    def stop(self) -> None:
        """End `run()` and wake the clients waiting for a frame."""
        with self.changed:
            self.stopping = True
            self.changed.notify_all()


class _Handler(BaseHTTPRequestHandler):
    server: CameraServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?")[0] != STREAM_PATH:
            self.send_error(404, f"the stream is {STREAM_PATH}")
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        index = max(self.server.clock.index, 0) - 1  # start with the current frame (or wait for the first)
        try:
            while (frame := self.server.clock.next_after(index)) is not None:
                index, jpeg = frame
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                 .encode() + jpeg + b"\r\n")
                self.wfile.flush()
        except OSError:  # the client went away
            pass


class CameraServer(ThreadingHTTPServer):
    """The HTTP server of the stand-in on 127.0.0.1 (port 0: any free one); `url` is its stream."""

    daemon_threads = True
    allow_reuse_address = True  # restarted on the same port while the old connections linger in TIME_WAIT

    def __init__(self, clock: FrameClock, port: int = 0):
        self.clock = clock
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as exc:
            raise BadInput(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None
        self.url = f"http://127.0.0.1:{self.server_address[1]}{STREAM_PATH}"


def run(args) -> int:
    """The `station camera-sim` verb: serve until SIGTERM, SIGINT or --duration."""
    width, _, height = args.size.partition("x")
    if not (width.isdigit() and height.isdigit()) or args.fps <= 0:
        raise BadInput(f"expected --size WIDTHxHEIGHT and --fps > 0, got {args.size} and {args.fps}")
    clock = FrameClock(args.video, args.fps, (int(width), int(height)))
    server = CameraServer(clock, args.port)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    frames = threading.Thread(target=clock.run, name="frames", daemon=True)
    frames.start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True).start()
    print(f"camera stand-in on {server.url}", flush=True)
    end = time.monotonic() + (args.duration or float("inf"))
    while not stopping.wait(0.2) and time.monotonic() < end:  # a timed wait: a signal can land on any thread
        pass
    clock.stop()
    frames.join()  # out of OpenCV before the interpreter finalizes
    server.shutdown()
    server.server_close()
    print(f"served {clock.index + 1} frames")
    return 0


if __name__ == "__main__":
    from edge.cli import main

    sys.exit(main(["camera-sim", *sys.argv[1:]]))
