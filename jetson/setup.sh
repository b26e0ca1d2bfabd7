#!/usr/bin/env bash
# Set up a Jetson as an unattended sarco-edge screening device, from a checkout of this
# repository, in one command. Safe to run again (it only adds what is missing, and never
# overwrites /etc/sarco-edge/edge.toml once written).
#
#   sudo jetson/setup.sh --site clinic-a --device edge-01 --trusted-key release.pub \
#        [--broker mqtts://dashboard.example.org:8883 --mqtt-password-file pw.txt \
#         --ca-file ca.crt] [--package model-v1.sarco-bundle.tar] [--python python3.10]
#
#   jetson/setup.sh --check-only      check the JetPack / L4T release and stop
#   jetson/setup.sh --print-config    print the edge.toml it would write and stop
#
# Supported: JetPack 6.1/6.2 (L4T R36.4, TensorRT 10.3, CUDA 12.6, Python 3.10), JetPack 6.0
# (L4T R36.2-36.3, TensorRT 8.6, CUDA 12.2) and JetPack 5.1.x (L4T R35.2-35.6, TensorRT 8.5,
# CUDA 11.4; needs a Python >= 3.10 with TensorRT bindings, see docs/deployment.md). Anything
# else is refused with the reason.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly RELEASE_FILE="${SARCO_L4T_RELEASE_FILE:-/etc/nv_tegra_release}"
readonly PREFIX=/opt/sarco-edge
readonly VENV="$PREFIX/venv"
readonly CONFIG_DIR=/etc/sarco-edge
readonly DATA_DIR=/var/lib/sarco-edge
readonly SERVICE_USER=sarco-edge

site="site"
device="edge-01"
broker=""
mqtt_password_file=""
ca_file=""
trusted_key=""
package=""
python="python3"
mode="install"

die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --site) site="${2:?--site needs a value}"; shift 2 ;;
      --device) device="${2:?--device needs a value}"; shift 2 ;;
      --broker) broker="${2:?--broker needs a value}"; shift 2 ;;
      --mqtt-password-file) mqtt_password_file="${2:?}"; shift 2 ;;
      --ca-file) ca_file="${2:?}"; shift 2 ;;
      --trusted-key) trusted_key="${2:?}"; shift 2 ;;
      --package) package="${2:?}"; shift 2 ;;
      --python) python="${2:?}"; shift 2 ;;
      --check-only) mode="check"; shift ;;
      --print-config) mode="print-config"; shift ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown option $1 (see --help)" ;;
    esac
  done
  local name
  for name in "$site" "$device"; do
    [[ "$name" =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]] \
      || die "site/device '$name': use lower-case letters, digits, '-' and '_' (an MQTT topic part)"
  done
}

# Sets L4T_MAJOR, L4T_REVISION, JETPACK, TRT_VERSION (major.minor) and CUDA_VERSION from the
# L4T release file, or refuses. NVIDIA's JetPack release notes:
#   R35.2-R35.6 = JetPack 5.1-5.1.4: TensorRT 8.5, CUDA 11.4
#   R36.2-R36.3 = JetPack 6.0 (DP, GA): TensorRT 8.6, CUDA 12.2
#   R36.4.x     = JetPack 6.1, 6.2, 6.2.1: TensorRT 10.3, CUDA 12.6
detect_release() {
  [ -r "$RELEASE_FILE" ] || die "$RELEASE_FILE not found: this is not a Jetson with JetPack (L4T). Supported: JetPack 6.x and 5.1.x"
  local line
  line="$(head -n 1 "$RELEASE_FILE")"
  if [[ "$line" =~ ^#\ R([0-9]+)\ \(release\),\ REVISION:\ ([0-9]+)(\.[0-9]+)* ]]; then
    L4T_MAJOR="${BASH_REMATCH[1]}"
    L4T_REVISION="${BASH_REMATCH[2]}${BASH_REMATCH[3]}"
  else
    die "$RELEASE_FILE: unrecognised first line '$line'"
  fi
  local minor="${L4T_REVISION%%.*}"
  case "$L4T_MAJOR.$minor" in
    36.4) JETPACK="6.1/6.2"; TRT_VERSION="10.3"; CUDA_VERSION="12.6" ;;
    36.2|36.3) JETPACK="6.0"; TRT_VERSION="8.6"; CUDA_VERSION="12.2" ;;
    35.2|35.3|35.4|35.5|35.6) JETPACK="5.1.x"; TRT_VERSION="8.5"; CUDA_VERSION="11.4" ;;
    35.0|35.1) die "L4T R35.$L4T_REVISION is JetPack 5.0.x (TensorRT 8.4): unsupported; upgrade to JetPack 5.1.x or, better, 6.x" ;;
    *) die "L4T R$L4T_MAJOR.$L4T_REVISION: unsupported JetPack; supported: JetPack 6.0-6.2 (L4T R36.2-R36.4) and 5.1.x (L4T R35.2-R35.6)" ;;
  esac
  # cuda-python of JetPack's CUDA; none was published for 11.4 (PyPI starts at 11.6), so JetPack
  # 5.1 takes 11.8 and the smoke test below says whether its driver accepts it
  CUDA_PYTHON="cuda-python==$CUDA_VERSION.*"
  if [ "$CUDA_VERSION" = "11.4" ]; then CUDA_PYTHON="cuda-python==11.8.*"; fi
  say "L4T R$L4T_MAJOR.$L4T_REVISION: JetPack $JETPACK, TensorRT $TRT_VERSION, CUDA $CUDA_VERSION expected ($CUDA_PYTHON)"
}

