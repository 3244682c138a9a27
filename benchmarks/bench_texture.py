"""Texture-transfer speed and quality benchmark, in one run.

For each size it measures
  (a) the VGG-19 trunk's forward + backward time per iteration (bf16 and fp32): the floor,
  (b) our per-iteration time (at the output size) and total time for the default schedule,
  (c) a plain fp32 reference of the same schedule, written straightforwardly below
      (torch.optim.LBFGS, NCHW, fp32, torch's own Gram code),
  (d) quality: the default schedule's final loss against four times the iterations,
and prints a markdown table and writes ``texture_benchmark.json`` / ``.md`` to ``--out``.

    python benchmarks/bench_texture.py --device auto --sizes 512 1024 --out bench-out
    python benchmarks/bench_texture.py --tiny --out /tmp/bench   # CPU smoke run, < 2 minutes

Targets on one H100 (issue 3): per-iteration <= 1.3x trunk bf16 fwd+bwd; default schedule at
512 px < 3 s and at 1024 px < 8 s; >= 4x faster than the fp32 reference; final loss within 5%
of 4x iterations.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
from _common import Timer, add_repeat_argument, environment, write_json

from napari_geostyle.core import features, images, texture
from napari_geostyle.core.devices import resolve_device
from napari_geostyle.core.weights import describe_vgg19_weights

TAPS = (*features.STYLE_LAYERS, features.CONTENT_LAYER)


def benchmark_images(seed: int = 0):
    """Content and style: scikit-image's astronaut and coffee, else procedural stand-ins."""
    try:
        from skimage import data

        return data.astronaut(), data.coffee(), "skimage astronaut / coffee"
    except Exception:  # a bare GPU machine may lack scikit-image's data
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:512, 0:512] / 512.0
        content = np.stack([xx, yy, 0.5 + 0.5 * np.sin(8 * xx) * np.cos(6 * yy)], -1)
        content[(xx - 0.5) ** 2 + (yy - 0.45) ** 2 < 0.06] *= 0.3
        stripes = 0.5 + 0.5 * np.sin(40 * (xx + 0.3 * yy))
        style = np.stack([stripes, 0.4 * stripes, 0.2 + 0.1 * rng.random((512, 512))], -1)
        return content.astype(np.float32), style.astype(np.float32), "procedural"


# --------------------------------------------------------------------------- (a) trunk floor
def trunk_time(trunk, device, size, bf16: bool, reps: int) -> float:
    import torch

    x = torch.rand(1, 3, size, size, device=device, requires_grad=True)

    def once():
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else _null()
        with ctx:
            out = trunk(x, taps=TAPS)
        loss = sum(v.float().mean() for v in out.values())
        (grad,) = torch.autograd.grad(loss, x)
        return grad

    for _ in range(2):
        once()
    with Timer(device) as t:
        for _ in range(reps):
            once()
    return t.seconds / reps


def _null():
    import contextlib

    return contextlib.nullcontext()


# --------------------------------------------------------------------------- (b) ours
def ours(content, style, size, device, backbone, iterations, **extra):
    """(seconds, final loss, image) of one run of our engine (trunk already cached)."""
    final = None
    with Timer(device) as t:
        for step in texture.iter_texture_transfer(
            content, style, size=size, iterations=iterations, backbone=backbone, device=device,
            preview_every=0, **extra,
        ):  # fmt: skip
            if step.done:
                final = step
    return t.seconds, final.loss, final.image


def ours_per_iteration(content, style, size, device, backbone, n_small, n_large):
    """Seconds per iteration at the output size, set-up cost removed by differencing."""
    small, _, _ = ours(content, style, size, device, backbone, n_small, levels=1)
    large, _, _ = ours(content, style, size, device, backbone, n_large, levels=1)
    return (large - small) / (n_large - n_small)


