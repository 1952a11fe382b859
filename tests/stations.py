"""A station under test: its config file, its results log, and `station run` in a process of its own
with its operator page. Not a test module: the device tests import it (tests/faults has its own,
station_run.py, for the invariant under injected faults).

    config = write_config(tmp_path, tmp_path / "line.avi", decision={"min_area_px": 30})
    assert main(["run", "--config", str(config)]) == 0       # in this process
    verdicts = verdict_records(tmp_path)                    # one per frame, in order

    proc, url = start_with_page(config, tmp_path / "stderr.txt")   # python -m edge run, page on port 0
    wait_until(lambda: get(url + "healthz")[0] == 200, what="a healthy station")
    stop(proc)

Every station here runs the bundled int8 model (`model: {path: default}`): no training is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def write_config(tmp_path: Path, uri: str | Path, **sections) -> Path:
    """tmp_path/station.yaml: the bundled model on 2 threads reading `uri`, defects of 30 px or more, the results
    log and reject overlays under tmp_path/out; `sections` add or override keys (model={"path": ...})."""
    doc = {
        "model": {"path": "default", "threads": 2},
        "source": {"uri": str(uri)},
        "decision": {"min_area_px": 30},
        "output": {"results_log": str(tmp_path / "out" / "results.jsonl"), "overlays_dir": str(tmp_path / "out" / "rejects")},
    }
    for key, values in sections.items():
        doc.setdefault(key, {}).update(values)
    path = tmp_path / "station.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def read_log(tmp_path: Path) -> list[dict]:
    """Every record of tmp_path/out/results.jsonl: the frames' verdicts and the gate's events."""
    return [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]


def verdict_records(tmp_path: Path) -> list[dict]:
    """The per-frame verdict records of the results log, in the order written."""
    return [r for r in read_log(tmp_path) if "verdict" in r]


def start_with_page(config: Path, log: Path, serves: str = "operator page ", **popen) -> tuple[subprocess.Popen, str]:
    """`station run` in a process of its own (`popen`: more Popen arguments), stderr to `log`, and the URL it
    prints after `serves` (the operator page's by default; "opcua ": the OPC UA server's), on 127.0.0.1."""
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True, **popen)
    for line in proc.stdout:
        if line.startswith(serves):
            return proc, line.split()[-1].replace("0.0.0.0", "127.0.0.1")
    proc.wait()
    raise AssertionError(f"station exited {proc.returncode} without serving {serves!r}: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then wait for the station to finish its frames in flight and exit."""
    proc.terminate()
    proc.communicate(timeout=30)


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    """(status, body, headers) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def wait_until(condition, timeout: float = 20.0, what: str = "condition"):
    """The first true value of `condition()`, asked every 0.1 s; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
