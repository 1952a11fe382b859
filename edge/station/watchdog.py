"""systemd supervision: the sd_notify protocol over $NOTIFY_SOCKET, and when to feed the watchdog.

    notifier = Notifier.from_environment()           # a no-op unless systemd started us (Type=notify)
    notifier.send("READY=1")                         # model and source are open
    status = supervise(notifier, source, show, 1.0)  # the pipeline's status callback: STATUS=, WATCHDOG=1
    notifier.send("STOPPING=1")

The watchdog (WatchdogSec= in the unit, $WATCHDOG_USEC here) is fed at half its period, and only
while the pipeline makes progress: frames judged on a model result, or a source outage being
handled. A hung capture, inference or output stage stops the feeding, and systemd restarts the
service.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable

from edge.sources import Source
from edge.station.pipeline import Stats

log = logging.getLogger(__name__)


class Notifier:
    """Datagrams to systemd's notification socket; sending does nothing without one."""

    def __init__(self, address: str | None, watchdog_usec: int = 0):
        if address and not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET %s: only unix socket paths and @abstract names are supported", address)
            address = None
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self.watchdog_s = watchdog_usec / 1e6 if address else 0.0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if address else None
        if self.sock is not None:
            self.sock.settimeout(1.0)  # a full receive queue must not hold the main thread for long
        self.failed = False

    @classmethod
    def from_environment(cls) -> Notifier:
        """$NOTIFY_SOCKET, and $WATCHDOG_USEC unless $WATCHDOG_PID names another process."""
        env = os.environ
        usec = env.get("WATCHDOG_USEC", "")
        mine = env.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid())
        return cls(env.get("NOTIFY_SOCKET"), int(usec) if usec.isdigit() and mine else 0)

    def send(self, *fields: str) -> None:
        """One notification of `KEY=value` fields; a failure (or 1 s of full queue) is logged once, never raised."""
        if self.sock is None:
            return
        try:
            self.sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self.failed:
                log.warning("systemd notification to %s failed: %s", self.address.lstrip("\0"), exc)
            self.failed = True


class WatchdogRule:
    """Whether to feed the watchdog now: at most once per `period_s`, and only when frames were judged
    on a model result (judged minus dropped went past its best) or the source was handling an
    outage within the last `period_s`."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self.best = 0
        self.progress_at = self.fed_at = -math.inf

    def feed(self, now: float, judged_by_model: int, reconnecting: bool) -> bool:
        if judged_by_model > self.best or reconnecting:
            self.best = max(self.best, judged_by_model)
            self.progress_at = now
        if now - self.progress_at < self.period_s and now - self.fed_at >= self.period_s:
            self.fed_at = now
            return True
        return False


def supervise(notifier: Notifier, source: Source, show: Callable[[Stats], None],
              interval_s: float) -> Callable[[Stats], None]:
    """The pipeline's status callback: `show`, then STATUS=<line> and, by WatchdogRule, WATCHDOG=1."""
    if notifier.sock is None:
        return show
    rule = WatchdogRule(notifier.watchdog_s / 2)
    if notifier.watchdog_s and interval_s > rule.period_s:
        log.warning("output.status_interval_s %.1f s is longer than half of WatchdogSec (%.1f s): "
                    "systemd will kill a working station", interval_s, notifier.watchdog_s)

    def status(stats: Stats) -> None:
        show(stats)
        fields = [f"STATUS={stats.line()}"]
        if notifier.watchdog_s and rule.feed(time.monotonic(), stats.judged - stats.dropped, source.reconnecting):
            fields.append("WATCHDOG=1")
        notifier.send(*fields)
    return status
