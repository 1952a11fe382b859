"""The operator page, /metrics and /healthz of a real `station run` on a real video, seen by headless Chromium."""

import json
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from stations import get, start_with_page, stop, wait_until, write_config

from edge.cli import main
from edge.tools.plc_sim import PLCStandIn
from training.surfaces import write_conveyor
from training.synthetic import write_video

TOKEN = "line-7-operator"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    """`station run` bound to 0.0.0.0 with a token, on a 20 s conveyor video paced like a camera (about one
    frame in six holds a defect)."""
    tmp = tmp_path_factory.mktemp("web")
    write_conveyor(tmp / "line.avi", frames=300, size=(120, 160), fps=15, seed=11)
    config = write_config(tmp, tmp / "line.avi", source={"realtime": True},
                          http={"host": "0.0.0.0", "port": 0, "token": TOKEN, "live_fps": 5})
    proc, url = start_with_page(config, tmp / "stderr.txt")
    wait_until(lambda: json.loads(get(f"{url}api/state?token={TOKEN}")[1])["counters"]["frames"] > 0, what="a first verdict")
    yield url
    stop(proc)


def _browser():
    pytest.importorskip("selenium", reason="the page's browser test drives Chromium through selenium (the dev extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=390,1200",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))  # never downloads a browser


def test_the_page_shows_counters_moving_the_live_view_and_reject_thumbnails(station):
    browser = _browser()
    try:
        browser.get(f"{station}?token={TOKEN}")  # a phone-sized window
        text = lambda element_id: browser.find_element("id", element_id).text  # noqa: E731
        first = wait_until(lambda: text("frames").isdigit() and int(text("frames")), what="the frame counter")
        wait_until(lambda: int(text("frames")) > first, what="the frame counter to move")
        assert int(text("rejects-count")) > 0 and text("drops") == "0"
        assert float(text("p50")) > 0 and float(text("p99")) >= float(text("p50"))
        assert text("health") == "OK" and text("gate-connected") == "yes" and text("gate-driver") == "log (immediate)"
        assert text("camera-source").endswith("line.avi (FileSource)") and text("camera-outages").startswith("0 ")
        wait_until(lambda: browser.execute_script("return document.getElementById('live').naturalWidth") == 160,
              what="the live frame")
        assert text("live-caption").startswith("frame ")
        thumbnails = "return [...document.querySelectorAll('#rejects figure.reject img')].filter(i => i.complete && i.naturalWidth > 0).length"
        wait_until(lambda: browser.execute_script(thumbnails) > 0, what="a reject thumbnail")
        caption = browser.find_element("css selector", "#rejects figure.reject figcaption").text
        assert caption.startswith("frame ") and " px" in caption and "max p " in caption and "×" in caption
    finally:
        browser.quit()


def test_beyond_loopback_every_request_needs_the_token(station):
    for path in ("", "api/state", "live.jpg", "reject/1.jpg", "metrics", "healthz"):
        assert get(station + path)[0] == 401
        assert get(f"{station}{path}?token=wrong-token")[0] == 401
        assert get(station + path, {"Authorization": "Bearer wrong-token"})[0] == 401
        assert get(f"{station}{path}?token={TOKEN}")[0] in (200, 404)  # 404: that reject is not among the last ones
        assert get(station + path, {"Authorization": f"Bearer {TOKEN}"})[0] in (200, 404)
    assert get(f"{station}?token={TOKEN}")[0] == 200
    post = urllib.request.Request(f"{station}api/state?token={TOKEN}", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:  # read-only: nothing but GET and HEAD
        urllib.request.urlopen(post, timeout=10)
    assert refused.value.code == 501


def test_metrics_and_healthz(station):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    code, body, headers = get(station + "metrics", auth)
    metrics = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line and not line.startswith("#")}
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    assert metrics["station_frames_total"] > 0 and metrics["station_rejects_total"] > 0
    assert metrics["station_drops_total"] == 0 and metrics["station_source_outages_total"] == 0
    assert metrics['station_gate_rejects_total{status="sent"}'] > 0 and metrics["station_gate_connected"] == 1
    assert metrics['station_latency_seconds_count{stage="capture_to_verdict"}'] > 0 and metrics["station_fps"] > 0
    code, body, _ = get(station + "healthz", auth)
    assert code == 200 and json.loads(body)["ok"] is True


def test_healthz_is_503_with_the_reason_when_the_gate_is_lost(tmp_path):
    write_video(tmp_path / "line.avi", frames=120, size=(120, 160), fps=15, seed=2)
    plc = PLCStandIn()
    config = write_config(tmp_path, tmp_path / "line.avi", source={"realtime": True},
                          gate={"driver": "serial", "port": plc.path, "heartbeat_ms": 50}, http={"port": 0})
    proc, url = start_with_page(config, tmp_path / "stderr.txt")
    try:
        wait_until(lambda: get(url + "healthz")[0] == 200, what="a healthy station")
        plc.close()  # the PLC's side of the wire is gone
        code, body, _ = wait_until(lambda: (r := get(url + "healthz"))[0] == 503 and r, what="/healthz to turn 503")
        health = json.loads(body)
        assert health["ok"] is False and health["gate_connected"] is False
        assert any(reason.startswith(f"gate not connected ({plc.path})") for reason in health["reasons"])
        assert json.loads(get(url + "api/state")[1])["gate"]["connected"] is False
    finally:
        stop(proc)


def test_a_page_bound_beyond_loopback_without_a_token_refuses_to_start(tmp_path, capsys):
    write_video(tmp_path / "line.avi", frames=2)
    config = write_config(tmp_path, tmp_path / "line.avi", http={"host": "0.0.0.0", "port": 0})
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "http: host 0.0.0.0 is reachable beyond this machine: set http.token" in err and "\n" not in err
