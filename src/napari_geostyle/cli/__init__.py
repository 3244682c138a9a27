"""Command line: ``napari-geostyle <command> ...``.

Each command is a ``_cmd_<name>(args)`` function registered in ``_build_parser``. A user mistake
(bad file, bad option, ``ValueError`` from the core) prints one ``error:`` line and exits 2; it
never shows a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _one_line(error) -> str:
    """An exception's message on one line (imageio's, for one, span several)."""
    return " ".join(str(error).split())


class _Parser(argparse.ArgumentParser):
    """Usage mistakes print one ``error:`` line (and where to get help) instead of the usage."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {_one_line(message)} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- shared helpers
def read_image(path) -> np.ndarray:
    """Read an image file (anything scikit-image / imageio read)."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"no image file at {path}")
    import imageio.v3 as iio

    from .core.media import check_image_file, check_pixels

    check_image_file(path, str(path))  # the pixel cap, before anything is decoded
    try:
        array = np.asarray(iio.imread(path))
    except Exception as error:  # imageio raises many types for unreadable files
        raise CLIError(f"cannot read {path} as an image: {_one_line(error)}") from error
    if array.ndim >= 2:
        check_pixels(array.shape, str(path))
    return array


def check_not_an_input(outputs, inputs) -> None:
    """Refuse an output file that is one of the inputs (the same file after following links,
    or a hard link to it), with or without --overwrite: writing it would destroy the input."""
    for output in outputs:
        for source in inputs:
            if output is None or source is None:
                continue
            try:
                same = os.path.samefile(output, source)
            except (OSError, ValueError):  # one of them is not there: not the same file
                continue
            if same:
                raise CLIError(
                    f"output {output} is the input {source} (the same file, after following "
                    "links): choose another output file; --overwrite never replaces an input"
                )


def check_output_path(path, overwrite: bool = False, image: bool = True) -> Path:
    """Check an output path before any work is done (``CLIError`` otherwise): not a folder, in
    an existing folder we can write to, not an existing file unless ``overwrite``, and (for
    ``image``) an extension that an image can be written as."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"output {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise CLIError(f"output folder {path.parent} does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise CLIError(f"{path} exists; pass --overwrite to replace it")
    if image:
        import imageio.config
        import imageio.v3 as iio

        # imageio writes a TIFF under any name it does not know: refuse those names
        if path.suffix.lower() not in imageio.config.known_extensions:
            raise CLIError(
                f"cannot write {path}: {path.suffix or 'no extension'} is not an image format; "
                "use .png, .tif, .jpg or another image extension"
            )
        probe = np.zeros((2, 2, 3), np.uint8)
        writer = lambda tmp: iio.imwrite(tmp, probe, extension=path.suffix)
    else:
        writer = lambda tmp: tmp.write_bytes(b"")
    try:
        with _temporary_sibling(path) as tmp:  # nothing of it is left behind
            writer(tmp)
    except Exception as error:
        what = f"a {path.suffix or 'extension-less'} image" if image else "a file"
        raise CLIError(f"cannot write {path} as {what}: {_one_line(error)}") from None
    return path


class _temporary_sibling:
    """A not-yet-existing temporary path next to ``path`` (same folder, so ``os.replace`` is
    atomic), removed on exit unless it was moved into place."""

    def __init__(self, path: Path):
        import secrets

        self.path = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc_info) -> None:
        self.path.unlink(missing_ok=True)


def write_atomically(path, write) -> None:
    """``write(tmp)`` a temporary file next to ``path``, then move it into place: an error or
    Ctrl-C leaves the previous file intact and nothing partial on disk (``media.write_atomic``,
    the package's one atomic writer)."""
    from .core.media import write_atomic

    write_atomic(path, write, make_folder=False)


def write_image(path, image: np.ndarray, overwrite: bool = True) -> None:
    """Write ``image`` atomically; floats (0..1) become uint8 for 8-bit formats, uint16 is kept
    for TIFF/PNG. ``overwrite=False`` refuses to replace an existing file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CLIError(f"output folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise CLIError(f"{path} exists; pass --overwrite to replace it")
    import imageio.v3 as iio

    from .core.images import from_float

    array = np.asarray(image)
    if array.dtype.kind == "f":
        array = from_float(np.clip(array, 0.0, 1.0), np.uint8)
    if array.dtype == np.uint16 and path.suffix.lower() in (".jpg", ".jpeg"):
        array = (array >> 8).astype(np.uint8)
    try:
        write_atomically(path, lambda tmp: iio.imwrite(tmp, array, extension=path.suffix))
    except Exception as error:
        raise CLIError(f"cannot write {path}: {_one_line(error)}") from None


def write_text(path, text: str, overwrite: bool = True) -> None:
    """Write ``text`` atomically (UTF-8); ``overwrite=False`` refuses to replace a file."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CLIError(f"{path} exists; pass --overwrite to replace it")
    try:
        write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError as error:
        raise CLIError(f"cannot write {path}: {_one_line(error)}") from None


_DEVICE_NOTE_PRINTED = False


def print_device_note() -> None:
    """Print, once per process, why a CUDA build of torch runs on the CPU (an old driver)."""
    global _DEVICE_NOTE_PRINTED
    if _DEVICE_NOTE_PRINTED:
        return
    _DEVICE_NOTE_PRINTED = True
    from .core import devices

    note = devices.cuda_build_note()
    if note:
        print(note, file=sys.stderr)


def progress_bar(total: int, desc: str):
    """A tqdm progress bar on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------- parser and entry
def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="napari-geostyle",
        description="Geometric style transfer: warp content to a style's geometry, then "
        "transfer the style's texture.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    from .core.media import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV

    parser.add_argument(
        "--max-pixels",
        type=float,
        metavar="N",
        help=f"most pixels (height x width) an input image, frame or page may have (default "
        f"{DEFAULT_MAX_PIXELS:.0e}, or ${MAX_PIXELS_ENV}); give it before the command",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _REGISTRY:
        register(sub)
    return parser


# Each entry adds one sub-command to the parser (and sets ``func`` on it).
_REGISTRY: list = []


# --------------------------------------------------------------------------- hints
def read_hints(path):
    """``(content_points, style_points)`` of a BigWarp landmark CSV read as hints: the moving
    points on the content, the target points on the geometry style (its own pixels)."""
    from .core.landmarks import read_bigwarp_csv

    try:
        return read_bigwarp_csv(path)
    except ValueError as error:
        raise CLIError(f"--hints: {error}") from None


def hints_help(what: str = "the content") -> str:
    return (
        f"BigWarp landmark CSV of hints: points of {what} (moving) and where they lie on the "
        "geometry style (target, in its pixels); they pin the pose of the estimate, which "
        "honours them (one to a few clicks: eyes, mouth, corners)"
    )


def print_confidence(transform, label: str = "geometry") -> None:
    """One line on stderr: the estimate's confidence, and what to do when it is low."""
    from .core.confidence import LOW_CONFIDENCE

    value = getattr(transform, "confidence", None)
    if value is None:
        return
    note = " (the shapes may not match: add a hint, --hints)" if value < LOW_CONFIDENCE else ""
    print(f"{label} confidence {value:.2f}{note}", file=sys.stderr)


# --------------------------------------------------------------------------- transfer
def _cmd_transfer(args) -> int:
    import time

    from .core.texture import iter_texture_transfer

    if args.device in (None, "auto") or str(args.device).startswith("cuda"):
        print_device_note()
    # every output is checked before the (long) optimisation, not after it
    check_not_an_input([args.output, args.warped_output],
                       [args.content, *args.texture, args.geometry])  # fmt: skip
    check_output_path(args.output, args.overwrite)
    if args.hints and args.geometry is None:
        raise CLIError("--hints steer the warp to --geometry STYLE: give --geometry too")
    if args.warped_output:
        if Path(args.warped_output).resolve() == Path(args.output).resolve():
            raise CLIError("--warped-output and -o/--output are the same file")
        check_output_path(args.warped_output, args.overwrite)
    content = read_image(args.content)
    styles = [read_image(path) for path in args.texture]
    iterations = args.iterations
    if iterations is not None and len(iterations) == 1:
        iterations = iterations[0]
    options = {
        "size": args.size, "levels": args.levels, "iterations": iterations, "optimizer": args.optimizer,
        "style_weights": args.texture_weights, "preserve_color": args.preserve_color,
        "backbone": args.backbone, "device": args.device, "seed": args.seed, "preset": args.preset,
        "preview_every": 0,
    }  # fmt: skip
    if args.style_weight is not None:
        options["style_weight"] = args.style_weight
    if args.content_weight is not None:
        options["content_weight"] = args.content_weight
    if args.geometry is None:
        steps = iter_texture_transfer(content, styles, **options)
    else:  # both stages: warp to the geometry style first
        from .core.pipeline import iter_geometric_style_transfer

        hints = read_hints(args.hints) if args.hints else None
        steps = iter_geometric_style_transfer(
            content, geometry_style=read_image(args.geometry), texture_style=styles,
            model=args.model, method=args.method, strength=args.strength, hints=hints,
            **options,
        )  # fmt: skip
    result = None
    bar = None
    started = time.perf_counter()
    try:
        for step in steps:
            if getattr(step, "stage", None) == "geometry":
                print_confidence(step.transform)
                if args.warped_output:
                    write_image(args.warped_output, step.warped, overwrite=args.overwrite)
                continue
            if bar is None:
                bar = progress_bar(step.total, f"texture ({step.backbone})")
            bar.update(1)
            bar.set_postfix(level=f"{step.level}/{step.levels}", loss=f"{step.loss:.4g}",
                            refresh=False)  # fmt: skip
            if step.done:
                result = step.image
    finally:
        steps.close()
        if bar is not None:
            bar.close()
    write_image(args.output, result, overwrite=args.overwrite)
    height, width = result.shape[:2]
    print(f"wrote {args.output} ({width} x {height} px, {time.perf_counter() - started:.1f} s)",
          file=sys.stderr)  # fmt: skip
    return 0


def _register_transfer(sub) -> None:
    from .core.estimate import METHODS, MODELS
    from .core.texture import OPTIMIZERS, PRESET_NAMES

    parser = sub.add_parser(
        "transfer",
        help="transfer the texture of style image(s) onto a content image (Gatys et al.), "
        "optionally after warping it to a geometry style",
        description="Texture transfer, coarse to fine (Gatys et al.): a content loss and Gram "
        "style losses on an ImageNet network. auto takes VGG-19 (conv4_2; conv1_1..conv5_1) when "
        "its weights are here (`napari-geostyle weights`), else the installed EfficientNet-Lite0.",
    )
    parser.add_argument("content", metavar="CONTENT", help="content image")
    parser.add_argument("--texture", required=True, nargs="+", metavar="STYLE",
                        help="texture style image(s)")  # fmt: skip
    parser.add_argument("--texture-weights", type=float, nargs="+", metavar="W",
                        help="one weight per style image (default: equal)")  # fmt: skip
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output image file")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output files that exist (default: refuse)")  # fmt: skip
    parser.add_argument("--geometry", metavar="STYLE",
                        help="geometry style image: warp the content to its geometry first "
                        "(geometric style transfer, both stages)")  # fmt: skip
    parser.add_argument("--model", choices=MODELS, default="affine+tps",
                        help="warp model with --geometry (default: affine+tps)")  # fmt: skip
    parser.add_argument("--method", choices=METHODS, default="network",
                        help="warp estimate with --geometry (default: network)")  # fmt: skip
    parser.add_argument(
        "--strength",
        type=float,
        default=1.0,
        metavar="S",
        help="with --geometry: 0 (no warp) .. 1 (the full warp; default)",
    )
    parser.add_argument("--warped-output", metavar="FILE",
                        help="with --geometry, also write the warped content here")  # fmt: skip
    parser.add_argument("--hints", metavar="FILE.csv", help="with --geometry: " + hints_help())
    parser.add_argument("--preset", choices=PRESET_NAMES, default="balanced",
                        help="iteration schedule and default size (default: balanced)")  # fmt: skip
    parser.add_argument("--size", type=int, metavar="PX",
                        help="longest side of the output (default: from the preset)")  # fmt: skip
    parser.add_argument("--levels", type=int, default=4, help="pyramid levels (default: 4)")
    parser.add_argument("--iterations", type=int, nargs="+", metavar="N",
                        help="iterations per level: one number, or one per level coarsest "
                        "first (default: from the preset)")  # fmt: skip
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="lbfgs")
    parser.add_argument("--style-weight", type=float, metavar="W", help="style loss weight")
    parser.add_argument("--content-weight", type=float, metavar="W", help="content loss weight")
    parser.add_argument("--preserve-color", action="store_true",
                        help="transfer luminance only and keep the content's colours")  # fmt: skip
    parser.add_argument(
        "--backbone",
        default="auto",
        help="auto (VGG-19 if its weights are here, else efficientnet), vgg19, efficientnet, "
        "random (a test device: loses the content) or a VGG-19 weights file (default: auto)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=0, help="random seed (noise init)")
    parser.set_defaults(func=_cmd_transfer)


_REGISTRY.append(_register_transfer)


# --------------------------------------------------------------------------- weights
def _cmd_weights(args) -> int:
    from .core import weights

    if args.download:
        if weights.offline():  # refuse here, before anything could touch the network
            raise CLIError(
                f"{weights.ENV_OFFLINE} is set, so nothing is downloaded; unset it to run "
                f"`{weights.DOWNLOAD_COMMAND}`, or set {weights.ENV_WEIGHTS} to a local file."
            )
        path = weights.resolve_vgg19_weights(download=True)
        print(f"VGG-19 weights: {path}", file=sys.stderr)
    info = weights.describe_vgg19_weights(check=True)  # a corrupt file is not "present"
    print_device_note()
    if args.path:
        if not info["found"]:
            print("not found", file=sys.stderr)
            return 1
        print(info["path"])
        return 0
    print("VGG-19 (ImageNet) weights are looked for, in order:")
    for entry in info["looked"]:
        state = "found" if entry["exists"] else "missing"
        if entry.get("problem"):
            state = f"unusable: {_one_line(entry['problem'])}"
        where = entry["path"] or "(not set)"
        print(f"  {entry['where']:<40} {where}  [{state if entry['path'] else '-'}]")
    print(
        f"  download from {info['url']}"
        + (
            "  (disabled: GEOSTYLE_OFFLINE)"
            if info["offline"]
            else f"  (run `{info['download_command']}`)"
        )
    )
    if info["found"]:
        print(f"present: {info['path']}")
    else:
        print(
            "not present: texture transfer uses the installed ImageNet EfficientNet-Lite0; "
            "VGG-19 is an upgrade (Gatys et al.'s own network)."
        )
        print(info["help"])
    _print_geometry_features()
    return 0


def _print_geometry_features() -> None:
    """The ImageNet EfficientNet-Lite0 weights the geometry search and refinement use."""
    from .core import weights

    try:
        path = weights.resolve_efficientnet_weights()
        state = f"present: {path}" if path is not None else "not installed"
    except ValueError as error:
        path, state = None, f"unusable: {_one_line(str(error))}"
    print(f"geometry features, EfficientNet-Lite0 (ImageNet), installed with the package: {state}")
    if path is None:
        print("  the geometry search falls back to edge layouts. "
              + weights.how_to_get_efficientnet_weights())  # fmt: skip


def _register_weights(sub) -> None:
    parser = sub.add_parser(
        "weights",
        help="where the VGG-19 weights are looked for, whether present; --download fetches them",
    )
    parser.add_argument("--download", action="store_true",
                        help="download torchvision's VGG-19 (548 MB once; a trimmed 80 MB trunk "
                        "is kept)")  # fmt: skip
    parser.add_argument(
        "--path",
        action="store_true",
        help="print only the path of the weights in use (exit 1 if none)",
    )
    parser.set_defaults(func=_cmd_weights)


_REGISTRY.append(_register_weights)


# --------------------------------------------------------------------------- warp
def _cmd_warp(args) -> int:
    from .core.landmarks import read_bigwarp_csv
    from .core.transforms import check_strength, fit_affine, fit_tps, with_strength
    from .core.warp import warp_image

    strength = check_strength(args.strength)
    if (args.landmarks is None) == (args.geometry is None):
        raise CLIError(
            "give --landmarks FILE (warp through them) or --geometry STYLE (estimate the warp "
            "to its geometry, steered by --hints FILE.csv if given), not both"
        )
    if args.hints and args.geometry is None:
        raise CLIError("--hints steer the estimate to --geometry STYLE: give --geometry")
    inputs = [args.content, args.landmarks or args.geometry, *([args.hints] if args.hints else [])]
    check_not_an_input([args.output], inputs)
    check_output_path(args.output, args.overwrite)
    image = read_image(args.content)
    if args.geometry is not None:
        from .core.estimate import estimate_warp

        hints = read_hints(args.hints) if args.hints else None
        transform = estimate_warp(
            image, read_image(args.geometry), model=args.model, method=args.method,
            device=args.device, strength=strength, hints=hints,
        )  # fmt: skip
        print_confidence(transform)
        warped = warp_image(image, transform, device=args.device, padding=args.padding)
        write_image(args.output, warped, overwrite=args.overwrite)
        used = f", {len(hints[0])} hints" if hints is not None else ""
        print(f"wrote {args.output} ({args.model} estimate{used})", file=sys.stderr)
        return 0
    content_points, target_points = read_bigwarp_csv(args.landmarks)
    if args.affine:
        transform = fit_affine(content_points, target_points)
    else:
        transform = fit_tps(content_points, target_points, regularization=args.regularization)
    transform = with_strength(transform, strength)
    warped = warp_image(image, transform, device=args.device, padding=args.padding)
    write_image(args.output, warped, overwrite=args.overwrite)
    kind = "affine" if args.affine else "thin-plate spline"
    print(f"wrote {args.output} ({kind}, {len(content_points)} landmark pairs)", file=sys.stderr)
    return 0


def _register_warp(sub) -> None:
    from .core.warp import PADDINGS

    parser = sub.add_parser(
        "warp",
        help="warp an image with landmark pairs from a BigWarp CSV, or to a geometry style",
        description="Warp CONTENT so that each moving landmark lands on its target landmark "
        "(BigWarp CSV: name, active, moving x, moving y, target x, target y; x = column), or "
        "(--geometry STYLE) to the geometry the estimate finds, steered by --hints.",
    )
    parser.add_argument("content", metavar="CONTENT", help="image to warp (the moving image)")
    from .core.estimate import METHODS, MODELS

    parser.add_argument("--landmarks", metavar="FILE", help="BigWarp landmark CSV")
    parser.add_argument("--geometry", metavar="STYLE",
                        help="instead of --landmarks: estimate the warp to this image's "
                        "geometry (prints its confidence)")  # fmt: skip
    parser.add_argument("--hints", metavar="FILE.csv", help="with --geometry: " + hints_help())
    parser.add_argument("--model", choices=MODELS, default="affine+tps",
                        help="with --geometry (default: affine+tps)")  # fmt: skip
    parser.add_argument("--method", choices=METHODS, default="network",
                        help="with --geometry (default: network)")  # fmt: skip
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output image file")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output file if it exists (default: refuse)",
    )
    parser.add_argument(
        "--regularization",
        type=float,
        default=0.0,
        metavar="R",
        help="thin-plate spline smoothing (0 = pass exactly through the landmarks)",
    )
    parser.add_argument("--affine", action="store_true", help="fit a least-squares affine instead")
    parser.add_argument(
        "--strength",
        type=float,
        default=1.0,
        metavar="S",
        help="0 (no warp) .. 1 (the full warp; default)",
    )
    parser.add_argument(
        "--padding",
        choices=PADDINGS,
        default="border",
        help="what samples outside the image get (default: border)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.set_defaults(func=_cmd_warp)


_REGISTRY.append(_register_warp)


# --------------------------------------------------------------------------- train-geometry
def _cmd_train_geometry(args) -> int:
    import json

    from .core import training

    out = Path(args.out)
    # --resume continues --out (and replaces its validation figure); else it must be new
    replace = args.overwrite or args.resume
    check_output_path(out, replace, image=False)
    figure = out.with_suffix(".validation.png")
    check_output_path(figure, replace)
    if args.steps is None and args.seconds is None:
        raise CLIError("give --steps or --seconds (or both)")
    if args.val_count < 1:
        raise CLIError(f"--val-count must be at least 1; got {args.val_count}")
    images = training.load_images(args.images)
    # the validation images are read now: a bad --val-images fails before training, not after
    validation = training.load_images(args.val_images or args.images, min_size=32)
    print(f"{len(images)} training images", file=sys.stderr)
    bar = None  # drawn at the first step: the arguments are checked before it
    last = None
    try:
        for progress in training.train_geometry(
            images,
            args.model,
            args.trunk,
            steps=args.steps,
            seconds=args.seconds,
            batch_size=args.batch_size,
            lr=args.lr,
            device=args.device,
            out=out,
            resume=args.resume,
            checkpoint_every=args.checkpoint_every,
            loss=args.loss,
            backbone=args.backbone,
            seed=args.seed,
        ):
            if bar is None:
                bar = progress_bar(args.steps, f"train {args.model}")
            bar.n = progress.step
            bar.set_postfix(loss=f"{progress.loss:.5f}", lr=f"{progress.lr:.1e}")
            if progress.checkpoint:
                bar.write(f"checkpoint {progress.checkpoint} (step {progress.step})")
            last = progress
    finally:  # an error message then starts on a line of its own
        if bar is not None:
            bar.close()
    print(
        f"wrote {out} after {last.step} steps, {last.elapsed:.0f} s, loss {last.loss:.5f}",
        file=sys.stderr,
    )
    report = training.evaluate_geometry(
        validation[: args.val_count],
        args.model,
        ("identity", "network"),
        pairs_per_image=2,
        trunk=args.trunk,
        checkpoint=out,
        device=args.device,
        keep_pairs=4,
    )
    write_image(figure, training.validation_figure(report.pop("examples"), ("network",)))
    print(json.dumps(report, indent=1))
    print(f"validation figure {figure}", file=sys.stderr)
    return 0


def _register_train_geometry(sub) -> None:
    from .core.geonet import MODEL_KINDS, TRUNKS
    from .core.training import LOSSES

    p = sub.add_parser(
        "train-geometry",
        help="train the geometry network on synthetic pairs from image folders",
        description="Self-supervised training (random affine/TPS pairs with appearance "
        "randomisation) of the geometry network; writes a checkpoint and a validation figure.",
    )
    p.add_argument("--images", nargs="+", required=True, help="image folders or files")
    p.add_argument("--model", choices=MODEL_KINDS, default="affine")
    p.add_argument("--trunk", choices=TRUNKS, default="embedded")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None, help="wall-clock budget")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", choices=LOSSES, default="grid")
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default="auto", help="VGG-19 weights for --trunk vgg19")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--resume", action="store_true", help="continue from --out's weights")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if --out exists (replaces it and its figure)",
    )
    p.add_argument("--checkpoint-every", type=float, default=60.0, help="seconds")
    p.add_argument(
        "--val-images",
        nargs="+",
        default=None,
        help="held-out images for the validation figure (default: --images)",
    )
    p.add_argument("--val-count", type=int, default=4)
    p.set_defaults(func=_cmd_train_geometry)


