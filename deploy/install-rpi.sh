#!/usr/bin/env bash
# Install the inspection station on Raspberry Pi OS 64-bit (bookworm), Pi 4 or Pi 5, as a
# systemd service. Run from a checkout of the project, as root; safe to run again (upgrades).
#
#   sudo deploy/install-rpi.sh            # install, enable the service
#   deploy/install-rpi.sh --dry-run       # print every command instead (any machine, no root)
#
# picamera2 (the Pi camera) and Aravis with PyGObject (GenICam cameras) are system packages, so the
# venv sees the system's packages (--system-site-packages); pip brings the rest of `.[edge]`, LiteRT
# (ai-edge-litert) included.
set -euo pipefail
# shellcheck source=deploy/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "usage: $0 [--dry-run]" "$@"

arch=$(uname -m)
model=$(tr -d '\0' 2>/dev/null </proc/device-tree/model || true)
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ $arch == aarch64 ]] || refuse "not 64-bit ARM (uname -m: $arch); Raspberry Pi OS 64-bit is needed"
[[ $model == *"Raspberry Pi"* ]] || refuse "not a Raspberry Pi (device-tree model: ${model:-none})"
[[ $codename == bookworm ]] || refuse "not bookworm (VERSION_CODENAME: ${codename:-none})"

run apt-get update
run apt-get install -y --no-install-recommends python3-venv python3-picamera2 python3-gi gir1.2-aravis-0.8
tune_gige
ensure_user
run install -d -m 0755 "$PREFIX"
run python3 -m venv --system-site-packages "$VENV"
run "$VENV/bin/pip" install --constraint "$ROOT/deploy/constraints.txt" "${ROOT}[edge]"
run "$VENV/bin/python" -I -c "import cv2, picamera2, ai_edge_litert, edge.station.run; print('imports ok, OpenCV', cv2.__version__)"
install_service
next_steps "picamera2 (or /dev/inspection-camera for a USB camera)"
