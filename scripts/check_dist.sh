#!/usr/bin/env bash
# Release checks (slow: minutes; not part of the test suite). From the repository root:
#   bash scripts/check_dist.sh
# 1. builds the sdist and the wheel (python -m build; the version comes from the git tag),
# 2. twine check (metadata and README render on PyPI), check-manifest (sdist vs git),
# 3. checks the wheel's contents (models and licence in, validation PNGs out),
# 4. installs the wheel into a fresh venv and runs `napari-geostyle --version`,
# 5. runs a fast subset of the tests from the unpacked sdist against that install.
# Needs the `dev` extra (pip install -e ".[dev]"): build, twine, check-manifest, setuptools-scm.
# PYTHON picks the interpreter (default: python3); DIST the output folder (default: dist).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DIST=${DIST:-dist}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "build sdist and wheel into $DIST/"
rm -rf "$DIST"
"$PYTHON" -m build --outdir "$DIST" .
sdist=$(ls "$DIST"/*.tar.gz)
wheel=$(ls "$DIST"/*.whl)
echo "sdist: $sdist"
echo "wheel: $wheel"

step "twine check"
"$PYTHON" -m twine check --strict "$DIST"/*

step "check-manifest (the sdist holds what git tracks)"
"$PYTHON" -m check_manifest --no-build-isolation .

step "wheel contents"
"$PYTHON" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
def has(suffix):
    return any(n.endswith(suffix) for n in names)
problems = []
for needed in ("napari_geostyle/napari.yaml", "models/geonet_affine_embedded.pt",
               "models/geonet_tps_embedded.pt", "models/checksums.json", "models/MODEL_CARD.md",
               "licenses/LICENSE"):
    if not has(needed):
        problems.append(f"missing {needed}")
for name in names:
    if name.endswith(".png") or name.startswith(("benchmarks/", "docs/", "tests/")):
        problems.append(f"should not ship {name}")
print(f"{len(names)} files in the wheel")
if problems:
    sys.exit("wheel: " + "; ".join(problems))
PY

step "install the wheel into a fresh venv"
"$PYTHON" -m venv "$WORK/venv"
VENV_PY="$WORK/venv/bin/python"
"$VENV_PY" -m pip install -q --upgrade pip
# torch first, as scripts/dev.sh does: the pinned build where this machine serves it
"$VENV_PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" \
  || "$VENV_PY" -m pip install -q torch torchvision
"$VENV_PY" -m pip install -q "$wheel"
version=$("$WORK/venv/bin/napari-geostyle" --version)
echo "$version"
expected=$(basename "$wheel" | cut -d- -f2)
case "$version" in
  *" $expected") ;;
  *) echo "napari-geostyle --version says '$version'; the wheel is $expected" >&2; exit 1 ;;
esac

step "fast tests from the unpacked sdist, against the installed wheel"
tar -xzf "$sdist" -C "$WORK"
src_dir=$(ls -d "$WORK"/napari_geostyle-*/)
"$VENV_PY" -m pip install -q "pytest>=7" "hypothesis>=6.80"
for needed in tests/conftest.py tox.ini LICENSE CHANGELOG.md CITATION.cff; do
  [ -e "$src_dir/$needed" ] || { echo "the sdist lacks $needed" >&2; exit 1; }
done
# run from the unpacked folder: the tests import the installed wheel, not a source tree
(cd "$src_dir" && GEOSTYLE_OFFLINE=1 OMP_NUM_THREADS=1 "$VENV_PY" -m pytest -q -p no:cacheprovider \
  tests/test_package.py::test_import_is_cheap tests/test_transforms.py tests/test_warp.py \
  tests/test_landmarks.py tests/test_images.py tests/test_geonet.py)

step "all release checks passed ($expected)"
