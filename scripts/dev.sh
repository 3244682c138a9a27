#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine (run as root, or with sudo available):
#   bash scripts/dev.sh demo   install everything, then open napari with the sample data and GeoStyle
#   bash scripts/dev.sh test   install everything, then run the test suite
# Python packages go into a project virtual environment, .venv (created here; the system Python
# of Debian 12 refuses pip installs, PEP 668). Use it afterwards with `source .venv/bin/activate`.
# Installing is idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}  # the interpreter the venv is made from
VENV=${VENV:-.venv}
VENV_PYTHON="$VENV/bin/python"
SYSTEM_PACKAGES=(xvfb xauth libgl1 libgl1-mesa-dri libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3
  libx11-xcb1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1)

other_platform_help() {
  # This script drives apt-get; elsewhere the same steps are three commands.
  cat >&2 <<HELP
scripts/dev.sh sets up Debian/Ubuntu machines (it installs system libraries with apt-get).
On $1, do the same by hand from the repository folder, with Python 3.10-3.13:
HELP
  case "$1" in
    Windows)
      cat >&2 <<'HELP'
  py -m venv .venv
  .venv\Scripts\activate
  pip install -e ".[testing]"
  pytest -q                  (tests)      or      napari-geostyle demo      (the demo)
For an NVIDIA GPU, install the CUDA build of torch first (https://pytorch.org/get-started/locally/).
HELP
      ;;
    *)
      cat >&2 <<'HELP'
  python3 -m venv .venv
  source .venv/bin/activate
  pip install -e ".[testing]"
  pytest -q                  (tests)      or      napari-geostyle demo      (the demo)
HELP
      ;;
  esac
}

case "$(uname -s)" in
  Linux) ;;
  Darwin) other_platform_help macOS; exit 2 ;;
  MINGW* | MSYS* | CYGWIN* | Windows_NT) other_platform_help Windows; exit 2 ;;
  *) other_platform_help "$(uname -s)"; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
HAVE_APT=0
command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 && HAVE_APT=1

apt_install() {
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then
    echo "error: need root (or sudo) to install system packages: $*" >&2
    exit 2
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

install_system_packages() {
  # Xvfb + Mesa give napari's OpenGL canvas a display; the xcb libraries are what Qt's xcb
  # platform plugin loads; python3-venv makes the project venv.
  if [ "$HAVE_APT" = 0 ]; then
    echo "warning: no apt-get here; make sure Xvfb, Mesa (libGL, libEGL) and Qt's xcb" \
      "libraries are installed (Debian names: ${SYSTEM_PACKAGES[*]})." >&2
    return
  fi
  local packages=("${SYSTEM_PACKAGES[@]}")
  command -v "$PYTHON" >/dev/null 2>&1 || packages+=(python3)
  if ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
    packages+=(python3-venv)
  fi
  local missing=()
  for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
}

make_venv() {
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found; install Python 3.10-3.13 or set PYTHON=/path/to/python3" >&2
    exit 2
  fi
  # a venv made before python3-venv was there has no pip: start it again
  if [ -x "$VENV_PYTHON" ] && ! "$VENV_PYTHON" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV_PYTHON" ]; then
    echo "Creating the project virtual environment $VENV (from $("$PYTHON" --version 2>&1))." >&2
    "$PYTHON" -m venv "$VENV"
  fi
}

install_python_packages() {
  make_venv
  # torch first and explicitly: on these machines pip takes this CUDA build from local disk
  # (it also runs on the CPU); elsewhere pip picks the right wheel for the platform.
  if ! "$VENV_PYTHON" -c "import torch, torchvision" >/dev/null 2>&1; then
    "$VENV_PYTHON" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" \
      || "$VENV_PYTHON" -m pip install -q torch torchvision
  fi
  "$VENV_PYTHON" -m pip install -q -e ".[testing]"
}

command=${1:-}
shift || true
case "$command" in
  demo)
    install_system_packages
    install_python_packages
    if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
      echo "No display found: running the demo headless under Xvfb; it saves a screenshot." >&2
      exec xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/napari-geostyle" demo \
        --screenshot geostyle-demo.png --overwrite "$@"
    fi
    exec "$VENV/bin/napari-geostyle" demo "$@"
    ;;
  test)
    install_system_packages
    install_python_packages
    # lint first (seconds): the configuration is in pyproject.toml
    "$VENV_PYTHON" -m ruff check src tests
    "$VENV_PYTHON" -m ruff format --check src tests
    # pytest-xvfb starts a virtual X server for the napari/Qt tests.
    exec "$VENV_PYTHON" -m pytest -q "$@"
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test [extra arguments]" >&2
    echo "(installs into the project venv $VENV; afterwards: source $VENV/bin/activate)" >&2
    exit 2
    ;;
esac
