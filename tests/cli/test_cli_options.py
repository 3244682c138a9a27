"""The options several commands take come from one helper each (``cli/options.py``), with one
default, the core's; the package's entry points (console script, ``python -m``) run ``main``."""

from __future__ import annotations

import argparse
import inspect
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from napari_geostyle import cli
from napari_geostyle.cli import options

#: each helper, and every command that takes its options
GROUPS = {
    options.add_device: ("transfer", "warp", "train-geometry", "eval-geometry", "batch"),
    options.add_model: ("transfer", "warp", "eval-geometry", "demo", "batch"),
    options.add_method: ("transfer", "warp", "demo", "batch"),
    options.add_strength: ("transfer", "warp", "batch"),
    options.add_hints: ("transfer", "warp", "batch"),
    options.add_texture_options: ("transfer", "batch"),
    options.add_output: ("transfer", "warp", "batch"),
    options.add_overwrite: (
        "transfer", "warp", "train-geometry", "eval-geometry", "demo", "batch",
    ),
}  # fmt: skip
#: options that share a helper's name but are another option: (command, option) -> why
OTHER_OPTIONS = {
    ("train-geometry", "--model"): "the network kind to train (affine or tps)",
    ("train-geometry", "--backbone"): "the VGG-19 weights of --trunk vgg19",
    ("train-geometry", "--seed"): "the training's random seed",
    ("eval-geometry", "--method"): "several methods, compared in one run",
    ("eval-geometry", "--seed"): "the pairs' seed, its default per protocol",
}
#: what makes two declarations the same option (the help may say when it applies)
FIELDS = ("dest", "default", "choices", "type", "nargs", "const", "required", "option_strings")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _declared(helper) -> dict[str, argparse.Action]:
    """The actions ``helper`` adds to an empty parser, by option string."""
    parser = argparse.ArgumentParser(add_help=False)
    helper(parser)
    return {option: action for action in parser._actions for option in action.option_strings}


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("helper", list(GROUPS), ids=lambda helper: helper.__name__)
def test_every_command_takes_the_shared_options_from_their_helper(helper):
    commands = _commands()
    for name in GROUPS[helper]:
        taken = _actions(commands[name])
        for option, reference in _declared(helper).items():
            assert option in taken, f"{name} lacks {option}"
            for field in FIELDS:
                assert getattr(taken[option], field) == getattr(reference, field), (
                    f"{name} {option}: {field} differs from options.{helper.__name__}"
                )


def test_no_command_declares_a_shared_option_by_hand():
    """A command with a helper's option name either takes the helper or is a listed other
    option: a new command cannot give --device or --preset a default of its own."""
    shared = {option: helper for helper in GROUPS for option in _declared(helper)}
    for name, parser in _commands().items():
        for option in _actions(parser):
            helper = shared.get(option)
            if helper is None or name in GROUPS[helper]:
                continue
            assert (name, option) in OTHER_OPTIONS, (
                f"{name} declares {option} itself: use options.{helper.__name__}"
            )


def test_transfer_and_batch_have_one_default_preset():
    commands = _commands()
    transfer = commands["transfer"].parse_args(["c.png", "--texture", "s.png", "-o", "o.png"])
    batch = commands["batch"].parse_args(["in/", "-o", "out/", "--texture", "s.png"])
    assert transfer.preset == batch.preset == options.DEFAULT_PRESET == "balanced"
    assert options.texture_options(transfer) == options.texture_options(batch)


def test_the_defaults_are_the_cores():
    from napari_geostyle.core.estimate import estimate_warp
    from napari_geostyle.core.pipeline import iter_geometric_style_transfer
    from napari_geostyle.core.texture import iter_texture_transfer

    texture = inspect.signature(iter_texture_transfer).parameters
    assert options.DEFAULT_PRESET == texture["preset"].default
    assert options.DEFAULT_LEVELS == texture["levels"].default
    assert options.DEFAULT_BACKBONE == texture["backbone"].default
    assert options.DEFAULT_SEED == texture["seed"].default
    for function in (estimate_warp, iter_geometric_style_transfer):
        geometry = inspect.signature(function).parameters
        assert options.DEFAULT_MODEL == geometry["model"].default
        assert options.DEFAULT_METHOD == geometry["method"].default
        assert options.DEFAULT_STRENGTH == geometry["strength"].default


@pytest.mark.parametrize(
    "given, expected",
    [([], None), (["--iterations", "7"], 7), (["--iterations", "3", "2"], [3, 2])],
)
def test_texture_options_are_the_cores_keywords(given, expected):
    parser = argparse.ArgumentParser()
    options.add_texture_options(parser)
    found = options.texture_options(parser.parse_args(["--size", "64", *given]))
    assert found.pop("iterations", None) == expected
    assert found == {"size": 64, "levels": 4, "preset": "balanced", "backbone": "auto",
                     "seed": 0, "preserve_color": False}  # fmt: skip


def test_help_of_every_command_names_the_defaults(capsys):
    for name in _commands():
        assert cli.main([name, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "(default: balanced)" in text and "(default: affine+tps)" in text
    assert "(default: fast)" not in text


def test_the_console_script_and_python_m_run_main():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "napari-geostyle"]
    assert script.value == "napari_geostyle.cli:main" and script.load() is cli.main
    done = subprocess.run(
        [sys.executable, "-m", "napari_geostyle.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("napari-geostyle "), done
    done = subprocess.run(
        [sys.executable, "-m", "napari_geostyle.cli", "warp", "missing.png"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.startswith("error:"), done
