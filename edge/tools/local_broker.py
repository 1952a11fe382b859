"""A mosquitto broker on a free loopback port, for the MQTT tests, demos and `make bench-web`.

    broker = LocalBroker(Path("runs/broker"))   # writes its config there
    broker.start()                              # returns once it accepts connections
    broker.stop(); broker.start()               # a broker restart: same port, persisted sessions kept

Needs Debian's `mosquitto` package (apt-get install mosquitto). Sessions and queued messages are
persisted in the folder, so a subscriber with a persistent session misses nothing across a restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from edge.core.errors import BadInput


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBroker:
    """mosquitto with a config of its own, listening on 127.0.0.1 only."""

    def __init__(self, directory: Path, port: int | None = None):
        self.binary = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
        if self.binary is None:
            raise BadInput("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.dir, self.port = Path(directory), port or free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {self.dir.resolve()}/\n"
                               + ("user root\n" if os.geteuid() == 0 else ""))  # else it drops to a user that cannot write here
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        with (self.dir / "mosquitto.log").open("a") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its sessions and queued messages, then exits."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
