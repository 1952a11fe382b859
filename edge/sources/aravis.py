"""GenICam cameras (GigE Vision, USB3 Vision: Basler, Allied Vision, FLIR, Hikrobot...) through Aravis.

    source = AravisSource("Basler-21234567", settings)    # aravis://Basler-21234567; aravis:// = the first camera

Aravis comes from the system (Debian, Raspberry Pi OS, JetPack: `apt install gir1.2-aravis-0.8`)
with PyGObject (`python3-gi`, or `pip install "pygobject<3.50"` in a venv over the system's
gobject-introspection and cairo development files). The config's `source:` keys set the region
(`width`, `height`, centred), `fps`, `exposure` (microseconds), `gain`, `pixel_format` (Mono8, a
Bayer format, RGB8...), and `trigger`: `free` (free run at `fps`), `software` (the station triggers
one frame each time it is ready for one, so no frame waits in a buffer) or `hardware` (a frame per
pulse on `trigger_source`, e.g. Line0 from a photo-eye). Each frame carries the camera's own frame
id and timestamp. A buffer that arrived incomplete (missing packets) is still a part the camera
saw: it is handed out with an error and rejected fail-safe. A camera that stops delivering (no
frame for the stall time, free run and software trigger) or loses its control channel (the nightly
"device removed" of GigE cameras) is closed and opened again with backoff; the outage is a gap.
"""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np

from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.sources.base import Frame, Gap, Source

log = logging.getLogger(__name__)

BUFFERS = 8
TRIGGER_WAIT_S = 1.0  # a software-triggered frame not there by then: triggered again (a lost trigger)
HARDWARE_POLL_S = 0.5  # hardware trigger: how often a wait for the next part looks at `closed`


