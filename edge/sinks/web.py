"""The operator page, /metrics for Prometheus and /healthz, served by the daemon itself.

    page = OperatorPage(config.http, status, threshold=0.5)   # binds and serves in a daemon thread
    page.verdict(frame, prob, verdict, record)                # the output thread, per verdict
    page.close()

Read-only: GET only, nothing changes the configuration or touches the gate. Endpoints: `/` (the
page, edge/sinks/static/index.html), `/api/state` (counters, gate, camera, last rejects as JSON),
`/live.jpg` (the newest frame with its defect overlay), `/reject/<seq>.jpg` (thumbnails),
`/metrics` and `/healthz` (200, or 503 with the reasons). With `http.token` set every request,
these included, needs `?token=` or `Authorization: Bearer`; it is checked before anything is done
for the request, and a 401 closes the connection.

Hostile or broken clients cost the station a bounded number of file descriptors and threads: at
most `http.max_clients` connections are served at once (one more is answered 503 and closed at
once, without a thread); a request's line and headers must arrive within `http.client_timeout_s`
of the connection or of the previous response (idle keep-alive included), however slowly they
trickle in, and each send of a response must progress within it. A failed accept() (EMFILE: the
process is out of descriptors) is retried after a pause, and an exception in a handler ends that
connection only.

The inference and output threads never wait for it: a verdict only leaves references here. The
live JPEG is encoded in a request's thread, only when a client asks and at most `live_fps` times
a second however many are watching; reject thumbnails are made by the server's own thread, once a
second, of the last `rejects_shown` rejects at most.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import re
import resource
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edge.core.config import HttpConfig
from edge.core.errors import BadInput
from edge.core.state import StationState
from edge.inference.decision import Verdict
from edge.sinks.results import overlay
from edge.sources import Frame

log = logging.getLogger(__name__)

THUMB_WIDTH = 240
RENDER_EVERY_S = 1.0  # new rejects become thumbnails at most this often (a reject storm costs 12 renders a second)
JPEG_QUALITY = [cv2.IMWRITE_JPEG_QUALITY, 80]
LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
ACCEPT_RETRY_S = 0.1  # pause after a failed accept(): socketserver would retry at once, spinning while descriptors are out
_BUSY_BODY = b'{"error": "too many clients"}'
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Retry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


def _jpeg(image_bgr: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image_bgr, JPEG_QUALITY)[1].tobytes()


class LiveView:
    """The newest judged frame and the last rejects; rendered to JPEG only off the pipeline's threads."""

    def __init__(self, threshold: float, live_fps: float, live_width: int, rejects_shown: int,
                 shedding: Callable[[], bool] = lambda: False):
        self.threshold, self.period, self.width, self.shedding = threshold, 1.0 / live_fps, live_width, shedding
        self.latest: tuple[Frame, np.ndarray | None, list, str] | None = None  # newest frame with an image, defects, verdict
        self.shown = rejects_shown
        self.unrendered: deque = deque(maxlen=rejects_shown)  # (frame, prob, verdict, record) of new rejects
        self.rejects: deque[dict] = deque(maxlen=2 * rejects_shown)  # rendered, oldest first; kept longer than
        # shown, so a page that has just listed a reject can still fetch its thumbnail
        self.lock = threading.Lock()
        self.jpeg: bytes | None = None
        self.jpeg_seq, self.jpeg_at, self.jpeg_verdict = -1, 0.0, ""

    def add(self, frame: Frame, prob: np.ndarray | None, verdict: Verdict, record: dict) -> None:
        """Keep references only: the output thread must not wait for any rendering. A frame without
        an image (unreadable) is listed as a reject but has no picture."""
        if frame.image is not None:
            self.latest = (frame, prob, verdict.defects, record["verdict"])
        if record["verdict"] != "accept":
            self.unrendered.append((frame, prob, verdict, record))

    def _render(self, frame: Frame, prob: np.ndarray | None, defects: list, width: int) -> bytes | None:
        if frame.image is None:
            return None
        mask = prob >= self.threshold if prob is not None else np.zeros(frame.image.shape[:2], bool)
        scale = width / frame.image.shape[1]
        return _jpeg(overlay(frame.image, mask, defects, scale if scale < 0.75 else 1.0))  # else not worth a resample

    def live_jpeg(self) -> tuple[dict[str, str], bytes] | None:
        """(headers X-Seq and X-Verdict, JPEG) of the newest frame; re-encoded at most once per 1/live_fps s,
        and not while the station sheds work (the last one is served again)."""
        with self.lock:
            latest = self.latest
            if latest is None:
                return None
            now = time.monotonic()
            frame, prob, defects, verdict = latest
            stale_ok = self.jpeg is not None and self.shedding()
            if frame.seq != self.jpeg_seq and now - self.jpeg_at >= self.period and not stale_ok:
                self.jpeg, self.jpeg_seq, self.jpeg_at = self._render(frame, prob, defects, self.width), frame.seq, now
                self.jpeg_verdict = verdict
            return {"X-Seq": str(self.jpeg_seq), "X-Verdict": self.jpeg_verdict}, self.jpeg

    def render_rejects(self) -> None:
        """Turn the rejects recorded since the last call into thumbnails (the server thread calls it), unless
        the station sheds work: then they wait (the oldest dropped past `rejects_shown`)."""
        while self.unrendered and not self.shedding():
            frame, prob, verdict, record = self.unrendered.popleft()
            self.rejects.append({"seq": verdict.seq, "time": record["time"], "reason": record["reason"],
                                 "defects": record["defects"],
                                 "jpeg": self._render(frame, prob, verdict.defects, THUMB_WIDTH)})

    def last_rejects(self) -> list[dict]:
        """The newest `rejects_shown` rejects, newest first, without their JPEGs."""
        return [{k: v for k, v in r.items() if k != "jpeg"} for r in list(self.rejects)[::-1][: self.shown]]

    def reject_jpeg(self, seq: int) -> bytes | None:
        return next((r["jpeg"] for r in list(self.rejects) if r["seq"] == seq), None)  # list(): one atomic copy