# --------------------------------------------------------------------------- (c) reference
def reference(content, style, size, device, trunk, schedule) -> tuple[float, float]:
    """Plain fp32 Gatys, same pyramid, same losses: (seconds, final loss)."""
    import torch
    from torch import nn

    layers = []
    for layer in trunk.features:  # same weights, rebuilt as a plain fp32 NCHW sequential
        if isinstance(layer, nn.Conv2d):
            conv = nn.Conv2d(layer.in_channels, layer.out_channels, 3, padding=1,
                             padding_mode=layer.padding_mode)  # fmt: skip
            conv.load_state_dict(layer.state_dict())
            layers.append(conv)
        elif isinstance(layer, nn.ReLU):
            layers.append(nn.ReLU())
        else:
            layers.append(nn.MaxPool2d(2))
    net = nn.Sequential(*layers).to(device).eval().requires_grad_(False)
    names = {index: name for name, index in features.TAP_INDICES.items()}
    mean = torch.tensor(features.IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(features.IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def feats(img):
        out, x = {}, (img - mean) / std
        for index, layer in enumerate(net):
            x = layer(x)
            if names.get(index) in TAPS:
                out[names[index]] = x
            if index >= features.TAP_INDICES["conv5_1"]:
                break
        return out

    def gram(f):
        _b, c, h, w = f.shape
        f = f.view(c, h * w)
        return f @ f.t() / (h * w)

    def tv(img):
        return ((img[:, :, 1:] - img[:, :, :-1]) ** 2).mean() + (
            (img[:, :, :, 1:] - img[:, :, :, :-1]) ** 2
        ).mean()

    content_t = images.rgb_tensor(content, device=device)
    style_t = images.rgb_tensor(style, device=device)
    out_shape = images.fit_longest_side(content_t.shape[-2:], size)
    shapes = texture.level_shapes(out_shape, 4)
    result, loss_value = None, float("nan")
    with Timer(device) as t:
        for shape, iterations in zip(shapes, schedule[len(schedule) - len(shapes) :]):
            c = images.resize_tensor(content_t, shape)
            s = images.resize_tensor(
                style_t, texture._style_level_shape(style_t.shape[-2:], max(shape))
            )
            with torch.no_grad():
                target_c = feats(c)[features.CONTENT_LAYER]
                sf = feats(s)
                target_g = [gram(sf[name]) for name in features.STYLE_LAYERS]
                tv_c = tv(c)
            x = (c if result is None else images.resize_tensor(result, shape)).clone()
            x.requires_grad_(True)
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=iterations, history_size=10,
                                    tolerance_grad=0.0, tolerance_change=0.0)  # fmt: skip
            last = {}

            # this level's tensors bound now (LBFGS calls the closure within this iteration)
            def closure(opt=opt, x=x, target_c=target_c, target_g=target_g, tv_c=tv_c, last=last):
                opt.zero_grad()
                f = feats(x)
                loss = (
                    texture.DEFAULT_CONTENT_WEIGHT
                    * ((f[features.CONTENT_LAYER] - target_c) ** 2).sum()
                    / (target_c**2).sum()
                )
                style_loss = 0
                for name, g in zip(features.STYLE_LAYERS, target_g):
                    style_loss = style_loss + ((gram(f[name]) - g) ** 2).sum() / (g**2).sum()
                loss = loss + texture.DEFAULT_STYLE_WEIGHT * style_loss / 5
                loss = loss + texture.DEFAULT_TV_WEIGHT * tv(x) / tv_c
                loss.backward()
                last["loss"] = loss.item()
                return loss

            opt.step(closure)
            with torch.no_grad():
                x.clamp_(0, 1)
            result = x.detach()
            loss_value = last["loss"]
    return t.seconds, loss_value


# --------------------------------------------------------------------------- driver
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--tiny", action="store_true", help="small sizes, few iterations (CPU)")
    parser.add_argument("--backbone", default=None, help="default: vgg19 if present, else random")
    add_repeat_argument(parser, 20, "trunk timing repetitions")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args(argv)

    import torch

    device = resolve_device(args.device)
    backbone = args.backbone or ("vgg19" if describe_vgg19_weights()["found"] else "random")
    schedule = list(texture.PRESETS["balanced"]["iterations"])
    sizes, reps, per_iter = args.sizes, args.repeat, (10, 30)
    if args.tiny:
        sizes, reps, per_iter = [64, 128], 2, (2, 5)
        schedule = [8, 6, 4, 4]
    content, style, image_source = benchmark_images()
    trunk = features.build_trunk(backbone, device)
    args.out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device {device} ({gpu}), torch {torch.__version__}, backbone {backbone} "
          f"({trunk.source}), images: {image_source}, schedule {schedule}", flush=True)  # fmt: skip

    rows = []
    for size in sizes:
        row = {"size": size}
        row["trunk_fp32_s"] = trunk_time(trunk, device, size, False, reps)
        row["trunk_bf16_s"] = (
            trunk_time(trunk, device, size, True, reps) if device.type == "cuda" else None
        )
        ours(content, style, size, device, backbone, 2, levels=1)  # warm-up (cuDNN, allocator)
        row["ours_per_iter_s"] = ours_per_iteration(content, style, size, device, backbone,
                                                    *per_iter)  # fmt: skip
        seconds, loss, image = ours(content, style, size, device, backbone, schedule)
        row["ours_total_s"], row["ours_final_loss"] = seconds, loss
        np.save(args.out / f"texture_{size}.npy", images.from_float(np.clip(image, 0, 1), np.uint8))
        _, loss4, _ = ours(content, style, size, device, backbone, [4 * n for n in schedule])
        row["ours_4x_final_loss"] = loss4
        row["loss_excess_vs_4x"] = loss / loss4 - 1.0
        if device.type == "cuda":
            row["ours_total_no_graphs_s"], _, _ = ours(content, style, size, device, backbone,
                                                       schedule, cuda_graphs=False)  # fmt: skip
        if not args.skip_reference:
            reference(content, style, size, device, trunk, [2] * len(schedule))  # warm-up
            row["reference_total_s"], row["reference_final_loss"] = reference(
                content, style, size, device, trunk, schedule
            )
            row["speedup_vs_reference"] = row["reference_total_s"] / row["ours_total_s"]
        floor = row["trunk_bf16_s"] or row["trunk_fp32_s"]
        row["per_iter_vs_trunk"] = row["ours_per_iter_s"] / floor
        rows.append(row)
        print(json.dumps(row), flush=True)

    table = _markdown(rows, device, gpu, backbone, schedule, image_source)
    print(table)
    result = {"device": str(device), "device_name": gpu, "torch": torch.__version__,
              "backbone": backbone, "schedule": schedule, "images": image_source, "rows": rows,
              "environment": environment(device)}  # fmt: skip
    write_json(args.out / "texture_benchmark.json", result)
    (args.out / "texture_benchmark.md").write_text(table)
    return 0


