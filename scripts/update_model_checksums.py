"""Regenerate src/napari_geostyle/models/checksums.json from the shipped model files.

Run after replacing any models/geonet_*.pt (a retrained network); the test suite fails while
the JSON and the files disagree, and loading a shipped model whose hash differs is refused.

    python scripts/update_model_checksums.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "src" / "napari_geostyle" / "models"
PATTERN = "geonet_*.pt"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(models_dir: Path = MODELS_DIR) -> dict[str, str]:
    return {path.name: sha256(path) for path in sorted(models_dir.glob(PATTERN))}


def main() -> int:
    table = checksums()
    if not table:
        print(f"no {PATTERN} files in {MODELS_DIR}", file=sys.stderr)
        return 1
    target = MODELS_DIR / "checksums.json"
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(target)
    for name, digest in table.items():
        print(f"{digest}  {name}")
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