render_config() {
  local username="" password_path="" ca_path=""
  if [ -n "$broker" ]; then username="$device"; fi
  if [ -n "$mqtt_password_file" ]; then password_path="$CONFIG_DIR/mqtt-password"; fi
  if [ -n "$ca_file" ]; then ca_path="$CONFIG_DIR/ca.crt"; fi
  cat <<TOML
# sarco-edge device config (docs/edge.md lists every key). Written once by jetson/setup.sh;
# edit freely, setup.sh never overwrites it.
[device]
site = "$site"
device = "$device"
data_dir = "$DATA_DIR"

[model]
# the signed bundle the last update installed, and the engine its self-test chose
bundle = "$DATA_DIR/bundles/current/bundle"
backend = "auto"
engine = "$DATA_DIR/bundles/current/bundle.engines/selected.engine"

[capture]
source = "/dev/video0"
fourcc = "MJPG"

[measure]
# the aponeurosis model this setup installed (muscle thickness, pennation, echo intensity)
model = "$PREFIX/models/aponeurosis"

[display]
headless = false
fullscreen = true

[mqtt]
broker = "$broker"
username = "$username"
password_file = "$password_path"
ca_file = "$ca_path"
TOML
}

check_python() {
  command -v "$python" >/dev/null || die "$python not found"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$("$python" -V 2>&1) is older than 3.10, which sarco needs. JetPack 5.1.x ships Python 3.8: install Python 3.10 with TensorRT 8.5 bindings built for it and pass --python (docs/deployment.md), or move to JetPack 6"
  local version
  version="$("$python" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null)" \
    || die "$python cannot import tensorrt: install JetPack's TensorRT Python bindings (sudo apt-get install python3-libnvinfer) for this Python"
  [[ "$version" == "$TRT_VERSION".* ]] \
    || die "TensorRT $version found, but JetPack $JETPACK comes with $TRT_VERSION: a mixed installation; reinstall JetPack's TensorRT"
  say "TensorRT $version for $("$python" -V 2>&1)"
  if ! "$python" -c 'import cv2, sys; sys.exit("GStreamer:                   YES" not in cv2.getBuildInformation())' 2>/dev/null; then
    say "warning: the system OpenCV has no GStreamer (or is missing): capture works through V4L2 only"
  fi
}

