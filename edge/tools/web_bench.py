"""`make bench-web`: the daemon's throughput with the operator page watched and MQTT on, against both off.

    python -m edge.tools.web_bench --model runs/bench/tflite/model_int8.tflite --video runs/bench/line256.avi --rounds 5

Each round runs `station run` on the video, frames as fast as they decode (2 interpreter threads,
gate dry run, no overlays), twice: `off` (no web server, no MQTT) and `on` (the page served on
127.0.0.1 with a client fetching what the page fetches, over one kept-alive connection like a
browser: /api/state every second, /live.jpg back to back at `http.live_fps`, every new reject's
thumbnail; and MQTT `verdict` mode, QoS 1, into a local mosquitto). The two alternate which goes
first from round to round, so a load that drifts hits both alike. Prints every run's throughput
and the station process's CPU time per frame (user + system, all its threads), their medians and
on/off. The client and the broker run on the same machine as the station, where a plant has them
elsewhere: the figure bounds the cost.
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from edge.tools.local_broker import LocalBroker


def watch(url: str, stop: threading.Event) -> int:
    """Fetch what the operator page fetches, over one kept-alive connection as a browser does, until
    `stop`; returns the number of requests."""
    host, port = urllib.parse.urlsplit(url)[1].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    live_fps, next_state, seen, requests = 4.0, 0.0, set(), 0

    def get(path: str) -> bytes:
        nonlocal requests
        connection.request("GET", path)
        requests += 1
        return connection.getresponse().read()

    while not stop.is_set():
        try:
            if time.monotonic() >= next_state:
                state = json.loads(get("/api/state"))
                live_fps, next_state = state["live_fps"], time.monotonic() + 1.0
                for reject in state["rejects"]:
                    if reject["seq"] not in seen:
                        seen.add(reject["seq"])
                        get(f"/reject/{reject['seq']}.jpg")
            get("/live.jpg")
        except (OSError, http.client.HTTPException):  # not serving yet (the model loads first), or the run has ended
            connection.close()
        stop.wait(1.0 / live_fps)
    connection.close()
    return requests


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_station(args, variant: str, work: Path, broker: LocalBroker) -> tuple[float, float, str]:
    """One `station run`: its throughput (frames/s), its CPU time per frame (ms), what the client did."""
    config = {"model": {"path": args.model, "threads": args.threads}, "source": {"uri": args.video, "realtime": False},
              "decision": {"min_area_px": 30}, "pipeline": {"max_frames": args.frames or None},
              "output": {"results_log": str(work / "results.jsonl"), "overlays_dir": None}}
    if variant == "on":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            config["http"] = {"port": s.getsockname()[1]}
        config["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "spool_dir": str(work / "spool"), "client_id": "web-bench"}
    work.mkdir(parents=True)
    (work / "station.yaml").write_text(json.dumps(config))  # JSON is YAML
    command = [sys.executable, "-m", "edge", "run", "--config", str(work / "station.yaml")]
    cpu = _cpu_s()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop, result, client, note = threading.Event(), {}, None, ""
    if "http" in config:
        url = f"http://127.0.0.1:{config['http']['port']}"
        client = threading.Thread(target=lambda: result.update(requests=watch(url, stop)), daemon=True)
        client.start()
    proc.wait()
    cpu = _cpu_s() - cpu
    if client is not None:
        stop.set()
        client.join()
        note = f"{result['requests']} requests"
    records = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    stopped = records[-1] if records and records[-1].get("event") == "stopped" else None
    if proc.returncode or stopped is None or not stopped["frames"]:
        raise SystemExit(f"station run ({variant}) failed with exit code {proc.returncode}")
    return stopped["fps"], cpu * 1000 / stopped["frames"], note


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="int8 .tflite model with its card")
    p.add_argument("--video", required=True, help="video file, read as fast as it decodes")
    p.add_argument("--rounds", type=int, default=5, help="rounds of one off and one on run")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads")
    p.add_argument("--frames", type=int, default=0, help="frames per run (0: the whole video)")
    args = p.parse_args()
    fps: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
        broker = LocalBroker(Path(tmp) / "broker")
        broker.start()
        try:
            for round_ in range(args.rounds):
                for variant in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                    work = Path(tmp) / f"{variant}{round_}"
                    rate, cpu_ms, note = run_station(args, variant, work, broker)
                    fps[variant].append(rate)
                    cpu[variant].append(cpu_ms)
                    print(f"round {round_ + 1} {variant:3s} {rate:6.1f} fps, station CPU {cpu_ms:5.1f} ms/frame {note}", flush=True)
        finally:
            broker.stop()
    for name, values, unit in (("throughput", fps, "fps"), ("station CPU", cpu, "ms/frame")):
        off, on = statistics.median(values["off"]), statistics.median(values["on"])
        print(f"{name} median: off {off:.1f} {unit} ({min(values['off']):.1f}-{max(values['off']):.1f}), "
              f"on {on:.1f} {unit} ({min(values['on']):.1f}-{max(values['on']):.1f}); on/off = {on / off:.3f}")


if __name__ == "__main__":
    main()