_REGISTRY.append(_register_train_geometry)


# --------------------------------------------------------------------------- eval-geometry
def _checkpoint_argument(args):
    """``--checkpoint`` as ``estimate_warp`` takes it (one path, or AFFINE TPS for affine+tps)."""
    if not args.checkpoint:
        return None
    if args.model == "affine+tps":
        if len(args.checkpoint) != 2:
            raise CLIError("--model affine+tps needs two checkpoints: AFFINE TPS")
        return {"affine": args.checkpoint[0], "tps": args.checkpoint[1]}
    if len(args.checkpoint) != 1:
        raise CLIError(f"--model {args.model} takes one checkpoint")
    return args.checkpoint[0]


def _cmd_eval_geometry(args) -> int:
    import json

    from .core import training

    if (args.images is None) == (args.pairs is None):
        raise CLIError(
            "give --pairs FILE (images with corresponding landmarks: different "
            "objects) or --images (synthetic warps of the same image), not both"
        )
    if args.figure and args.pairs is None:  # else it would be checked, then never drawn
        raise CLIError("--figure draws landmark pairs: it goes with --pairs, not --images")
    for path in (args.json, args.figure):
        if path:
            check_output_path(path, args.overwrite, image=path == args.figure)
    checkpoint = _checkpoint_argument(args)
    if args.pairs is not None:
        return _eval_landmark_pairs(args, checkpoint)
    report = training.evaluate_geometry(
        training.load_images(args.images, min_size=32), args.model,
        ("identity", *args.method), pairs_per_image=args.pairs_per_image,
        seed=1234 if args.seed is None else args.seed, trunk=args.trunk, checkpoint=checkpoint,
        device=args.device, estimate_options={"init": args.init},
    )  # fmt: skip
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        write_text(args.json, text, overwrite=args.overwrite)
    return 0


