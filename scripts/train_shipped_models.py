"""Train the shipped embedded-trunk geometry models (affine and TPS) on a wall-clock budget each,
evaluate them on held-out images, and write checkpoints (fp16), results JSON and figures.
A release script (it can write into ``src/``), not a benchmark; needs ``pip install -e .``.

    python scripts/train_shipped_models.py --images data_cache/photos --val-images \
        data_cache/photos --out-dir bench_out/geonet --seconds-affine 150 --seconds-tps 150 \
        --device auto [--install]

Training images: every image in ``--images`` except the held-out names below, plus the
scikit-image sample images bundled with the wheel (read from its data folder, never downloaded).
Validation: the held-out photos found in ``--val-images`` plus skimage's astronaut and coffee.
``--install`` also copies checkpoints, results and figures into ``src/napari_geostyle/models``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

# Held out of training (photos of the --images folder): validation only.
HELD_OUT_PHOTOS = (
    "kde_Autumn",
    "kde_Kite",
    "kde_Path",
    "kde_Shell",
    "ocv_baboon",
    "ocv_building",
    "ocv_fruits",
    "ocv_squirrel_cls",
)
# skimage sample files bundled in the wheel; astronaut and coffee are held out (tests use them).
SKIMAGE_TRAIN = (
    "camera.png",
    "chelsea.png",
    "rocket.jpg",
    "ihc.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "color.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "page.png",
    "text.png",
    "clock_motion.png",
    "coins.png",
    "cell.png",
    "motorcycle_left.png",
    "chessboard_RGB.png",
)
SKIMAGE_VAL = ("astronaut.png", "coffee.png")
# Tuning split: every 4th training photo (sorted by name), pairs from another seed. The
# defaults of estimate_warp (network passes, refinement settings) are chosen on it, never on
# the held-out validation images.
TUNING_EVERY = 4
TUNING_SEED = 4321
TUNING_PASSES = {
    "affine": [1, 2, 3, 4],
    "affine+tps": [
        {"affine": 1, "tps": 1},
        {"affine": 1, "tps": 2},
        {"affine": 1, "tps": 3},
        {"affine": 1, "tps": 4},
        {"affine": 2, "tps": 3},
        {"affine": 3, "tps": 3},
    ],
}


def skimage_images(names):
    import imageio.v3 as iio

    try:
        import skimage.data
    except ImportError as error:  # run on, with the photos only
        print(f"scikit-image unavailable ({error}): no skimage images", flush=True)
        return []
    folder = Path(skimage.data.__file__).parent
    found = []
    for name in names:
        path = folder / name
        if path.is_file():
            try:
                found.append((name, np.asarray(iio.imread(path))))
            except Exception as error:  # keep going: one unreadable sample must not stop a run
                print(f"skipping skimage {name}: {error}", flush=True)
    return found


CROSS_INSTANCE_MARKERS = (
    "<!-- cross-instance: kept by scripts/train_shipped_models.py -->",
    "<!-- /cross-instance -->",
)
# the texture trunk's section: measured by benchmarks/bench_texture_quality.py, not here
TEXTURE_MARKERS = (
    "<!-- texture: kept by scripts/train_shipped_models.py -->",
    "<!-- /texture -->",
)


def kept_section(markers) -> str:
    """A section of the installed card that this script does not measure (between ``markers``):
    a regenerated card keeps it until it is measured again."""
    from napari_geostyle.core.geonet import MODELS_DIR

    card = MODELS_DIR / "MODEL_CARD.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    start, end = markers
    if start not in text or end not in text:
        return ""
    return text[text.index(start) : text.index(end) + len(end)] + "\n\n"


def model_card(results: dict) -> str:
    """MODEL_CARD.md text from a results dict (what this script writes to results.json)."""
    ranges = results["ranges"]
    lines = [
        "# Shipped geometry networks (embedded trunk)",
        "",
        "`geonet_affine_embedded.pt` and `geonet_tps_embedded.pt`: the CNNGeometric-style",
        'networks behind `estimate_warp(..., trunk="embedded")`, written by',
        "`scripts/train_shipped_models.py` (numbers below are from its `results.json`).",
        "",
        kept_section(CROSS_INSTANCE_MARKERS) + "## Architecture",
        "Both images resized to 240 x 240; a small CNN trunk (conv 5x5/2 -> 32, conv 3x3/2 -> 64,",
        "conv 3x3 -> 64, conv 3x3/2 -> 96, conv 3x3 -> 96, conv 3x3/2 -> 128, conv 3x3 -> 128,",
        "conv 1x1; BN + ReLU) to stride 16 (15 x 15 x 128), trained end to end here (no ImageNet",
        "weights needed); per-location L2 normalisation; 225-channel correlation, ReLU, L2 over",
        "channels; head conv 7x7 -> 128, BN, ReLU; conv 5x5 -> 64, BN, ReLU; linear -> 6 (affine",
        "theta) or 18 (3 x 3 TPS grid), predicted as an offset from the identity. fp16 weights.",
        "",
        "## Data",
        (
            f"- Training: {len(results['training_photos'])} photos from `shared/data/photos` and "
            f"{len(results['training_skimage'])} scikit-image sample images "
            f"({', '.join(results['training_skimage'])}); {results['pool_crops']} square crops "
            "(320 px) held on the device, re-cropped (zoom 0.55-1, mirrored) every step."
        ),
        f"- Held out for validation (never trained on): {', '.join(results['validation_images'])}.",
        "",
        "## Self-supervised pairs",
        (
            f"- Affine: rotation +-{ranges['rotation_deg']} deg, shear +-{ranges['shear_deg']} deg, "
            f"anisotropic scale {ranges['scale'][0]}-{ranges['scale'][1]}, translation "
            f"+-{ranges['translation']} of the half-size."
        ),
        (
            f"- TPS: 3 x 3 control points moved up to +-{ranges['tps_shift']} (normalised); "
            f"{int(ranges['tps_affine_share'] * 100)}% of TPS pairs also get an affine at "
            f"{ranges['tps_affine_strength']} of the ranges above (the residual the TPS stage sees)."
        ),
        "- Mirror padding (no empty borders). The target is re-styled so that colour and texture",
        "  are nuisances: random colour mixing / channel shuffles / gray / inversion, contrast,",
        "  gamma, texture blending with another image, blur, posterisation, noise; the source gets",
        "  a milder version. Gatys re-styled pairs were not used (the texture engine was not part",
        "  of this run).",
        "- Loss: transformed-grid loss on a 20 x 20 lattice (CNNGeometric).",
        "",
        *finetune_lines(results.get("finetune")),
        "## Training run",
        (
            f"- Device: {results['device']} ({results['device_name'] or 'shared 2-core machine'}), "
            f"torch {results['torch']}, "
            f"AMP {results['amp']}; AdamW, batch {results['batch_size']}, peak lr {results['lr']}, "
            "warm-up + cosine over a wall-clock budget."
        ),
    ]
    for kind, info in results["models"].items():
        lines.append(
            f"- {kind}: {info['steps']} steps ({info['pairs_seen']} pairs) in "
            f"{info['wall_seconds']} s, final grid loss {info['final_loss']:.5f}, "
            f"{info['checkpoint_bytes'] / 1e6:.1f} MB."
        )
    if not results["device"].startswith("cuda"):
        lines += [
            "",
            "**Status: CPU fallback.** These weights come from a short run on a shared CPU, so",
            'the networks alone are close to the identity (see the table). `method="refine"`',
            "recovers plain geometric changes (a known 10 deg / 0.9x affine of held-out images:",
            "1-2% error, see tests/core/test_estimate.py) but not pairs with strong appearance",
            "changes, where this barely trained trunk's features do not match. The GPU run of",
            "this script replaces these weights.",
        ]
    tuning = results.get("tuning")
    if tuning:
        lines += [
            "",
            "## Defaults (chosen on a tuning split of training images)",
            (
                f"`estimate_warp`'s defaults were chosen on {tuning['pairs']} pairs per model (seed "
                f"{tuning['seed']}) from training photos ({', '.join(tuning['images'])}), never on "
                "the held-out validation images below:"
            ),
            *(
                ["(Measured with the networks before fine-tuning; the defaults were kept.)"]
                if tuning.get("from_previous_release")
                else []
            ),
            (
                "- network passes (CNNGeometric's iterative use: each pass predicts the residual "
                "between the content warped so far and the style, composed into the stage's one "
                f"transform): {json.dumps(tuning['default_passes'])};"
            ),
            (
                "- refinement: Adam on the parameters (the affine for `affine`, the TPS for the TPS "
                "models) so that the stride-16 features of the warped content, through the TPS "
                "network's trunk, match the style's, with a trust region around the network's "
                f"estimate; settings {json.dumps(tuning['refine'])}. The TPS trunk was chosen over "
                "the affine trunk and over warping feature maps because its features score the "
                "true warp above the network's estimate on more tuning pairs."
            ),
            "",
            "| model | passes | method | mean error % | median % |",
            "|---|---|---|---|---|",
        ]
        for row in tuning["rows"]:
            lines.append(
                f"| {row['model']} | {json.dumps(row['passes'])} | {row['method']} | "
                f"{row['mean_error_pct']:.2f} | {row['median_error_pct']:.2f} |"
            )
    lines += [
        "",
        "## Validation (held-out images, fixed-seed pairs with appearance changes)",
        "Mean sampling error on a 20 x 20 lattice in % of the image side (lower is better) and",
        "PCK (share of lattice points within 5% / 10% of the side).",
        "",
        "| model | method | mean error % | median % | PCK@0.05 | PCK@0.10 | s / pair |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, report in results["evaluation"].items():
        for method in ("identity", "network", "refine"):
            if method in report:
                r = report[method]
                lines.append(
                    f"| {model} | {method} | {r['mean_error_pct']:.2f} | "
                    f"{r['median_error_pct']:.2f} | {r['pck@0.05']:.3f} | {r['pck@0.10']:.3f} "
                    f"| {r['seconds_per_pair']:.3f} |"
                )
    some = next(iter(results["evaluation"].values()))
    lines += [
        "",
        (
            f"{some['pairs']} pairs per model ({some['size']} px), default passes and refinement "
            f"settings; evaluated on {results.get('evaluated_on_name', results['device'])} "
            "(s / pair is wall clock there). Figures (rows: source | target | network | refine): "
            "`validation_affine.png`, `validation_affine_tps.png`."
        ),
        "",
        "## Limits",
        "Trained on synthetic warps of a few dozen photos within the ranges above; larger",
        "rotations, strong perspective, or unrelated content/style pairs are out of scope. Use",
        '`method="refine"` or landmarks for those.',
        "",
        kept_section(TEXTURE_MARKERS).rstrip("\n"),
    ]
    return "\n".join(lines)


def finetune_lines(finetune) -> list[str]:
    """The card's fine-tuning section from the ``finetune_<kind>.json`` session records."""
    if not finetune:
        return []
    lines = [
        "## Fine-tuning for pairs of different objects",
        'The networks below were fine-tuned from the run in "Training run" on synthetic pairs',
        "with cross-instance proxies (`PairRanges.cross_instance()`, `--ranges cross-instance`):",
        "for a share of the pairs the target also gets a local elastic warp on a 5 x 5 TPS grid",
        "that the loss does not ask the network to predict (two faces differ in local shape), a",
        "background swapped outside a soft ellipse (different surroundings), the source",
        "re-styled as strongly as the target, and weaker true warps (the residual after the",
        "layout search). Sessions (each one warm-up + cosine cycle, resumed from the last):",
    ]
    for kind, sessions in finetune.items():
        for s in sessions:
            values = s["range_values"]
            lines.append(
                f"- {kind}: steps {s['from_step']} -> {s['to_step']} ({s['pairs']} pairs) in "
                f"{s['wall_seconds']:.0f} s on {s['device']}, batch {s['batch_size']}, peak lr "
                f"{s['lr']}, seed {s['seed']}; local shape +-{values['nuisance_shift']} on "
                f"{int(values['nuisance_share'] * 100)}% of pairs, background swap "
                f"{int(values['background_swap'] * 100)}%, weaker warps "
                f"{int(values['small_share'] * 100)}%; final grid loss {s['final_loss']:.5f}."
            )
    return [*lines, ""]


