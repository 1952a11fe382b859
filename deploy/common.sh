# shellcheck shell=bash
# Shared by install-rpi.sh and install-jetson.sh (sourced, not run): options, the --dry-run
# runner, and the steps both devices take. Every step is safe to run again.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/inspection-station
# shellcheck disable=SC2034 # used by the scripts that source this file
VENV=$PREFIX/.venv
CONF_DIR=/etc/inspection-station
STATE_DIR=/var/lib/inspection-station
UNIT=inspection-station.service
RULES=/etc/udev/rules.d/99-inspection-station.rules
DRY_RUN=0

die() { echo "error: $*" >&2; exit 1; }

# usage TEXT: the options, or an unknown one (exit 2).
parse_args() {
    local usage=$1; shift
    for arg in "$@"; do
        case $arg in
            --dry-run) DRY_RUN=1 ;;
            -h | --help) echo "$usage"; exit 0 ;;
            *) echo "unknown option: $arg" >&2; echo "$usage" >&2; exit 2 ;;
        esac
    done
    if ((!DRY_RUN && EUID != 0)); then
        die "run as root (sudo $0), or with --dry-run to see the commands"
    fi
}

# run CMD...: run it, or print it with --dry-run (arguments with odd characters in single quotes).
run() {
    if ((DRY_RUN)); then
        local arg line=+
        for arg in "$@"; do
            if [[ $arg =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then
                line+=" $arg"
            else
                line+=" '${arg//\'/\'\\\'\'}'"
            fi
        done
        echo "$line"
    else
        "$@"
    fi
}

# write_file PATH MODE < CONTENT: write it, or print it with --dry-run.
write_file() {
    if ((DRY_RUN)); then
        printf '+ write %s (mode %s):\n' "$1" "$2"
        sed 's/^/    /'
    else
        cat >"$1"
        chmod "$2" "$1"
    fi
}

# refuse REASON: stop on the wrong platform; with --dry-run, say so and go on.
refuse() {
    if ((DRY_RUN)); then
        echo "# wrong platform, ignored for --dry-run: $*"
    else
        die "$* (--dry-run shows the commands anywhere)"
    fi
}

# The unprivileged user the service runs as, in dialout (serial) and video (cameras).
ensure_user() {
    if id -u station >/dev/null 2>&1; then
        run usermod --append --groups dialout,video station
    else
        run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --groups dialout,video station
    fi
}

# GigE Vision cameras (source aravis://) stream frames as UDP bursts: with the kernel's default
# socket buffers most frames arrive with packets missing. 25 MB, as Aravis and the camera makers advise.
tune_gige() {
    write_file /etc/sysctl.d/60-inspection-station-gige.conf 0644 <<'EOF'
# inspection-station: complete GigE Vision frames (deploy/common.sh)
net.core.rmem_max = 26214400
net.core.rmem_default = 26214400
EOF
    run sysctl --system --quiet
}

# The configuration and the udev rule are the operator's once installed: never overwritten.
# The unit is ours: replaced on every install (local changes belong in a drop-in).
install_service() {
    run install -d -m 0750 -o station -g station "$STATE_DIR" "$STATE_DIR/models"
    run install -d -m 0755 "$CONF_DIR"
    if [[ -e $CONF_DIR/config.yaml ]]; then
        echo "# keeping $CONF_DIR/config.yaml"
    else
        run install -m 0640 -g station "$ROOT/config.yaml" "$CONF_DIR/config.yaml"
    fi
    if [[ -e $RULES ]]; then
        echo "# keeping $RULES"
    else
        run install -m 0644 "$ROOT/deploy/99-inspection-station.rules" "$RULES"
    fi
    run udevadm control --reload-rules
    run udevadm trigger --subsystem-match=tty --subsystem-match=video4linux
    run install -m 0644 "$ROOT/deploy/$UNIT" "/etc/systemd/system/$UNIT"
    run systemctl daemon-reload
    run systemctl enable "$UNIT"
    run systemctl try-restart "$UNIT"
}

# next_steps SOURCE_EXAMPLE: what the operator does after the install.
next_steps() {
    cat <<STEPS

Installed. Next:
  1. Put the model (model_int8.tflite and its model_int8.json card) in $STATE_DIR/models/ and
     edit $CONF_DIR/config.yaml: model.path: $STATE_DIR/models/model_int8.tflite,
     source.uri: $1, gate.driver: serial, gate.port: /dev/plc-gate
  2. Edit $RULES with your adapter's idVendor/idProduct/serial (udevadm info, see the file).
  3. systemctl start $UNIT; journalctl -u $UNIT -f
STEPS
}