def _print_pair(index: int, rows: dict) -> None:
    """One line on stderr per evaluated pair: PCK@0.1 (and confidence) of each row."""
    cells = [
        f"{row} {pck:.2f}" + ("" if confidence is None else f" (confidence {confidence:.2f})")
        for row, (pck, confidence) in rows.items()
    ]
    print(f"pair {index + 1}: " + "; ".join(cells), file=sys.stderr, flush=True)


def _eval_landmark_pairs(args, checkpoint) -> int:
    import json

    from .core import landmark_eval

    count = None if args.count == 0 else args.count
    report = landmark_eval.run_protocol(
        args.pairs, model=args.model, methods=tuple(args.method), count=count,
        seed=0 if args.seed is None else args.seed,
        protocol=args.protocol, image_root=args.image_root,
        keep_examples=args.figure_pairs if args.figure else 0, device=args.device,
        trunk=args.trunk, checkpoint=checkpoint, init=args.init, clicks=tuple(args.clicks),
        on_pair=_print_pair,
    )  # fmt: skip
    print(
        f"{report.pairs} pairs, model {report.model}, protocol {report.protocol}, init {args.init}"
    )
    print(report.table())
    if args.json:
        write_text(args.json, json.dumps(report.to_dict(), indent=1), overwrite=args.overwrite)
    if args.figure:
        write_image(
            args.figure,
            landmark_eval.landmark_figure(report.examples, args.method),
            overwrite=args.overwrite,
        )
        print(f"wrote {args.figure}", file=sys.stderr)
    return 0