def aravis_module():
    """Aravis's GObject bindings; BadInput saying what to install when they are missing."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError):
        raise BadInput("source aravis://: needs Aravis 0.8 with PyGObject (apt install gir1.2-aravis-0.8 python3-gi; "
                       'in a venv: pip install "pygobject<3.50"; see docs/wiring.md)') from None
    return Aravis


class AravisSource(Source):
    """One GenICam camera through Aravis (module docstring)."""

    live = paced = True

    def __init__(self, device_id: str | None, settings: SourceConfig):
        self.arv = aravis_module()
        super().__init__(f"aravis://{device_id or ''}")
        self.device_id, self.settings = device_id or None, settings
        self.closed, self.lost = threading.Event(), threading.Event()
        self.incomplete = 0  # buffers that arrived with missing packets, handed out as fail-safe frames
        self.reading, self.camera = False, None
        self.last_frame = time.monotonic()
        try:
            self._open()
        except Exception as exc:  # noqa: BLE001 (GLib.Error and the camera's own refusals)
            raise BadInput(f"source {self.name}: {self._describe(exc)}") from None

    def _describe(self, exc: Exception) -> str:
        message = getattr(exc, "message", None) or str(exc)
        if "not found" in message.lower() or "no device" in message.lower():
            self.arv.update_device_list()
            seen = [self.arv.get_device_id(i) for i in range(self.arv.get_n_devices())]
            return f"camera not found (cameras seen: {', '.join(seen) or 'none'})"
        return message

    def _open(self) -> None:
        arv, s = self.arv, self.settings
        self.camera = arv.Camera.new(self.device_id)
        device = self.camera.get_device()
        if isinstance(device, arv.GvDevice):  # the packet socket drops frames on loopback and some NICs
            device.set_stream_options(arv.GvStreamOption.PACKET_SOCKET_DISABLED)
        device.connect("control-lost", lambda *_: self.lost.set())
        if s.pixel_format:
            self.camera.set_pixel_format_from_string(s.pixel_format)
        if s.width or s.height:  # a region of that size, centred on the sensor
            full_w, full_h = self.camera.get_sensor_size()
            w, h = s.width or full_w, s.height or full_h
            self.camera.set_region(max((full_w - w) // 2, 0), max((full_h - h) // 2, 0), w, h)
        if s.exposure is not None:
            self.camera.set_exposure_time(s.exposure)
        if s.gain is not None:
            self.camera.set_gain(s.gain)
        if s.trigger == "free":
            self.camera.clear_triggers()
            if s.fps:
                self.camera.set_frame_rate(s.fps)
        else:
            self.camera.set_trigger("Software" if s.trigger == "software" else s.trigger_source)
        self.stream = self.camera.create_stream(None, None)
        size = self.camera.get_payload()
        for _ in range(BUFFERS):
            self.stream.push_buffer(arv.Buffer.new_allocate(size))
        self.lost.clear()
        self.camera.start_acquisition()
        self.pixel_format = self.camera.get_pixel_format_as_string()

    def _stall_s(self) -> float:
        s = self.settings
        return s.stall_s or max(2.0, 5 / s.fps if s.fps else 2.0)

    def read(self) -> Frame | None:
        self.reading = True
        try:
            return self._read()
        finally:
            self.reading = False
            if self.closed.is_set() and self.camera is not None:
                self._release()

    def _read(self) -> Frame | None:
        while not self.closed.is_set():
            if self.lost.is_set():
                self._reopen("the camera's control channel was lost")
                continue
            if self.settings.trigger == "software":
                self.camera.software_trigger()
            wait_s = {"software": TRIGGER_WAIT_S, "hardware": HARDWARE_POLL_S}.get(self.settings.trigger, self._stall_s())
            buffer = self.stream.timeout_pop_buffer(int(wait_s * 1e6))
            t_capture = time.monotonic()
            if buffer is None:
                if self.settings.trigger == "hardware":
                    continue  # no part yet: no frame is owed
                if t_capture - self.last_frame >= self._stall_s():
                    self._reopen(f"no frame for {t_capture - self.last_frame:.1f} s")
                continue
            try:
                frame = self._to_frame(buffer, t_capture)
            finally:
                self.stream.push_buffer(buffer)
            self.last_frame = t_capture
            return frame
        return None

    def _to_frame(self, buffer, t_capture: float) -> Frame:
        """The buffer as a Frame: RGB uint8, or an error when it arrived incomplete."""
        frame_id, camera_ns = int(buffer.get_frame_id()), int(buffer.get_timestamp())
        if buffer.get_status() != self.arv.BufferStatus.SUCCESS:
            self.incomplete += 1
            return self._frame(None, t_capture, frame_id, error=f"incomplete frame from the camera ({buffer.get_status().value_nick})",
                               camera_ns=camera_ns)
        w, h = buffer.get_image_width(), buffer.get_image_height()
        data = np.frombuffer(buffer.get_image_data(), np.uint8)
        fmt = self.pixel_format
        if fmt == "Mono8":
            image = cv2.cvtColor(data[: w * h].reshape(h, w), cv2.COLOR_GRAY2RGB)
        elif fmt in ("RGB8", "RGB8Packed"):
            image = data[: w * h * 3].reshape(h, w, 3).copy()
        elif fmt.startswith("Bayer") and fmt.endswith("8"):
            code = {"BayerRG8": cv2.COLOR_BayerRG2RGB, "BayerGR8": cv2.COLOR_BayerGR2RGB,
                    "BayerGB8": cv2.COLOR_BayerGB2RGB, "BayerBG8": cv2.COLOR_BayerBG2RGB}[fmt]
            image = cv2.cvtColor(data[: w * h].reshape(h, w), code)
        else:
            return self._frame(None, t_capture, frame_id, error=f"pixel format {fmt} is not read (use Mono8, RGB8 or Bayer*8)",
                               camera_ns=camera_ns)
        return self._frame(image, t_capture, frame_id, camera_ns=camera_ns)

    def _reopen(self, why: str) -> None:
        started, delay = self.last_frame, self.settings.reconnect_initial_s
        log.warning("source %s: %s; reopening", self.name, why)
        self.reconnecting = self.stalled = True
        self._release()
        while not self.closed.wait(delay):
            try:
                self._open()
                break
            except Exception as exc:  # noqa: BLE001
                log.warning("source %s: reopening failed (%s); again in %.1f s", self.name, self._describe(exc), delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)
        self.reconnecting = self.stalled = False
        self.last_frame = time.monotonic()
        self.gaps.append(Gap(started, self.last_frame, f"{why}; reopened"))

    def _release(self) -> None:
        try:
            self.camera.stop_acquisition()
        except Exception:  # noqa: BLE001 (a camera that is gone refuses)
            pass
        self.stream = self.camera = None

    def close(self) -> None:
        """Stop; a read in progress returns None within its wait and releases the camera itself."""
        self.closed.set()
        if not self.reading and self.camera is not None:
            self._release()
