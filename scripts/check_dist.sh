#!/usr/bin/env bash
# Release checks (slow: minutes; not part of the test suite). From the repository root:
#   bash scripts/check_dist.sh
# 1. builds the sdist and the wheel (python -m build; the version comes from the git tag),
# 2. twine check (metadata and README render on PyPI), check-manifest (sdist vs git),
# 3. checks the wheel's contents (models and licence in, validation PNGs out),
# 4. installs the wheel into a fresh venv and runs `napari-geostyle --version`,
# 5. runs a fast subset of the tests from the unpacked sdist against that install,
# 6. lints the GitHub workflows with actionlint (with shellcheck) and zizmor (offline),
# 7. type-checks src/ with mypy (the [tool.mypy] settings in pyproject.toml).
# Needs the `dev` extra (pip install -e ".[dev]"): build, twine, check-manifest, setuptools-scm,
# actionlint, shellcheck, zizmor, mypy.
# PYTHON picks the interpreter (default: python3); DIST the output folder (default: dist).
# The fresh venv reuses PYTHON's torch and torchvision (and only what they need) when PYTHON has
# them: they are gigabytes, and the check is about this wheel. Every other dependency is installed
# from the wheel's metadata. FRESH_TORCH=1 installs torch into the venv as well.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
DIST=${DIST:-dist}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n== %s  [%ds]\n' "$*" "$SECONDS"; }

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
if [ "${FRESH_TORCH:-0}" != 1 ] && "$PYTHON" -c "import torch, torchvision" >/dev/null 2>&1; then
  # Link torch, torchvision and their own requirements (nvidia libraries, triton, sympy, ...)
  # from PYTHON's environment into a folder that a .pth file puts on the venv's path; pip then
  # counts them as installed and installs the wheel's other dependencies itself.
  "$PYTHON" - "$WORK/reused" <<'PY'
import importlib.metadata as metadata
import os
import sys

from packaging.requirements import Requirement

target = sys.argv[1]
os.makedirs(target)
seen, todo, linked = set(), [("torch", ()), ("torchvision", ())], set()
while todo:
    name, extras = todo.pop()
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:  # an optional requirement that is not installed
        continue
    key = (dist.metadata["Name"].lower(), tuple(sorted(extras)))
    if key in seen:
        continue
    seen.add(key)
    for line in dist.requires or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in ("", *extras)):
            todo.append((requirement.name, tuple(requirement.extras)))
    site = dist.locate_file("")
    for path in dist.files or []:
        top = path.parts[0]
        if top in ("..", "__pycache__") or top in linked:
            continue
        linked.add(top)
        if not os.path.lexists(os.path.join(target, top)):
            os.symlink(os.path.join(site, top), os.path.join(target, top))
print(f"reusing {len({name for name, _ in seen})} installed distributions (torch and what it needs)")
PY
  site_packages=$("$VENV_PY" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
  echo "$WORK/reused" > "$site_packages/reused-torch.pth"
else
  # torch first, as scripts/dev.sh does: the pinned build where this machine serves it
  "$VENV_PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" \
    || "$VENV_PY" -m pip install -q torch torchvision
fi
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
# run from the unpacked folder: the tests import the installed wheel, not a source tree. A
# subset: the entry point's cheap import, the shipped models (package data, checksums) and the
# transform maths; the full suite runs from the git checkout.
(cd "$src_dir" && GEOSTYLE_OFFLINE=1 OMP_NUM_THREADS=1 "$VENV_PY" -m pytest -q -p no:cacheprovider \
  tests/test_package.py::test_import_is_cheap tests/core/test_geonet.py \
  tests/core/test_transforms.py)

step "GitHub workflows: actionlint and zizmor"
# .github/workflows runs on GitHub only; these check it here. The linters are the dev extra's,
# found next to PYTHON (its scripts folder first on PATH, so actionlint finds shellcheck there).
scripts=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_path('scripts'))")
PATH="$scripts:$PATH" actionlint -color=false .github/workflows/*.yml
PATH="$scripts:$PATH" zizmor --offline --no-progress .github/workflows
echo "actionlint and zizmor: no findings"

step "type check: mypy"
# basic mode on src/napari_geostyle (pyproject.toml's [tool.mypy]); under a minute from cold,
# seconds with its cache (.mypy_cache)
"$PYTHON" -m mypy

step "all release checks passed ($expected)"