def _register_eval_geometry(sub) -> None:
    from .core.estimate import INITS, METHODS, MODELS
    from .core.geonet import TRUNK_CHOICES
    from .core.landmark_eval import PROTOCOLS

    p = sub.add_parser(
        "eval-geometry",
        help="accuracy of the geometry stage: across different objects (--pairs) or on "
        "synthetic warps (--images)",
        description="--pairs FILE: pairs of DIFFERENT images with corresponding landmarks (a "
        ".npz landmark set, or a Proposal Flow PF-WILLOW/PF-PASCAL pair CSV with XA;YA;XB;YB "
        "columns); prints PCK@0.05/0.1/0.15 (alpha x the longest side of the style's landmark "
        "box) of identity, the chosen methods and the affine fitted on the true landmarks, all "
        "in the same run. --images: mean lattice error (%% of the side) and PCK on synthetic "
        "warps of the same image.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", metavar="FILE", help=".npz landmark set or PF pair .csv")
    source.add_argument("--images", nargs="+", help="held-out image folders or files")
    p.add_argument("--model", choices=MODELS, default="affine+tps")
    p.add_argument("--method", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument(
        "--init", choices=INITS, default="search", help="where the networks start (default: search)"
    )
    p.add_argument(
        "--trunk",
        choices=TRUNK_CHOICES,
        default="auto",
        help="whose networks: auto (the EfficientNet-Lite0 ones when they ship and its ImageNet "
        "weights are installed, else embedded)",
    )
    p.add_argument(
        "--checkpoint",
        nargs="+",
        default=None,
        help="checkpoint file(s); affine+tps takes AFFINE TPS; default: shipped",
    )
    p.add_argument(
        "--count", type=int, default=40, help="--pairs: number of pairs (0 = all; default: 40)"
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=None,
        help="--pairs: 'perturbed' (zoom 1.4, random similarity on the content; "
        "default for .npz) or 'as-is' (default for PF CSVs)",
    )
    p.add_argument("--image-root", default=None, help="PF CSV: image folder (default: its folder)")
    p.add_argument(
        "--clicks",
        type=int,
        nargs="+",
        default=[0],
        metavar="K",
        help="--pairs: simulated clicks per pair, as hints (several values in one run, e.g. "
        "--clicks 0 2 3): click k is the mean of the landmarks in the set's click group k "
        "(farthest-point samples without click_groups), with noise; PCK counts only the "
        "landmarks outside the clicked groups (default: 0, the automatic mode)",
    )
    p.add_argument("--pairs-per-image", type=int, default=4, help="--images: pairs per image")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="pair choice and perturbations (default: 0 for --pairs, 1234 for --images)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.add_argument("--figure", metavar="PNG", help="--pairs: a figure of the first pairs")
    p.add_argument("--figure-pairs", type=int, default=4)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_eval_geometry)