class StationCollector:
    """Prometheus metrics read from the station's status at scrape time: no cost per frame."""

    def __init__(self, status: Callable[[], StationState]):
        self.status = status

    def collect(self):
        s = self.status()
        c, gate, camera, results = s.counters, s.gate, s.camera, s.disk.results_log
        for name, value, doc in (("frames", c.frames, "frames judged"), ("frames_captured", c.captured, "frames taken from the source"),
                                 ("rejects", c.rejects, "frames rejected (or the line stopped), fail-safe ones included"),
                                 ("drops", c.drops, "frames dropped unjudged (rejected fail-safe)"),
                                 ("failsafe", c.failsafe, "frames without a verdict by their deadline (handled fail-safe)"),
                                 ("unreadable", c.unreadable, "frames whose image could not be read (rejected fail-safe)"),
                                 ("source_outages", camera.outages, "times the source stopped giving frames"),
                                 ("source_outage_seconds", camera.outage_s, "time without frames"),
                                 ("results_lost", results.lost, "records dropped with the memory buffer full")):
            yield CounterMetricFamily(f"station_{name}", doc, value=value)
        shed = CounterMetricFamily("station_shed", "frames an optional output skipped while the station was behind",
                                   labels=["output"])
        for output, count in s.shed.items():
            shed.add_metric([output], count)
        yield shed
        rejects = CounterMetricFamily("station_gate_rejects", "rejects handled by the gate, by how they ended", labels=["status"])
        for status, count in gate.rejects.items():
            rejects.add_metric([status], count)
        yield rejects
        for name, value, doc in (("fps", c.fps, "frames judged per second since the start"),
                                 ("gate_connected", gate.connected, "1 while the gate's port is open"),
                                 ("gate_pending_rejects", gate.pending, "rejects waiting for their fire time"),
                                 ("inspecting", gate.inspecting, "1 while frames are judged on time (the PLC heartbeat runs)"),
                                 ("camera_stalled", camera.stalled, "1 while the camera gives no frames"),
                                 ("results_log_ok", results.ok, "1 while records reach the disk"),
                                 ("results_buffered", results.buffered, "records waiting in memory for the disk"),
                                 ("shedding", s.shedding, "1 while the station is behind and skips its optional outputs")):
            yield GaugeMetricFamily(f"station_{name}", doc, value=float(value))
        if camera.last_frame_age_s is not None:
            yield GaugeMetricFamily("station_last_frame_age_seconds", "time since the last verdict", value=camera.last_frame_age_s)
        if s.mqtt is not None:
            yield GaugeMetricFamily("station_mqtt_connected", "1 while the MQTT broker is connected", value=int(s.mqtt.connected))
            yield GaugeMetricFamily("station_mqtt_backlog", "messages spooled on disk, not yet acknowledged", value=s.mqtt.backlog)
            yield CounterMetricFamily("station_mqtt_dropped", "messages dropped with the spool full", value=s.mqtt.dropped)


