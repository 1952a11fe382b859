"""deploy/: the install scripts (shellcheck, --dry-run), the systemd unit (systemd-analyze verify), the udev rule."""

import os
import platform
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from edge.core.errors import BadInput
from edge.sources import open_source

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
SCRIPTS = ["install-rpi.sh", "install-jetson.sh"]


def _bash(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed (apt-get install shellcheck)")
def test_install_scripts_pass_shellcheck():
    result = subprocess.run(["shellcheck", "--external-sources", "deploy/common.sh", *(f"deploy/{s}" for s in SCRIPTS)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_run_prints_the_install_and_changes_nothing(script):
    existed = Path("/opt/inspection-station").exists()
    result = _bash(f"deploy/{script}", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert "+ python3 -m venv --system-site-packages /opt/inspection-station/.venv" in commands
    assert f"+ install -m 0644 {DEPLOY}/inspection-station.service /etc/systemd/system/inspection-station.service" in commands
    assert "+ systemctl enable inspection-station.service" in commands
    assert any(c.startswith("+ useradd ") or c.startswith("+ usermod ") for c in commands)
    assert Path("/opt/inspection-station").exists() == existed
    pips = [c for c in commands if "/bin/pip install" in c]
    if script == "install-rpi.sh":
        assert any("python3-picamera2" in c for c in commands)
        assert pips == [f"+ /opt/inspection-station/.venv/bin/pip install --constraint {DEPLOY}/constraints.txt '{ROOT}[edge]'"]
    else:  # JetPack's OpenCV (with GStreamer) must not be shadowed by a pip wheel
        assert pips[0] == f"+ /opt/inspection-station/.venv/bin/pip install --no-deps {ROOT}"
        assert not any("opencv" in c for c in pips) and "'pyserial>=3.5'" in pips[1] and "ai-edge-litert" in pips[2]
        assert "PrivateTmp=no" in result.stdout and "nvarguscamerasrc" in result.stdout


@pytest.mark.skipif(platform.machine() == "aarch64", reason="on a real device this would install")
@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_refuse_the_wrong_platform_and_unknown_options(script):
    result = _bash(f"deploy/{script}")
    assert result.returncode == 1
    assert ("not 64-bit ARM" if os.geteuid() == 0 else "run as root") in result.stderr
    assert _bash(f"deploy/{script}", "--force").returncode == 2


@pytest.mark.skipif(not shutil.which("systemd-analyze") or not Path("/usr/lib/systemd/system").is_dir(),
                    reason="no systemd-analyze or no systemd units on this machine")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    """Verified in a stand-in root that holds the system's units and an executable ExecStart."""
    station = tmp_path / "opt/inspection-station/.venv/bin/station"
    station.parent.mkdir(parents=True)
    station.write_text("#!/bin/sh\n")
    station.chmod(station.stat().st_mode | stat.S_IXUSR)
    shutil.copytree("/usr/lib/systemd/system", tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(DEPLOY / "inspection-station.service", tmp_path / "etc/systemd/system")
    result = subprocess.run(["systemd-analyze", "verify", f"--root={tmp_path}", "inspection-station.service"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def _udevadm_verify() -> bool:
    return bool(shutil.which("udevadm")) and subprocess.run(["udevadm", "verify", "--help"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _udevadm_verify(), reason="udevadm verify needs systemd 254 or later")
def test_udev_rule_passes_udevadm_verify():
    result = subprocess.run(["udevadm", "verify", str(DEPLOY / "99-inspection-station.rules")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_udev_rule_names_the_gate_and_the_camera():
    """Each rule is KEY[{attr}]OP"value" pairs; the names match the ones the README and scripts use."""
    pair = re.compile(r'(SUBSYSTEM|ATTRS?\{\w+\}|ENV\{\w+\}|SYMLINK|GROUP|MODE)(==|!=|\+=|=)"[^"]*"')
    rules = [line.lstrip("#") for line in (DEPLOY / "99-inspection-station.rules").read_text().splitlines()
             if line.startswith(("SUBSYSTEM", "#SUBSYSTEM"))]
    assert len(rules) == 3
    for rule in rules:
        assert all(pair.fullmatch(part) for part in rule.split(", ")), rule
    assert 'SYMLINK+="plc-gate", GROUP="dialout"' in rules[0] and 'SYMLINK+="inspection-camera", GROUP="video"' in rules[2]


def test_a_udev_camera_name_is_opened_as_a_camera():
    """source.uri: /dev/inspection-camera is a V4L2 camera, not a video file."""
    with pytest.raises(BadInput, match="source /dev/inspection-camera: cannot be opened"):
        open_source("/dev/inspection-camera")