def _ms(value):
    return "-" if value is None else f"{1000 * value:.1f} ms"


def _markdown(rows, device, gpu, backbone, schedule, image_source) -> str:
    lines = [
        (
            f"Texture transfer on {device} ({gpu}), backbone {backbone}, default schedule "
            f"{schedule} (iterations per level, coarsest first), images: {image_source}."
        ),
        "",
        (
            "| size | trunk fwd+bwd fp32 | trunk fwd+bwd bf16 | ours / iter | ours / trunk "
            "| ours total | fp32 reference total | speed-up | final loss | 4x iters loss | excess |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = r.get("reference_total_s")
        ref_text = "-" if ref is None else f"{ref:.2f} s"
        speedup = "-" if ref is None else f"{r['speedup_vs_reference']:.1f}x"
        lines.append(
            f"| {r['size']} px | {_ms(r['trunk_fp32_s'])} | {_ms(r['trunk_bf16_s'])} "
            f"| {_ms(r['ours_per_iter_s'])} | {r['per_iter_vs_trunk']:.2f}x "
            f"| {r['ours_total_s']:.2f} s | {ref_text} | {speedup} "
            f"| {r['ours_final_loss']:.4f} | {r['ours_4x_final_loss']:.4f} "
            f"| {100 * r['loss_excess_vs_4x']:+.1f}% |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
