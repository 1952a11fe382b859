"""GenICam cameras through Aravis: its in-process fake camera, and its fake GigE Vision camera
(arv-fake-gv-camera-0.8, a real GVCP/GVSP device on the loopback interface), killed and restarted."""

import os
import shutil
import subprocess
import time

import pytest
from stations import verdict_records, write_config

from edge.cli import main
from edge.core.config import SourceConfig
from edge.core.errors import BadInput
from edge.sources import open_source
from edge.sources.aravis import BUFFERS

gi = pytest.importorskip("gi", reason="Aravis sources need PyGObject")
try:
    gi.require_version("Aravis", "0.8")
    from gi.repository import Aravis
except ValueError:
    pytest.skip("Aravis 0.8 is not installed (apt install gir1.2-aravis-0.8)", allow_module_level=True)

Aravis.enable_interface("Fake")  # Fake_1: Aravis' in-process camera


def _open(uri: str, **settings):
    return open_source(uri, SourceConfig(uri=uri, **settings))


def test_the_fake_camera_gives_frames_of_the_configured_region_with_the_cameras_ids():
    source = _open("aravis://Fake_1", width=320, height=240, fps=30, pixel_format="Mono8")
    frames = [source.read() for _ in range(5)]
    source.close()
    assert all(f.image.shape == (240, 320, 3) and f.error is None for f in frames)
    ids = [f.frame_id for f in frames]
    assert ids == list(range(ids[0], ids[0] + 5)) and [f.seq for f in frames] == [0, 1, 2, 3, 4]
    stamps = [f.camera_ns for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


def test_software_trigger_gives_one_frame_per_read_and_none_in_between():
    source = _open("aravis://Fake_1", width=64, height=48, trigger="software")
    first = source.read()
    time.sleep(0.5)  # a free-running camera would have made frames meanwhile
    second = source.read()
    source.close()
    assert second.frame_id == first.frame_id + 1


def test_an_unknown_camera_is_one_line_naming_the_cameras_seen(capsys, tmp_path):
    with pytest.raises(BadInput, match=r"source aravis://Nope-1: camera not found \(cameras seen: .*Fake_1"):
        _open("aravis://Nope-1")
    config = write_config(tmp_path, "aravis://Nope-1")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "camera not found" in err and "\n" not in err


def test_station_run_on_the_fake_camera_records_the_cameras_frame_ids(tmp_path):
    config = write_config(tmp_path, "aravis://Fake_1", source={"width": 160, "height": 120, "fps": 20})
    assert main(["run", "--config", str(config), "--max-frames", "6"]) == 0
    records = verdict_records(tmp_path)
    # one record per frame (a frame dropped while inference was behind is recorded when dropped: any order)
    assert sorted(r["seq"] for r in records) == list(range(6)) and all(r["source"] == "aravis://Fake_1" for r in records)
    assert all(isinstance(r["frame_id"], int) and isinstance(r["camera_ns"], int) for r in records)


def _fake_gige() -> subprocess.Popen:
    proc = subprocess.Popen(["arv-fake-gv-camera-0.8", "-i", "lo"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


@pytest.mark.skipif(shutil.which("arv-fake-gv-camera-0.8") is None, reason="aravis-tools is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="complete GigE frames on loopback need larger socket buffers (sysctl, root)")
def test_a_gige_camera_killed_and_restarted_is_a_gap_and_a_reconnect():
    for key in ("net.core.rmem_max", "net.core.rmem_default"):
        subprocess.run(["sysctl", "-q", "-w", f"{key}=26214400"], check=False, stderr=subprocess.DEVNULL)
    if int(open("/proc/sys/net/core/rmem_max").read()) < 26214400:
        pytest.skip("the socket buffers cannot be raised here (sysctl refused: a container?)")
    camera = _fake_gige()
    try:
        source = _open("aravis://Aravis-Fake-GV01", fps=20, stall_s=1.0, reconnect_initial_s=0.2, reconnect_max_s=0.5)
        before = [source.read() for _ in range(10)]
        assert all(f.error is None and f.image is not None for f in before)  # complete frames over GVSP
        camera.kill()
        camera.wait()
        restarter = subprocess.Popen(["sh", "-c", "sleep 2; exec arv-fake-gv-camera-0.8 -i lo"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        camera, killed_at = restarter, time.monotonic()
        after = [source.read() for _ in range(BUFFERS + 3)]  # the buffers filled before the kill, then new ones
        source.close()
    finally:
        camera.kill()
        camera.wait()
    assert len(source.gaps) == 1 and source.gaps[0].t_end - source.gaps[0].t_start >= 2.0
    assert "reopened" in source.gaps[0].reason
    new = [f for f in after if f.t_capture > killed_at + 2]
    assert new and all(f.image is not None for f in new)
    assert [f.seq for f in before + after] == list(range(10 + BUFFERS + 3))


def test_record_keeps_the_cameras_frames_as_a_lossless_video_and_as_pngs(tmp_path):
    assert main(["record", "--source", "aravis://Fake_1", "--frames", "4", "--out", str(tmp_path / "line.mkv"),
                 "--fps", "20"]) == 0
    assert main(["record", "--source", "aravis://Fake_1", "--frames", "3", "--out", str(tmp_path / "pngs")]) == 0
    video = open_source(str(tmp_path / "line.mkv"))
    frames = []
    while (frame := video.read()) is not None:
        frames.append(frame)
    assert len(frames) == 4 and frames[0].image.shape == (512, 512, 3)
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["000000.png", "000001.png", "000002.png"]
