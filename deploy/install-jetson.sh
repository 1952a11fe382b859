#!/usr/bin/env bash
# Install the inspection station on an NVIDIA Jetson with JetPack 6 (L4T R36, Ubuntu 22.04,
# Python 3.10) as a systemd service. Run from a checkout of the project, as root; safe to run
# again (upgrades).
#
#   sudo deploy/install-jetson.sh         # install, enable the service
#   deploy/install-jetson.sh --dry-run    # print every command instead (any machine, no root)
#
# OpenCV: the station must use JetPack's OpenCV, built with GStreamer (CSI cameras through
# nvarguscamerasrc, hardware video decoding). pip's opencv-python-headless has no GStreamer and,
# once in the venv, would shadow it. So the venv sees the system packages
# (--system-site-packages), the project goes in with --no-deps, and its edge requirements
# (read from setup.py) follow without OpenCV; the install ends by checking that the venv's cv2
# has GStreamer. LiteRT (ai-edge-litert has aarch64 wheels), else tflite-runtime.
#
# A CSI camera, as config.yaml's source.uri (appsink keeps only the newest frame):
CSI='nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,format=NV12 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1 max-buffers=1'
set -euo pipefail
# shellcheck source=deploy/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "usage: $0 [--dry-run]" "$@"

arch=$(uname -m)
release=$(head -n 1 2>/dev/null </etc/nv_tegra_release || true)  # "# R36 (release), REVISION: 4.0, ..."
[[ $arch == aarch64 ]] || refuse "not 64-bit ARM (uname -m: $arch)"
[[ $release == "# R36 "* ]] || refuse "not JetPack 6 / L4T R36 (/etc/nv_tegra_release: ${release:-none}); JetPack 5 has Python 3.8, the station needs 3.10"

# requirements KIND: setup.py's edge requirements, KIND deps (all but OpenCV and LiteRT) or
# litert, read by running setup.py against a stand-in setuptools (no build, no network).
requirements() {
    python3 - "$ROOT/setup.py" "$1" <<'PY'
import re, runpy, sys, types
setuptools, args = types.ModuleType("setuptools"), {}
setuptools.setup = lambda **kwargs: args.update(kwargs)
setuptools.find_packages = lambda **kwargs: []
sys.modules["setuptools"] = setuptools
runpy.run_path(sys.argv[1])
for req in args["install_requires"] + args["extras_require"]["edge"]:
    name = re.match(r"[A-Za-z0-9._-]+", req).group().lower()
    if (name == "ai-edge-litert") == (sys.argv[2] == "litert") and not name.startswith("opencv"):
        print(req)
PY
}
deps=$(requirements deps)
litert=$(requirements litert)
mapfile -t deps <<<"$deps"

run apt-get update
run apt-get install -y python3-venv python3-pip nvidia-opencv gstreamer1.0-tools python3-gi gir1.2-aravis-0.8
tune_gige
ensure_user
run install -d -m 0755 "$PREFIX"
run python3 -m venv --system-site-packages "$VENV"
run "$VENV/bin/pip" install --no-deps "$ROOT"
run "$VENV/bin/pip" install --constraint "$ROOT/deploy/constraints.txt" "${deps[@]}"
if ! run "$VENV/bin/pip" install --constraint "$ROOT/deploy/constraints.txt" "$litert"; then
    echo "# no LiteRT wheel for this Python: tflite-runtime instead"
    run "$VENV/bin/pip" install --constraint "$ROOT/deploy/constraints.txt" tflite-runtime
fi
run "$VENV/bin/python" -I -c "import cv2, sys; from edge.sources import has_gstreamer; print('OpenCV', cv2.__version__, cv2.__file__); sys.exit(0 if has_gstreamer() else 'this OpenCV has no GStreamer: is a pip opencv in the venv?')"
run install -d -m 0755 "/etc/systemd/system/$UNIT.d"
write_file "/etc/systemd/system/$UNIT.d/jetson.conf" 0644 <<'CONF'
# nvarguscamerasrc reaches nvargus-daemon through /tmp/argus_socket: a private /tmp hides it.
[Service]
PrivateTmp=no
CONF
install_service
next_steps "'$CSI' (a CSI camera; /dev/inspection-camera for a USB one)"
