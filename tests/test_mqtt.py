"""MQTT with a real mosquitto broker: every verdict arrives, across a broker restart and a station restart."""

import json
import subprocess
import sys
import threading
import time

import pytest
from stations import verdict_records, write_config

from edge.cli import main
from edge.tools.local_broker import LocalBroker, free_port
from training.surfaces import write_conveyor
from training.synthetic import write_video

mqtt = pytest.importorskip("paho.mqtt.client", reason="the station's MQTT sink and the dashboard need paho-mqtt (the mqtt extra)")


class Dashboard:
    """A plant dashboard: a persistent MQTT session (QoS 1), so the broker keeps its messages across restarts."""

    def __init__(self, port: int):
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dashboard", clean_session=False)
        self.client.on_connect = lambda client, *_: client.subscribe("line1/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda client, userdata, message: self.messages.append((message.topic, message.payload))
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def payloads(self, topic: str) -> list[dict]:
        return [json.loads(payload) for t, payload in list(self.messages) if t == topic]

    def wait_for(self, topic: str, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len({p["n"] for p in self.payloads(topic)}) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.payloads(topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    broker = LocalBroker(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


def _mqtt_config(tmp_path, video, broker_port, **mqtt_keys):
    return write_config(tmp_path, video, source={"realtime": True},
                        mqtt={"host": "127.0.0.1", "port": broker_port, "topic_prefix": "line1",
                              "spool_dir": str(tmp_path / "spool"), **mqtt_keys})


def test_every_verdict_arrives_across_a_broker_restart_and_a_station_restart(tmp_path, broker):
    write_video(tmp_path / "a.avi", frames=210, size=(120, 160), fps=30, seed=4)
    write_video(tmp_path / "b.avi", frames=30, size=(120, 160), fps=30, seed=5)
    dashboard = Dashboard(broker.port)
    config = _mqtt_config(tmp_path, tmp_path / "a.avi", broker.port)
    try:
        station = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        dashboard.wait_for("line1/verdict", 15)
        broker.stop()  # the broker goes away mid-run ...
        time.sleep(1.0)
        broker.start()  # ... and comes back: the station reconnects and sends what it spooled
        dashboard.wait_for("line1/verdict", 45)
        broker.stop()  # gone again, until after the station has stopped
        assert station.wait(60) == 0, station.stderr.read()
        first_run = len(verdict_records(tmp_path))
        spooled = (tmp_path / "spool" / "spool.jsonl").read_bytes()
        offset = json.loads((tmp_path / "spool" / "state.json").read_text())["offset"]
        assert 0 < len(spooled[offset:].splitlines()) < first_run  # left on disk, unacknowledged
        broker.start()
        config.write_text(config.read_text().replace("a.avi", "b.avi"))
        assert main(["run", "--config", str(config)]) == 0  # a restarted station sends the first one's leftovers
        records = verdict_records(tmp_path)  # both runs, in order
        verdicts = dashboard.wait_for("line1/verdict", len(records))
    finally:
        dashboard.close()
    by_n = {v["n"]: v for v in verdicts}  # at least once: a duplicate has the same n
    assert sorted(by_n) == list(range(len(records)))
    assert [(by_n[n]["seq"], by_n[n]["verdict"], by_n[n]["t_capture"]) for n in range(len(records))] == \
           [(r["seq"], r["verdict"], r["t_capture"]) for r in records]
    assert len(records) == first_run + 30


def test_summary_mode_sends_one_message_a_second_with_every_reject(tmp_path, broker):
    write_conveyor(tmp_path / "line.avi", frames=75, size=(120, 160), fps=30, seed=6)  # defects the bundled model finds
    dashboard = Dashboard(broker.port)
    try:
        config = _mqtt_config(tmp_path, tmp_path / "line.avi", broker.port, mode="summary")
        assert main(["run", "--config", str(config)]) == 0
        records = verdict_records(tmp_path)
        summaries = dashboard.wait_for("line1/summary", 2)
        time.sleep(0.5)
        summaries = dashboard.payloads("line1/summary")
    finally:
        dashboard.close()
    assert [s["n"] for s in summaries] == list(range(len(summaries))) and len(summaries) >= 2
    assert sum(s["interval_frames"] for s in summaries) == len(records) == summaries[-1]["frames"]
    rejects = [r["seq"] for r in records if r["verdict"] == "reject"]
    assert [seq for s in summaries for seq in s["interval_rejects"]] == rejects and rejects
    assert all(s["gate_connected"] and s["fps"] > 0 for s in summaries)
    assert not dashboard.payloads("line1/verdict")
    status = [m.decode() for t, m in dashboard.messages if t == "line1/status"]
    assert status[0] == "online" and status[-1] == "offline"


def test_without_a_broker_the_station_runs_on_and_spools_every_verdict(tmp_path):
    write_video(tmp_path / "line.avi", frames=20, size=(120, 160), fps=30)
    config = _mqtt_config(tmp_path, tmp_path / "line.avi", free_port())  # nothing listens there
    assert main(["run", "--config", str(config)]) == 0
    spooled = [json.loads(line) for line in (tmp_path / "spool" / "spool.jsonl").read_text().splitlines()]
    assert [(s["n"], s["seq"]) for s in spooled] == [(r["seq"], r["seq"]) for r in verdict_records(tmp_path)]
    assert json.loads((tmp_path / "spool" / "state.json").read_text()) == {"offset": 0, "next_n": 20}