_REGISTRY.append(_register_eval_geometry)


# --------------------------------------------------------------------------- demo (napari)
def _cmd_demo(args) -> int:
    """Open napari with the sample images and the GeoStyle widgets docked."""
    try:
        import napari
    except ImportError as error:
        raise CLIError("the demo needs napari: pip install 'napari[all]'") from error
    if args.screenshot:  # before napari starts, not after the warp
        check_output_path(args.screenshot, args.overwrite)

    viewer = napari.Viewer(title="GeoStyle demo")
    viewer.open_sample("napari-geostyle", "content_style")
    viewer.window.resize(1500, 950)
    for name in ("Geometric Style Transfer", "Texture Transfer"):
        viewer.window.add_plugin_dock_widget("napari-geostyle", name, tabify=True)
    # added last so its tab is the one shown
    _, warp_widget = viewer.window.add_plugin_dock_widget(
        "napari-geostyle", "Geometric Warp", tabify=True
    )
    warp_widget.content_combo.set_layer("content")
    warp_widget.style_combo.set_layer("geometry style")
    warp_widget.model_combo.setCurrentText(args.model)
    warp_widget.method_combo.setCurrentText(args.method)
    outcome = {"status": 0}
    if args.screenshot:
        _screenshot_after_warp(viewer, warp_widget, args.screenshot, outcome)
    napari.run()
    return outcome["status"]


