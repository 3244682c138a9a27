#!/usr/bin/env bash
# One entry point for a fresh Debian machine (run as root, or with sudo available):
#   bash scripts/dev.sh demo   install everything, then open napari with the sample data and GeoStyle
#   bash scripts/dev.sh test   install everything, then run the test suite
# Installing is idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

install_system_packages() {
  # Xvfb + Mesa give napari's OpenGL canvas a display; the xcb libraries are what Qt's xcb
  # platform plugin loads.
  local packages=(xvfb xauth libgl1 libgl1-mesa-dri libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libx11-xcb1
    libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
    libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1)
  local missing=()
  for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

install_python_packages() {
  # torch first and explicitly: on these machines pip takes this CUDA build from local disk
  # (it also runs on the CPU); elsewhere pip picks the right wheel for the platform.
  if ! "$PYTHON" -c "import torch, torchvision" >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" \
      || "$PYTHON" -m pip install -q torch torchvision
  fi
  "$PYTHON" -m pip install -q -e ".[testing]"
}

command=${1:-}
shift || true
case "$command" in
  demo)
    install_system_packages
    install_python_packages
    if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
      echo "No display found: running the demo headless under Xvfb; it saves a screenshot." >&2
      exec xvfb-run -a -s "-screen 0 1600x1000x24" napari-geostyle demo --screenshot geostyle-demo.png "$@"
    fi
    exec napari-geostyle demo "$@"
    ;;
  test)
    install_system_packages
    install_python_packages
    # pytest-xvfb starts a virtual X server for the napari/Qt tests.
    exec "$PYTHON" -m pytest -q "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test [extra arguments]" >&2
    exit 2
    ;;
esac