def tuning_report(
    train_files, checkpoints, device, pairs_per_image: int, methods, trunk: str = "embedded"
) -> dict:
    """Errors on the tuning split (training photos) for the passes / methods the defaults were
    chosen from."""
    import imageio.v3 as iio

    from napari_geostyle.core import estimate, training

    files = train_files[::TUNING_EVERY]
    images = training.load_images([np.asarray(iio.imread(p)) for p in files])
    report = {
        "images": [p.name for p in files],
        "seed": TUNING_SEED,
        "rows": [],
        "default_passes": estimate.DEFAULT_PASSES,
        "refine": dict(estimate.REFINE),
    }
    for model, variants in TUNING_PASSES.items():
        pairs = training.make_eval_pairs(images, model, pairs_per_image, TUNING_SEED)
        report["pairs"] = len(pairs)
        checkpoint = checkpoints if model == "affine+tps" else checkpoints["affine"]
        default = estimate.stage_passes(model)
        for passes in variants:
            chosen = estimate.stage_passes(model, passes) == default
            run_methods = [m for m in methods if m != "identity"] if chosen else ["network"]
            result = training.evaluate_geometry(
                None,
                model,
                run_methods,
                pairs=pairs,
                trunk=trunk,
                checkpoint=checkpoint,
                device=device,
                estimate_options={"passes": passes},
            )
            for method in run_methods:
                report["rows"].append(
                    {
                        "model": model,
                        "passes": passes,
                        "method": method,
                        "mean_error_pct": result[method]["mean_error_pct"],
                        "median_error_pct": result[method]["median_error_pct"],
                    }
                )
            print(
                f"[tuning {model}] passes {passes}: "
                + ", ".join(f"{m} {result[m]['mean_error_pct']:.2f}%" for m in run_methods),
                flush=True,
            )
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", nargs="+", required=True, help="training image folders")
    parser.add_argument("--val-images", required=True, help="folder holding the held-out photos")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--seconds-affine", type=float, default=150.0)
    parser.add_argument("--seconds-tps", type=float, default=150.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: 128 on CUDA, 8 elsewhere"
    )
    parser.add_argument("--lr", type=float, default=None, help="default: 2e-3 (CUDA), 1e-3")
    parser.add_argument("--pairs-per-image", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-refine", action="store_true", help="skip refine in the evaluation")
    parser.add_argument(
        "--no-tuning",
        action="store_true",
        help="skip the tuning-split table (how the defaults were chosen)",
    )
    parser.add_argument(
        "--init",
        choices=("scratch", "shipped"),
        default="scratch",
        help="start from fresh weights or fine-tune the shipped checkpoints",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoints already in --out-dir (another "
        "session's run); each session is one warm-up + cosine cycle",
    )
    parser.add_argument(
        "--ranges",
        choices=("default", "cross-instance"),
        default="default",
        help="synthetic pairs: CNNGeometric's, or with the cross-instance "
        "proxies (local shape, background and appearance differences)",
    )
    parser.add_argument(
        "--seed", type=int, default=17, help="training seed (vary it between resumed sessions)"
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="write the checkpoints and training log, skip the evaluation",
    )
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="skip training: evaluate the checkpoints already in --out-dir",
    )
    parser.add_argument(
        "--trunk",
        choices=("embedded", "efficientnet"),
        default="embedded",
        help="embedded: our small trunk, trained end to end; efficientnet: the frozen ImageNet "
        "EfficientNet-Lite0 (installed from PyPI), only the head is trained",
    )
    parser.add_argument(
        "--install", action="store_true", help="copy results into src/napari_geostyle/models"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import imageio.v3 as iio
    import torch

    from napari_geostyle.core import training
    from napari_geostyle.core.devices import resolve_device
    from napari_geostyle.core.geonet import clear_cache, shipped_checkpoint_path

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    batch_size = args.batch_size or (128 if cuda else 8)
    lr = args.lr or (2e-3 if cuda else 1e-3)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    # ---------------------------------------------------------------- data
    held = {n.lower() for n in HELD_OUT_PHOTOS}
    train_files = [p for p in training.list_image_files(args.images) if p.stem.lower() not in held]
    val_files = [p for p in training.list_image_files([args.val_images]) if p.stem.lower() in held]
    if not val_files:
        raise SystemExit(f"none of the held-out photos {HELD_OUT_PHOTOS} is in {args.val_images}")
    train_arrays = [np.asarray(iio.imread(p)) for p in train_files]
    sk_train = skimage_images(SKIMAGE_TRAIN)
    sk_val = skimage_images(SKIMAGE_VAL)
    train_images = training.load_images(train_arrays + [a for _, a in sk_train])
    val_images = training.load_images(
        [np.asarray(iio.imread(p)) for p in val_files] + [a for _, a in sk_val]
    )
    print(
        f"device {device}; {len(train_images)} training images ({len(train_files)} photos + "
        f"{len(sk_train)} skimage), {len(val_images)} validation images",
        flush=True,
    )
    pool = training.build_image_pool(train_images, 320, device)
    print(f"image pool {tuple(pool.shape)} on {pool.device}", flush=True)

    results = {
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if cuda
            else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
        ),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "batch_size": batch_size,
        "lr": lr,
        "amp": "bf16" if cuda else "off",
        "training_photos": [p.name for p in train_files],
        "training_skimage": [n for n, _ in sk_train],
        "validation_images": [p.name for p in val_files] + [n for n, _ in sk_val],
        "pool_crops": int(pool.shape[0]),
        "models": {},
    }

    # ---------------------------------------------------------------- training
    checkpoints = {}
    ranges = (
        training.PairRanges.cross_instance()
        if args.ranges == "cross-instance"
        else training.PairRanges()
    )
    fine_tuning = args.init == "shipped" or args.resume
    results["ranges"] = dataclasses.asdict(ranges)
    if args.eval_only:  # re-evaluate the checkpoints and training record already in out-dir
        # the base run's record: out-dir's results.json, else the release's (fine-tuned here)
        record = out_dir / "results.json"
        if not record.is_file():
            record = shipped_checkpoint_path("affine").parent / "results.json"
        previous = json.loads(record.read_text())
        for key in (
            "device",
            "device_name",
            "torch",
            "python",
            "batch_size",
            "lr",
            "amp",
            "models",
            "ranges",
            "training_photos",
            "training_skimage",
            "pool_crops",
        ):
            results[key] = previous[key]
        results["finetune"] = previous.get("finetune", {})
        for session_file in sorted(out_dir.glob("finetune_*.json")):
            kind = session_file.stem.removeprefix("finetune_")
            results["finetune"][kind] = json.loads(session_file.read_text())
        if args.no_tuning and "tuning" in previous:  # defaults unchanged: keep how they were set
            results["tuning"] = {**previous["tuning"], "from_previous_release": True}
        results["evaluated_on"] = str(device)
        results["evaluated_on_name"] = (
            torch.cuda.get_device_name(device)
            if cuda
            else f"{platform.machine()} CPU, torch threads: {torch.get_num_threads()}"
        )
        for kind in ("affine", "tps"):
            checkpoints[kind] = str(out_dir / shipped_checkpoint_path(kind, args.trunk).name)
    for kind, seconds in (("affine", args.seconds_affine), ("tps", args.seconds_tps)):
        if args.eval_only:
            break
        path = out_dir / shipped_checkpoint_path(kind, args.trunk).name
        if seconds <= 0:  # not trained in this run: evaluate what out-dir (or the release) has
            if not path.is_file():
                shutil.copy2(shipped_checkpoint_path(kind, args.trunk), path)
            checkpoints[kind] = str(path)
            continue
        resume = args.resume and path.is_file()
        if args.init == "shipped" and not resume:
            shutil.copy2(shipped_checkpoint_path(kind, args.trunk), path)
            resume = True
        log = []
        last = None
        start_step = None
        t_kind = time.perf_counter()
        for progress in training.train_geometry(
            pool,
            kind,
            args.trunk,
            seconds=seconds,
            batch_size=batch_size,
            lr=lr,
            device=device,
            out=path,
            checkpoint_every=max(30.0, seconds / 4),
            seed=args.seed,
            images_are_pool=True,
            log_every=25 if cuda else 5,
            ranges=ranges,
            resume=resume,
        ):
            log.append([progress.step, progress.loss, progress.lr, progress.elapsed])
            if start_step is None:
                start_step = progress.step - 1
            if len(log) % 10 == 1 or progress.done:
                print(
                    f"[{kind}] step {progress.step} loss {progress.loss:.5f} "
                    f"lr {progress.lr:.2e} {progress.elapsed:.0f}s",
                    flush=True,
                )
            last = progress
        checkpoints[kind] = str(path)
        results["models"][kind] = {
            "steps": last.step,
            "wall_seconds": round(last.elapsed, 1),
            "pairs_seen": last.step * batch_size,
            "final_loss": last.loss,
            "checkpoint_bytes": path.stat().st_size,
            "log": log,
        }
        if fine_tuning:  # one session more in this kind's fine-tuning record
            session_file = out_dir / f"finetune_{kind}.json"
            sessions = json.loads(session_file.read_text()) if session_file.is_file() else []
            sessions.append(
                {
                    "ranges": args.ranges,
                    "range_values": dataclasses.asdict(ranges),
                    "from_step": start_step,
                    "to_step": last.step,
                    "pairs": (last.step - start_step) * batch_size,
                    "wall_seconds": round(time.perf_counter() - t_kind, 1),
                    "device": results["device_name"],
                    "batch_size": batch_size,
                    "lr": lr,
                    "seed": args.seed,
                    "final_loss": last.loss,
                }
            )
            session_file.write_text(json.dumps(sessions, indent=1))
        del last
        if cuda:
            torch.cuda.empty_cache()
    del pool
    clear_cache()
    if args.train_only:
        print(f"trained into {out_dir} in {time.perf_counter() - t_start:.0f}s", flush=True)
        return 0

    # ---------------------------------------------------------------- evaluation
    methods = ("identity", "network") if args.no_refine else training.EVAL_METHODS
    results["evaluation"] = {}
    for model in ("affine", "affine+tps"):
        t0 = time.perf_counter()
        report = training.evaluate_geometry(
            val_images,
            model,
            methods,
            pairs_per_image=args.pairs_per_image,
            seed=1234,
            trunk=args.trunk,
            checkpoint=checkpoints if model == "affine+tps" else checkpoints["affine"],
            device=device,
            keep_pairs=4,
        )
        examples = report.pop("examples")
        report["eval_seconds"] = round(time.perf_counter() - t0, 1)
        results["evaluation"][model] = report
        figure = out_dir / f"validation_{model.replace('+', '_')}.png"
        iio.imwrite(figure, training.validation_figure(examples, methods[1:]))
        summary = ", ".join(
            f"{m}: {report[m]['mean_error_pct']:.2f}% (pck@0.05 {report[m]['pck@0.05']:.2f})"
            for m in methods
        )
        print(f"[eval {model}] {summary}", flush=True)

    if not args.no_tuning:
        results["tuning"] = tuning_report(
            train_files, checkpoints, device, args.pairs_per_image, methods, args.trunk
        )
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    (out_dir / "MODEL_CARD.md").write_text(model_card(results))
    print(f"wrote {out_dir} in {results['total_seconds']}s", flush=True)
    if args.install:
        models_dir = shipped_checkpoint_path("affine").parent
        for name in [Path(p).name for p in checkpoints.values()] + [
            "results.json",
            "MODEL_CARD.md",
            "validation_affine.png",
            "validation_affine_tps.png",
        ]:
            shutil.copy2(out_dir / name, models_dir / name)
        print(f"installed into {models_dir}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GEOSTYLE_OFFLINE", "1")
    sys.exit(main())