def _screenshot_after_warp(viewer, widget, path, outcome) -> None:
    """Run the warp, then save a screenshot of the whole window and quit (for the README)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    poll = QTimer()
    poll.setInterval(200)

    def check():
        if widget.last_error is not None:
            print(f"error: the warp failed: {widget.last_error}", file=sys.stderr)
            outcome["status"] = 2
        elif widget.live is None or widget.busy:
            return
        else:
            viewer.layers["content warped"].opacity = 0.85
            for name in ("content", "geometry style", "texture style"):
                viewer.layers[name].visible = name == "content"
            viewer.reset_view()
            shot = viewer.screenshot(canvas_only=False, flash=False)
            try:
                write_image(path, shot)  # atomic; --overwrite was checked at the start
                print(f"saved {path}")
            except CLIError as error:
                print(f"error: {error}", file=sys.stderr)
                outcome["status"] = 2
        poll.stop()
        viewer.close()
        QApplication.instance().quit()

    poll.timeout.connect(check)
    widget.run()
    poll.start()
    outcome["poll"] = poll  # keep the timer alive while napari runs


def _register_demo(sub) -> None:
    from .core.estimate import METHODS, MODELS

    p = sub.add_parser(
        "demo",
        help="open napari with sample images and the GeoStyle widgets",
        description="Open napari with the 'content + style' sample and the GeoStyle widgets "
        "docked (Geometric Warp, Texture Transfer, Geometric Style Transfer).",
    )
    p.add_argument(
        "--screenshot",
        metavar="PATH",
        help="run the warp, save a screenshot of the window to PATH, then quit",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the --screenshot file if it exists (default: refuse)",
    )
    p.add_argument("--model", default="affine+tps", choices=MODELS)
    p.add_argument("--method", default="network", choices=METHODS)
    p.set_defaults(func=_cmd_demo)


_REGISTRY.append(_register_demo)


# --------------------------------------------------------------------------- batch
def _cmd_batch(args) -> int:
    import importlib.util

    from .core.batch import batch_geometric_style_transfer

    if args.geometry is None and not args.texture and args.styles_csv is None:
        raise CLIError(
            "give --geometry (warp), --texture (style), both, or --styles-csv (a style per input)"
        )
    if importlib.util.find_spec("distributed") is None:
        raise CLIError("batch runs on Dask: pip install 'napari-geostyle[batch]'")
    options = {"size": args.size, "levels": args.levels, "preset": args.preset, "backbone": args.backbone,
                   "seed": args.seed, "preserve_color": args.preserve_color}  # fmt: skip
    if args.iterations is not None:
        options["iterations"] = args.iterations[0] if len(args.iterations) == 1 else args.iterations
    results = batch_geometric_style_transfer(
        args.input, args.output, geometry_style=args.geometry,
        texture_style=(args.texture if len(args.texture or ()) > 1 else
                       (args.texture[0] if args.texture else None)),
        styles=args.styles_csv, scheduler=args.scheduler, workers=args.workers,
        processes=not args.threads, device=None if args.device == "auto" else args.device,
        overwrite=args.overwrite, coherent=args.coherent, chunk=args.chunk,
        geometry_per_frame=args.geometry_per_frame, smooth_frames=args.smooth_frames,
        smooth_kernel=args.smooth_kernel, geometry_batch=args.geometry_batch,
        model=args.model, method=args.method, strength=args.strength,
        hints=read_hints(args.hints) if args.hints else None, **options,
    )  # fmt: skip
    counts = {"done": 0, "skipped": 0, "failed": 0}
    bar = progress_bar(results.pending, "batch")  # skipped outputs stay out of the ETA
    bar.unit = "image"
    try:
        for result in results:
            counts[result.status] += 1
            if result.kind == "item" and result.status != "skipped":
                bar.update(1)
            bar.set_postfix(counts, refresh=False)
            if result.status == "failed":
                bar.write(f"failed: {result.output}: {result.error}", file=sys.stderr)
    finally:
        results.close()
        bar.close()
    print(f"{counts['done']} done, {counts['skipped']} skipped (finished before), "
          f"{counts['failed']} failed; manifest: {Path(args.output) / 'manifest.json'}",
          file=sys.stderr)  # fmt: skip
    return 1 if counts["failed"] else 0


def _register_batch(sub) -> None:
    from .core.estimate import METHODS, MODELS
    from .core.texture import PRESET_NAMES

    p = sub.add_parser(
        "batch",
        help="warp and/or style a folder, glob, video or stack of images, on Dask; resumable",
        description="Every input is warped to --geometry, styled with --texture, or both "
        "(--styles-csv: a style per input). Outputs keep the inputs' names in OUTDIR, with "
        "manifest.json/.csv; a rerun skips outputs finished with the same inputs and options.",
    )
    p.add_argument("input", metavar="INPUT", nargs="+",
                   help="folder, glob (quoted), image, video or multi-page TIFF")  # fmt: skip
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument(
        "--geometry",
        "--geometry-style",
        dest="geometry",
        metavar="IMG",
        help="geometry style image (warp the inputs; the default with --styles-csv)",
    )
    p.add_argument(
        "--texture",
        "--texture-style",
        dest="texture",
        nargs="+",
        metavar="IMG",
        help="texture style image(s) (the default with --styles-csv)",
    )
    p.add_argument("--styles-csv", metavar="FILE",
                   help="a style per input: a CSV with columns input, geometry_style, "
                   "texture_style (style paths relative to the CSV; an empty cell takes the "
                   "default, 'none' skips that stage) and optionally hints (a BigWarp CSV of "
                   "hints for that input's warp)")  # fmt: skip
    p.add_argument("--hints", metavar="FILE.csv",
                   help=hints_help("every input") + "; the manifest records each estimate's "
                   "confidence")  # fmt: skip
    p.add_argument("--model", choices=MODELS, default="affine+tps")
    p.add_argument("--method", choices=METHODS, default="network")
    p.add_argument("--strength", type=float, default=1.0, help="warp strength, 0..1")
    p.add_argument(
        "--geometry-batch",
        type=int,
        metavar="N",
        help="estimate the geometry of up to N inputs per task, the network batched "
        "(default: 16 when the workers run on CUDA, else 1: a CPU gains nothing)",
    )
    p.add_argument("--preset", choices=PRESET_NAMES, default="fast",
                   help="texture schedule and default size (default: fast)")  # fmt: skip
    p.add_argument("--size", type=int, metavar="PX", help="longest side of the styled output")
    p.add_argument("--levels", type=int, default=4, help="texture pyramid levels (default: 4)")
    p.add_argument("--iterations", type=int, nargs="+", metavar="N",
                   help="texture iterations per level (default: from the preset)")  # fmt: skip
    p.add_argument("--preserve-color", action="store_true", help="keep the inputs' colours")
    p.add_argument("--backbone", default="auto",
                   help="auto, vgg19, efficientnet, random or a VGG-19 weights file")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scheduler",
        default="local",
        metavar="local|tcp://HOST:PORT",
        help="a local Dask cluster (default) or a running scheduler's tcp:// address, which "
        "must answer within 30 s (checked before the output folder is made)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local workers (default: one per GPU, else one per CPU core)",
    )
    p.add_argument(
        "--threads",
        action="store_true",
        help="local workers as threads of this process (quicker start)",
    )
    p.add_argument("--device", default="auto", help="auto (a GPU per worker), cpu, cuda:N, mps")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--coherent", dest="coherent", action="store_true", default=True,
                       help="videos/stacks: one geometry for all frames, texture warm-started "
                       "from the previous frame (default)")  # fmt: skip
    group.add_argument(
        "--independent",
        dest="coherent",
        action="store_false",
        help="videos/stacks: every frame on its own",
    )
    p.add_argument("--geometry-per-frame", action="store_true",
                   help="videos/stacks, coherent mode: estimate the geometry on every frame and "
                   "smooth it over time, to follow a moving subject without jitter")  # fmt: skip
    p.add_argument("--smooth-frames", type=int, default=5, metavar="N",
                   help="--geometry-per-frame: centred smoothing window in frames, odd "
                   "(default: 5; 1 = no smoothing)")  # fmt: skip
    p.add_argument(
        "--smooth-kernel",
        choices=("gaussian", "box"),
        default="gaussian",
        help="--geometry-per-frame: window weights (default: gaussian, sigma = N/4)",
    )
    p.add_argument("--chunk", type=int, metavar="N",
                   help="coherent mode: restart the warm start every N frames, so chunks of one "
                   "video run in parallel (default: one chain per video)")  # fmt: skip
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs in OUTDIR not made by this batch with these options",
    )
    p.set_defaults(func=_cmd_batch)


_REGISTRY.append(_register_batch)


def main(argv=None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version (0) or a usage error (2): a status, as below
        return 0 if stop.code is None else int(stop.code)
    try:
        if args.max_pixels is not None:
            from .core.media import set_max_pixels

            set_max_pixels(args.max_pixels)
        result = args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
