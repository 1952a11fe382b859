"""Verdicts to the plant's MQTT broker, through a spool on disk that survives broker and station restarts.

    publisher = Publisher(config.mqtt, status)          # connects in the background
    publisher.verdict(frame, prob, verdict, record)     # the output thread: a queue put, never a wait
    publisher.close()                                   # spools what is queued, sends what it can

Topics: `PREFIX/verdict`, one message per frame (its results-log record) in mode `verdict`;
`PREFIX/summary`, one a second (counters, the frames and rejects of that second) in mode
`summary`; `PREFIX/status`, retained `online`, and `offline` as the last will. Each verdict or
summary carries `n`, a number that counts up across restarts, so a consumer can tell a gap or a
duplicate.

Delivery, at least once: a message is appended to `spool_dir/spool.jsonl` before it is published,
and the acknowledged offset in `spool_dir/state.json` moves past it only when the broker has it
(the PUBACK of QoS 1). While the broker is away messages wait on disk, and a restarted station
sends what the last one left unacknowledged, oldest first. A crash can send a few twice (same n).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.core.config import MqttConfig
from edge.core.errors import BadInput
from edge.core.state import MqttState, StationState
from edge.inference.decision import Verdict
from edge.sources import Frame

log = logging.getLogger(__name__)

WINDOW = 20  # messages published and not yet acknowledged (paho's own in-flight limit)
COMPACT_BYTES = 1 << 20  # a fully acknowledged spool larger than this is emptied
SAVE_EVERY_S = 0.5  # the acknowledged offset; a crash sends again at most what was acknowledged in this time
SUMMARY_EVERY_S = 1.0


class Spool:
    """Append-only JSON lines and the offset up to which the broker has acknowledged them."""

    def __init__(self, directory: str | Path, max_bytes: int):
        self.dir, self.max_bytes = Path(directory), max_bytes
        self.path, self.state_path = self.dir / "spool.jsonl", self.dir / "state.json"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
            self.file = self.path.open("a+b")
        except OSError as exc:
            raise BadInput(f"mqtt.spool_dir {directory}: {exc.strerror}") from None
        data = self._unacked_tail(state.get("offset", 0))
        self.backlog = data.count(b"\n")
        last = data.rsplit(b"\n", 2)[-2] if self.backlog else b""
        self.next_n = max(state.get("next_n", 0), json.loads(last)["n"] + 1 if last else 0)
        self.read_pos = self.acked
        self.dropped, self.full = 0, False
        self.saved: dict | None = None

    def _unacked_tail(self, offset: int) -> bytes:
        """The lines after `offset`; a last line cut short by a crash is removed."""
        self.file.seek(0, os.SEEK_END)
        size = self.file.tell()
        self.acked = offset if offset <= size else 0  # past the end: emptied before its state was saved
        self.file.seek(self.acked)
        data = self.file.read()
        if data and not data.endswith(b"\n"):
            log.warning("mqtt spool %s: dropped a line cut short", self.path)
            data = data[: data.rfind(b"\n") + 1]
            self.file.truncate(self.acked + len(data))
        self.size = self.acked + len(data)
        return data

    def append(self, doc: dict) -> None:
        """Number the message and append it; past `max_bytes` of backlog it is dropped and counted."""
        if self.size - self.acked > self.max_bytes:
            if not self.full:
                log.warning("mqtt spool %s is full (%d MB unsent): dropping new messages", self.path, self.max_bytes >> 20)
            self.dropped += 1
            self.full = True
            return
        if self.full:
            log.warning("mqtt spool %s has room again; %d messages dropped so far", self.path, self.dropped)
            self.full = False
        line = json.dumps({"n": self.next_n, **doc}, separators=(",", ":")).encode() + b"\n"
        try:
            self.file.write(line)
            self.file.flush()  # on disk (the OS's) before it is published: a crash of the station loses none
        except OSError as exc:
            self._write_failed(exc)
            return
        self.size += len(line)
        self.next_n += 1
        self.backlog += 1

    def _write_failed(self, exc: OSError) -> None:
        """A full disk drops the message (counted); the file is reopened without the bytes it refused."""
        if not self.full:
            log.warning("mqtt spool %s: cannot write (%s): dropping new messages", self.path, exc.strerror or exc)
        self.dropped += 1
        self.full = True
        with contextlib.suppress(OSError):
            self.file.close()  # the failed flush's bytes go with the buffer
        self.file = self.path.open("a+b")
        self.file.truncate(self.size)

    def next_line(self) -> tuple[bytes, int] | None:
        """The next message not yet published and the offset just past it."""
        if self.read_pos >= self.size:
            return None
        self.file.flush()
        self.file.seek(self.read_pos)
        line = self.file.readline()
        self.read_pos += len(line)
        return line.rstrip(b"\n"), self.read_pos

    def ack(self, offset: int) -> None:
        """The broker has every message before `offset`."""
        self.acked = offset
        self.backlog -= 1

    def save(self) -> None:
        """Flush, empty a fully acknowledged spool past COMPACT_BYTES, and write the state."""
        self.file.flush()
        if self.acked == self.size >= COMPACT_BYTES:
            self.file.truncate(0)
            self.acked = self.size = self.read_pos = 0
        state = {"offset": self.acked, "next_n": self.next_n}
        if state != self.saved:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.state_path)
            self.saved = state

    def close(self) -> None:
        self.save()
        self.file.close()


class Publisher:
    """Spools and publishes in a thread of its own; paho's network loop reconnects with backoff."""

    def __init__(self, config: MqttConfig, status: Callable[[], StationState]):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise BadInput("mqtt.host is set but paho-mqtt is not installed: pip install .[mqtt]") from None
        self.config, self.status = config, status
        self.spool = Spool(config.spool_dir, int(config.spool_max_mb * 2**20))
        self.events: queue.SimpleQueue = queue.SimpleQueue()  # ("record", dict), ("ack", mid), ("wake", None)
        self.inflight: deque[tuple[int, int]] = deque()  # (mid, spool offset after it), in publishing order
        self.acks: set[int] = set()
        self.connected = False
        self.close_by: float | None = None
        self.interval, self.interval_start = {"frames": 0, "rejects": []}, time.monotonic()  # summary mode
        self.next_save = time.monotonic()
        prefix = config.topic_prefix.rstrip("/")
        self.topic = f"{prefix}/{config.mode}"
        self.status_topic = f"{prefix}/status"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id or f"station-{socket.gethostname()}")
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self.client.max_inflight_messages_set(WINDOW)
        self.client.reconnect_delay_set(1, 10)
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.on_publish = lambda client, userdata, mid, reason, properties: self.events.put(("ack", mid))
        self.client.connect_async(config.host, config.port, keepalive=10)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._loop, name="mqtt", daemon=True)
        self.thread.start()

    # --- paho's thread ----------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.warning("mqtt: %s:%d refused the connection (%s)", self.config.host, self.config.port, reason)
            return
        log.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
        client.publish(self.status_topic, "online", qos=1, retain=True)
        self.connected = True
        self.events.put(("wake", None))

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if self.connected:
            log.warning("mqtt: lost %s:%d (%s); spooling on disk", self.config.host, self.config.port, reason)
        self.connected = False

    # --- the station's side -----------------------------------------------------------------

    sheddable = False  # every record reaches the broker

    def verdict(self, frame: Frame, prob: np.ndarray | None, verdict: Verdict, record: dict) -> None:
        """Called by the output thread for every recorded verdict; only a queue put."""
        self.events.put(("record", record))

    def state(self) -> MqttState:
        """For the operator page and /metrics."""
        return MqttState(f"{self.config.host}:{self.config.port}", self.topic, self.connected, self.spool.backlog,
                         self.spool.dropped)

    def close(self, timeout: float = 2.0) -> None:
        """Spool everything queued, send what the broker takes within `timeout` s, say offline."""
        self.close_by = time.monotonic() + timeout
        self.events.put(("wake", None))
        self.thread.join()
        if self.connected:
            try:
                self.client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(timeout)
            except RuntimeError:  # the connection went meanwhile: the broker sends the last will instead
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self.spool.close()

    # --- the publisher thread ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            try:
                if self._step():
                    return
            except Exception:  # never let the publisher die: verdicts would pile up in its queue
                log.exception("mqtt: unexpected error")
                time.sleep(1)

    def _step(self) -> bool:
        """Spool what has arrived, count acknowledgements, publish; True once closing is done."""
        events = []
        try:
            events.append(self.events.get(timeout=0.1))
            while True:
                events.append(self.events.get_nowait())
        except queue.Empty:
            pass
        for kind, value in events:
            if kind == "ack" and any(mid == value for mid, _ in self.inflight):  # not the status messages'
                self.acks.add(value)
            elif kind == "record" and self.config.mode == "verdict":
                self.spool.append(value)
            elif kind == "record":
                self.interval["frames"] += 1
                if value["verdict"] == "reject":
                    self.interval["rejects"].append(value["seq"])
        now = time.monotonic()
        closing = self.close_by is not None
        if self.interval["frames"] and (now - self.interval_start >= SUMMARY_EVERY_S or closing):
            self.spool.append(self._summary(now - self.interval_start))
            self.interval, self.interval_start = {"frames": 0, "rejects": []}, now
        while self.inflight and self.inflight[0][0] in self.acks:
            mid, offset = self.inflight.popleft()
            self.acks.discard(mid)
            self.spool.ack(offset)
        self._publish()
        if now >= self.next_save:
            self.spool.save()
            self.next_save = now + SAVE_EVERY_S
        return closing and (not self.connected or not self.spool.backlog or now >= self.close_by)

    def _publish(self) -> None:
        while self.connected and len(self.inflight) < WINDOW and (item := self.spool.next_line()) is not None:
            payload, offset = item
            info = self.client.publish(self.topic, payload, qos=self.config.qos)
            self.inflight.append((info.mid, offset))  # sent again by paho after a reconnect until acknowledged

    def _summary(self, seconds: float) -> dict:
        s = self.status()
        c = s.counters
        return {"time": datetime.datetime.now().astimezone().isoformat(timespec="milliseconds"), "interval_s": round(seconds, 2),
                "interval_frames": self.interval["frames"], "interval_rejects": self.interval["rejects"],
                "frames": c.frames, "rejects": c.rejects, "drops": c.drops, "fps": c.fps,
                "latency_p50_ms": c.latency_p50_ms, "latency_p99_ms": c.latency_p99_ms,
                "gate_connected": s.gate.connected, "inspecting": s.gate.inspecting, "source_outages": s.camera.outages}
