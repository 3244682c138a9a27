"""Fingerprints of the package's outputs on a fixed set, to show a refactor changes no byte.

Runs on the CPU with one torch thread (so float sums are ordered the same way every time) and
prints one SHA-256 per output: estimates (affine/TPS, network and refine, with and without hints),
warped images, a texture transfer on each backbone that needs no download, the one-image
pipeline, a stack, a batch run's outputs and manifest entries, and the CLI's written files.

    python scripts/output_fingerprint.py --save before.json      # on the old commit
    python scripts/output_fingerprint.py --against before.json   # on the new one: exit 1 on a change

The fingerprints hold only on one machine and torch build: compare runs made on the same one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _digest(*arrays) -> str:
    sha = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(np.asarray(array))
        sha.update(str((array.dtype.str, array.shape)).encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def _transform_digest(transform) -> str:
    from napari_geostyle.core.transforms import ComposedTransform

    parts = transform.transforms if isinstance(transform, ComposedTransform) else [transform]
    arrays = []
    for part in parts:
        for name in ("matrix", "input_points", "output_points"):
            if hasattr(part, name):
                arrays.append(getattr(part, name))
    grid = np.stack(np.meshgrid(np.arange(0, 64, 7.0), np.arange(0, 64, 5.0)), -1).reshape(-1, 2)
    arrays.append(transform.map_points(grid))
    return _digest(*arrays)


def _images():
    from skimage import data, transform

    content = transform.resize(data.astronaut()[30:230, 140:340], (64, 64), anti_aliasing=True)
    content = (content * 255).astype(np.uint8)
    rotated = transform.rotate(content, 12, mode="reflect", preserve_range=True)
    style = rotated[4:60, 2:62].astype(np.uint8)  # another shape: the output takes the content's
    texture = (transform.resize(data.brick(), (48, 48)) * 255).astype(np.uint8)
    return content, style, texture


def fingerprints() -> dict:
    import torch

    import napari_geostyle as geostyle

    torch.set_num_threads(1)
    content, style, texture = _images()
    hints = (np.array([[20.0, 22.0], [20.0, 42.0], [46.0, 32.0]]),
             np.array([[18.0, 20.0], [22.0, 40.0], [44.0, 26.0]]))  # fmt: skip
    out = {}
    for model in ("affine", "tps", "affine+tps"):
        for method in ("network", "refine"):
            tf = geostyle.estimate_warp(content, style, model=model, method=method, device="cpu")
            out[f"estimate {model} {method}"] = _transform_digest(tf)
            if model != "tps":
                hinted = geostyle.estimate_warp(
                    content, style, model=model, method=method, device="cpu", hints=hints
                )
                out[f"estimate {model} {method} hints"] = _transform_digest(hinted)
    tfs = geostyle.estimate_warps([content, style], [style, content], device="cpu")
    out["estimate_warps"] = _digest(*[np.asarray(t.map_points(hints[0])) for t in tfs])
    out["warp_image"] = _digest(geostyle.warp_image(content, tf, device="cpu"))
    for backbone in ("efficientnet", "random"):
        result = geostyle.transfer_texture(
            content, texture, size=32, levels=2, iterations=3, backbone=backbone, device="cpu"
        )
        out[f"texture {backbone}"] = _digest(result)
    result = geostyle.geometric_style_transfer(
        content, geometry_style=style, texture_style=texture, size=32, levels=2, iterations=3,
        device="cpu",
    )  # fmt: skip
    out["pipeline"] = _digest(result.image, result.warped)
    frames = np.stack([content, np.roll(content, 2, axis=1)])
    steps = list(
        geostyle.iter_stack_transfer(
            frames, texture, geometry_style=style, size=32, levels=1, iterations=2, device="cpu"
        )
    )
    out["stack"] = _digest(steps[-1].frames if hasattr(steps[-1], "frames") else steps[-1].image)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        from skimage.io import imsave

        for name, image in (("a.png", content), ("b.png", np.flipud(content))):
            imsave(folder / name, image, check_contrast=False)
        imsave(folder / "style.png", style, check_contrast=False)
        imsave(folder / "texture.png", texture, check_contrast=False)
        run = geostyle.batch_geometric_style_transfer(
            [folder / "a.png", folder / "b.png"], folder / "out",
            geometry_style=folder / "style.png", texture_style=folder / "texture.png",
            scheduler="local", workers=1, processes=False, size=32, levels=1, iterations=2, device="cpu",
        )  # fmt: skip
        list(run)
        written = sorted(p for p in (folder / "out").rglob("*") if p.is_file())
        for path in written:
            if path.suffix in {".png", ".tif", ".tiff", ".npy"}:
                out[f"batch {path.relative_to(folder / 'out')}"] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
        manifest = [p for p in written if p.name == "manifest.json"]
        for path in manifest:
            text = path.read_text()
            try:
                entries = json.loads(text)
            except json.JSONDecodeError:  # a journal: one JSON object a line
                entries = [json.loads(line) for line in text.splitlines() if line.strip()]
            out[f"batch {path.name}"] = _digest(
                np.frombuffer(json.dumps(_stable(entries), sort_keys=True).encode(), np.uint8)
            )
        env = dict(os.environ, OMP_NUM_THREADS="1")
        cli = [
            sys.executable,
            "-c",
            "import sys; from napari_geostyle.cli import main; sys.exit(main(sys.argv[1:]))",
        ]
        subprocess.run(
            [*cli, "warp", str(folder / "a.png"), "--geometry", str(folder / "style.png"), "-o",
             str(folder / "warped.png"), "--device", "cpu"],
            check=True, env=env, capture_output=True,
        )  # fmt: skip
        out["cli warp"] = hashlib.sha256((folder / "warped.png").read_bytes()).hexdigest()
    return out


# manifest fields that differ between two identical runs
_VOLATILE = {"seconds", "started", "finished", "time", "created", "duration", "host", "pid",
             "elapsed", "output_dir", "folder", "when", "updated", "worker", "workers", "timings"}  # fmt: skip


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE and "://" not in k}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str) and ("/tmp" in value or os.sep + "tmp" in value):
        return Path(value).name
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="write the fingerprints to this JSON file")
    parser.add_argument("--against", type=Path, help="compare with a saved JSON file")
    args = parser.parse_args(argv)
    current = fingerprints()
    for name, value in current.items():
        print(f"{value[:16]}  {name}")
    if args.save:
        args.save.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    if args.against:
        saved = json.loads(args.against.read_text())
        changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
        for name in changed:
            print(f"CHANGED: {name}: {saved.get(name, '-')[:16]} -> {current.get(name, '-')[:16]}")
        print(f"{len(current) - len(changed)} of {len(saved.keys() | current.keys())} the same")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
