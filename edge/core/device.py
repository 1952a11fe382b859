"""Facts about the machine a benchmark or the daemon runs on: CPU, OS, versions, memory.

    device_facts()["cpu"], memory_mb("VmHWM")
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from edge.inference.runtime import RUNTIMES, runtime_version


def memory_mb(field: str = "VmRSS", pid: int | str = "self") -> float:
    """A process's (this one's by default) resident memory now (VmRSS) or at its peak (VmHWM), in MB.

    VmHWM rather than getrusage's ru_maxrss, which Linux carries over from the parent across
    fork and exec, so a child spawned by a parent that had loaded TensorFlow would report its size.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"/proc/{pid}/status has no {field}")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def device_facts() -> dict:
    """What two reports need to be compared: CPU, cores, OS, Python and runtime versions."""
    cpu = platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
             if line.lower().startswith(("model name", "cpu model"))]
    cpu = names[0] if names else cpu
    board = _read("/proc/device-tree/model").strip("\x00\n ") or None  # Raspberry Pi, Jetson
    os_name = platform.platform()
    release = dict(line.split("=", 1) for line in _read("/etc/os-release").splitlines() if "=" in line)
    if "PRETTY_NAME" in release:
        os_name = f"{release['PRETTY_NAME'].strip(chr(34))} ({platform.release()})"
    versions = {name: runtime_version(name) for name in (*RUNTIMES, "openvino")}
    return {"cpu": cpu, "board": board, "machine": platform.machine(), "cores": os.cpu_count(), "os": os_name,
            "python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
            "runtimes": {k: v for k, v in versions.items() if v != "?"}, "delegate": "XNNPACK (CPU, default)",
            "hostname": platform.node()}




def peak_gmac_s(size: int = 1024, seconds: float = 1.0) -> float:
    """This CPU's multiply-accumulate rate at its best, all cores: float32 matrix products on numpy's BLAS
    (OpenBLAS: FMA kernels tuned per CPU, within about 10 % of the cores' FMA peak), in GMAC/s. The
    bench sets a model's rate (its MACs per invoke over the invoke time) against it."""
    a = np.random.default_rng(0).random((size, size), np.float32)
    a @ a  # warm: threads started, kernel chosen
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        a @ a
        count += 1
    return count * size**3 / elapsed / 1e9