def health(status: StationState, max_age_s: float) -> list[str]:
    """Why the station is not healthy (empty: healthy): frames judged on time (the heartbeat runs),
    the camera delivering, the gate connected, the results log written."""
    reasons = []
    camera, gate, results = status.camera, status.gate, status.disk.results_log
    age = camera.last_frame_age_s
    if age is None:
        reasons.append("no frame judged yet")
    elif age > max_age_s:
        reasons.append(f"last frame judged {age:.1f} s ago (limit {max_age_s:g} s)")
    if camera.stalled:
        reasons.append(f"camera {camera.source} stalled: no frame for {age} s")
    if age is not None and not gate.inspecting:
        reasons.append(f"not inspecting on time (last frame judged on time {gate.last_on_time_s} s ago): "
                       "heartbeat to the PLC stopped")
    if not gate.connected:
        reasons.append(f"gate not connected ({gate.port or gate.driver})")
    if not results.ok:
        reasons.append(f"results log not written ({results.error}): {results.buffered} records wait in memory")
    return reasons


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of connections waits in the kernel (no descriptor of ours) to be served or refused

    def __init__(self, host: str, port: int, page: OperatorPage):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.page, self.next_render = page, 0.0
        self.slots = threading.BoundedSemaphore(page.config.max_clients)
        self.accept_failing = False
        super().__init__((host, port), _Handler)

    def get_request(self) -> tuple[socket.socket, tuple]:
        try:
            accepted = super().get_request()
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS; socketserver drops the error and selects again
            if not self.accept_failing:
                log.warning("http: cannot accept connections (%s); retrying every %g s", exc.strerror, ACCEPT_RETRY_S)
            self.accept_failing = True
            time.sleep(ACCEPT_RETRY_S)
            raise
        self.accept_failing = False
        return accepted

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        """A thread for the connection while fewer than max_clients are served; else a 503 and close, no thread."""
        if not self.slots.acquire(blocking=False):
            request.setblocking(False)  # never wait for this client
            with contextlib.suppress(OSError):
                request.send(BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: the slot is free again
            self.slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:
        try:
            super().process_request_thread(request, client_address)  # closes the connection
        finally:
            self.slots.release()

    def handle_error(self, request: socket.socket, client_address: tuple) -> None:
        """The handler's exception ends its connection only: a client gone or too slow is routine."""
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("http: %s: %s", client_address[0], sys.exc_info()[1])
        else:
            log.exception("http: request from %s failed", client_address[0])

    def service_actions(self) -> None:
        super().service_actions()
        now = time.monotonic()
        if now >= self.next_render:
            self.next_render = now + RENDER_EVERY_S
            self.page.view.render_rejects()


class _RequestReader(socket.SocketIO):
    """A connection's reads, each given only what is left until `deadline` (time.monotonic())."""

    deadline = 0.0

    def readinto(self, buffer) -> int | None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not complete in time")
        self._sock.settimeout(left)
        return super().readinto(buffer)


REJECT_PATH = re.compile(r"/reject/(\d+)\.jpg")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "station"
    protocol_version = "HTTP/1.1"  # keep-alive: a browser polling the page reuses its connection and thread

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        self.timeout = self.server.page.config.client_timeout_s
        super().setup()
        self.rfile.close()  # replaced by one whose reads keep the request's deadline
        self.reader = _RequestReader(self.connection, "rb")
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        self.reader.deadline = time.monotonic() + self.timeout  # for the request line and headers, at any pace
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # has read the headers
        self.connection.settimeout(self.timeout)  # the response: each send must progress within the timeout
        return parsed

    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, doc: dict) -> None:
        self._send(code, json.dumps(doc).encode(), "application/json")

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        token = self.server.page.config.token
        if token is None:
            return True
        given = query.get("token", [""])[0]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth.removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        try:
            url = urlsplit(self.path)
        except ValueError:  # e.g. "http://[": not worth a traceback
            return self._json(400, {"error": "malformed path"})
        if not self._authorized(parse_qs(url.query)):
            return self._send(401, b'{"error": "token required"}', "application/json",
                              {"WWW-Authenticate": 'Bearer realm="station"', "Connection": "close"})
        page, path = self.server.page, url.path
        if path in ("/", "/index.html"):
            return self._send(200, page.html, "text/html; charset=utf-8")
        if path == "/api/state":
            return self._json(200, page.state())
        if path == "/live.jpg":
            live = page.view.live_jpeg()
            if live is None:
                return self._json(404, {"error": "no frame judged yet"})
            return self._send(200, live[1], "image/jpeg", live[0])
        if match := REJECT_PATH.fullmatch(path):
            jpeg = page.view.reject_jpeg(int(match.group(1)))
            if jpeg is None:
                return self._json(404, {"error": "no such reject among the last ones"})
            return self._send(200, jpeg, "image/jpeg", {"Cache-Control": "max-age=3600"})
        if path == "/metrics":
            return self._send(200, generate_latest(page.registry), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            status = page.status()
            reasons = health(status, page.config.healthy_frame_age_s)
            return self._json(503 if reasons else 200, {"ok": not reasons, "reasons": reasons,
                                                        "last_frame_age_s": status.camera.last_frame_age_s,
                                                        "gate_connected": status.gate.connected})
        self._json(404, {"error": f"no such page: {path}"})

    do_HEAD = do_GET


class OperatorPage:
    """The web side of the daemon: a Sink of recorded frames plus an HTTP server in a daemon thread."""

    sheddable = False  # its verdict keeps references only; its rendering sheds itself (LiveView)

    def __init__(self, config: HttpConfig, status: Callable[[], StationState], threshold: float,
                 shedding: Callable[[], bool] = lambda: False):
        self.config, self.status = config, status
        self.view = LiveView(threshold, config.live_fps, config.live_width, config.rejects_shown, shedding)
        self.html = (files("edge.sinks") / "static" / "index.html").read_bytes()
        self.registry = CollectorRegistry()
        self.registry.register(StationCollector(status))
        latency = Histogram("station_latency_seconds", "capture-to-verdict and inference time per frame", ["stage"],
                            buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.latency_total, self.latency_infer = latency.labels("capture_to_verdict"), latency.labels("inference")
        descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if descriptors != resource.RLIM_INFINITY and config.max_clients > descriptors // 2:
            log.warning("http.max_clients %d is over half the %d file descriptors this process may open (ulimit -n): "
                        "a flood of clients could leave the station none", config.max_clients, descriptors)
        try:
            self.server = _Server(config.host, config.port, self)
        except OSError as exc:
            raise BadInput(f"http: cannot listen on {config.host}:{config.port} ({exc.strerror})") from None
        host, port = self.server.server_address[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.25},
                                       name="http", daemon=True)
        self.thread.start()
        log.info("operator page on %s", self.url)

    def verdict(self, frame: Frame, prob: np.ndarray | None, verdict: Verdict, record: dict) -> None:
        """Called by the output thread for every recorded verdict: references and two histogram counts."""
        self.view.add(frame, prob, verdict, record)
        latency = record["latency_ms"]
        self.latency_total.observe(latency["capture_to_verdict"] / 1000)
        if "infer_ms" in latency:
            self.latency_infer.observe(latency["infer_ms"] / 1000)

    def state(self) -> dict:
        """What /api/state returns: the station's status, the live frame's seq and the last rejects."""
        status, live = self.status(), self.view.latest
        return {**status.to_json(), "live_seq": None if live is None else live[0].seq,
                "live_verdict": None if live is None else live[3],
                "live_fps": self.config.live_fps, "health": health(status, self.config.healthy_frame_age_s),
                "rejects": self.view.last_rejects()}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