install_packages() {
  local missing=()
  local pkg
  for pkg in python3-venv python3-pip v4l-utils logrotate x11-xserver-utils; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

create_user_and_folders() {
  if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    say "creating the service user $SERVICE_USER"
    useradd --system --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
  fi
  local group
  for group in video render; do  # video: the capture card and the GPU (/dev/nvhost-*, /dev/nvmap)
    if getent group "$group" >/dev/null; then usermod -aG "$group" "$SERVICE_USER"; fi
  done
  install -d -o root -g "$SERVICE_USER" -m 0750 "$CONFIG_DIR"
  install -d -o root -g root -m 0755 "$CONFIG_DIR/trusted_keys"
  install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$DATA_DIR"
  install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0755 "$DATA_DIR/bundles" "$DATA_DIR/update"
  install -d -o root -g root -m 0755 "$PREFIX" "$PREFIX/docs"
}

install_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV (it sees the system's TensorRT and OpenCV)"
    "$python" -m venv --system-site-packages "$VENV"
  fi
  # cuda-python of JetPack's own CUDA: newer releases bring a newer CUDA runtime than the
  # JetPack driver supports, and every CUDA call then fails (cudaErrorInsufficientDriver)
  say "installing sarco[edge] and $CUDA_PYTHON"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # numpy<2: JetPack's OpenCV and TensorRT bindings are built against numpy 1.x
  "$VENV/bin/python" -m pip install --quiet "${REPO_DIR}[edge]" "$CUDA_PYTHON" "numpy>=1.26,<2" \
    'tomli>=2; python_version < "3.11"'
  # PyPI's OpenCV has no GStreamer and would hide JetPack's: remove it from the venv
  "$VENV/bin/python" -m pip uninstall --quiet --yes opencv-python opencv-python-headless 2>/dev/null || true
  "$VENV/bin/python" -c 'import cv2, tensorrt, edge_app.deploy.cli' \
    || die "the venv cannot import cv2, tensorrt and edge_app; see the messages above"
  # the CUDA smoke test: versions of driver and runtime, devices; names a mismatch exactly
  "$VENV/bin/python" -m edge_app.inference.cuda_runtime \
    || die "CUDA does not run from the venv (the cause is above); TensorRT would be silently unused"
  install -m 0644 "$REPO_DIR/docs/deployment.md" "$PREFIX/docs/deployment.md"
  # the measurement model ships in the repository, not in the Python package
  install -d -o root -g root -m 0755 "$PREFIX/models/aponeurosis"
  install -m 0644 "$REPO_DIR"/models/aponeurosis/* "$PREFIX/models/aponeurosis/"
}

install_config() {
  if [ -n "$trusted_key" ]; then
    [ -r "$trusted_key" ] || die "trusted key $trusted_key not readable"
    install -o root -g root -m 0644 "$trusted_key" "$CONFIG_DIR/trusted_keys/$(basename "$trusted_key")"
  fi
  [ -n "$(ls -A "$CONFIG_DIR/trusted_keys")" ] \
    || say "warning: no trusted key in $CONFIG_DIR/trusted_keys: every update will be refused (give --trusted-key)"
  if [ -n "$mqtt_password_file" ]; then
    install -o root -g "$SERVICE_USER" -m 0640 "$mqtt_password_file" "$CONFIG_DIR/mqtt-password"
  fi
  if [ -n "$ca_file" ]; then
    install -o root -g root -m 0644 "$ca_file" "$CONFIG_DIR/ca.crt"
  fi
  if [ ! -e "$CONFIG_DIR/edge.toml" ]; then
    say "writing $CONFIG_DIR/edge.toml"
    render_config > "$CONFIG_DIR/edge.toml.tmp"
    chown root:"$SERVICE_USER" "$CONFIG_DIR/edge.toml.tmp"
    chmod 0640 "$CONFIG_DIR/edge.toml.tmp"
    mv "$CONFIG_DIR/edge.toml.tmp" "$CONFIG_DIR/edge.toml"
  else
    say "keeping the existing $CONFIG_DIR/edge.toml"
  fi
}

install_system_files() {
  say "installing the systemd units, udev rule, journald and logrotate settings"
  install -m 0644 "$REPO_DIR/jetson/sarco-edge.service" /etc/systemd/system/sarco-edge.service
  install -m 0644 "$REPO_DIR/jetson/sarco-edge-update.service" /etc/systemd/system/sarco-edge-update.service
  install -m 0644 "$REPO_DIR/jetson/sarco-edge-update.path" /etc/systemd/system/sarco-edge-update.path
  install -m 0644 "$REPO_DIR/jetson/99-sarco-capture.rules" /etc/udev/rules.d/99-sarco-capture.rules
  install -d -m 0755 /etc/systemd/journald.conf.d
  install -m 0644 "$REPO_DIR/jetson/journald-sarco-edge.conf" /etc/systemd/journald.conf.d/sarco-edge.conf
  install -m 0644 "$REPO_DIR/jetson/logrotate-sarco-edge" /etc/logrotate.d/sarco-edge
  # the desktop session lets the service user draw on the local screen
  install -d -m 0755 /etc/xdg/autostart
  cat > /etc/xdg/autostart/sarco-edge-display.desktop <<DESKTOP
[Desktop Entry]
Type=Application
Name=sarco-edge display access
Exec=xhost +SI:localuser:$SERVICE_USER
NoDisplay=true
DESKTOP
  udevadm control --reload-rules && udevadm trigger --subsystem-match=video4linux
  systemctl daemon-reload
  systemctl restart systemd-journald
  systemctl enable sarco-edge.service sarco-edge-update.path
  systemctl start sarco-edge-update.path
}

install_first_model() {
  if [ -n "$package" ]; then
    say "installing the model package $package (builds TensorRT engines: minutes)"
    "$VENV/bin/sarco-edge" update "$(realpath "$package")" --config "$CONFIG_DIR/edge.toml" --no-restart \
      || die "the model package was not installed (see above); fix it and run setup.sh again"
  fi
  # everything under the data folder is the service's, engines built by root above included
  chown -R "$SERVICE_USER":"$SERVICE_USER" "$DATA_DIR"
  if [ -e "$DATA_DIR/bundles/current" ]; then
    systemctl restart sarco-edge.service
    say "sarco-edge.service started; check it with: sudo systemctl stop sarco-edge && sudo -u $SERVICE_USER $VENV/bin/sarco-edge selftest --config $CONFIG_DIR/edge.toml --report selftest-report.json (docs/deployment.md, First device)"
  else
    say "no model installed yet: run setup.sh again with --package, or sarco-edge update PACKAGE"
  fi
}

main() {
  parse_args "$@"
  case "$mode" in
    print-config) render_config; exit 0 ;;
    check) detect_release; exit 0 ;;
  esac
  [ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
  detect_release
  check_python
  install_packages
  create_user_and_folders
  install_venv
  install_config
  install_system_files
  install_first_model
  say "power mode now: $(nvpmodel -q 2>/dev/null | head -n 1 || echo unknown) (docs/deployment.md: nvpmodel and jetson_clocks)"
  say "done"
}

main "$@"
