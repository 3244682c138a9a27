"""Planning a batch on the calling process, before any work: the inputs, each input's styles
and hints, every output's resume key, the manifest's header, and the refusals (an output on an
input, a link out of the output folder, a file this batch did not make). The result is a
:class:`_Plan`; nothing is computed yet."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import media, style_table, temporal
from ..manifest import Manifest
from ..texture_trunks import resolve_backbone

GEOMETRY_KEYS = ("model", "method", "strength")


NOT_IN_KEY = ("device", "preview_every")  # do not change the result's meaning


def _load_style(style, name: str):
    """``(array or list of arrays, digests, description)`` for a path, an array or a list."""
    from ..images import validate_image

    if isinstance(style, (list, tuple)):
        loaded = [_load_style(s, f"{name} {i + 1}") for i, s in enumerate(style)]
        return [s[0] for s in loaded], [d for s in loaded for d in s[1]], [s[2] for s in loaded]
    if isinstance(style, (str, Path)):
        array, digest = media.read_image_file(style)
        return validate_image(array, name), [digest], str(style)
    array = validate_image(style, name)
    return array, [media.digest_array(array)], f"array {array.shape} {array.dtype}"


def _key(parts: dict | list) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Plan:
    folder: Path
    items: list
    sequences: list
    styles: dict  # style id -> array (or list of arrays: several texture styles)
    item_styles: dict  # item output -> (geometry style id or None, texture style id or None)
    described: dict  # style id -> its path or a description of the array
    settings: dict
    keys: dict
    todo: list
    skipped: list
    manifest: Manifest
    coherent: bool
    chunk: int | None


def _check_texture_options(texture, options: dict) -> None:
    """Bad texture options fail now (the texture stage plans on a small stand-in content)."""
    from ..texture import iter_texture_transfer

    iter_texture_transfer(np.zeros((64, 64, 3), np.float32), texture, **options).close()


class _Styles:
    """Each distinct style read once: ``add`` gives its id; ``arrays``, ``digests``,
    ``described`` by id."""

    def __init__(self):
        self.arrays, self.digests, self.described, self._ids = {}, {}, {}, {}
        self._by_name: dict = {}  # (stage, path as given) -> id: one resolve per distinct name

    def add(self, style, stage: str, name: str) -> str:
        given = (stage, style) if isinstance(style, (str, Path)) else None
        if given in self._by_name:  # the default style of 100k inputs: resolved once
            return self._by_name[given]
        same = (
            stage,
            str(Path(style).resolve())
            if isinstance(style, (str, Path))
            else tuple(map(str, style))
            if isinstance(style, (list, tuple)) and all(isinstance(s, (str, Path)) for s in style)
            else id(style),
        )
        if same not in self._ids:
            from ..estimate import MIN_SIZE
            from ..images import validate_image

            array, digests, described = _load_style(style, name)
            if stage == "geometry":
                validate_image(array, name, min_size=MIN_SIZE)
            ident = f"{stage}{len(self._ids)}"
            self._ids[same] = ident
            self.arrays[ident], self.digests[ident] = array, digests
            self.described[ident] = described
        if given is not None:
            self._by_name[given] = self._ids[same]
        return self._ids[same]


def _targets(items, sequences) -> list:
    """What a style row can name: each image, and each video or stack as a whole."""
    return [style_table.Target(i.output, i.source) for i in items if i.sequence is None] + [
        style_table.Target(s.output, s.source) for s in sequences
    ]


def _assign_styles(items, sequences, geometry_style, texture_style, styles, store: _Styles):
    """``({item output: (geometry id, texture id)}, table description)``; every target gets its
    row's styles, else the defaults, and must end up with at least one stage."""
    rows, table = ([], None) if styles is None else style_table.load_rows(styles)
    matched = style_table.match_rows(rows, _targets(items, sequences))
    defaults = {"geometry_style": geometry_style, "texture_style": texture_style}
    chosen, bare = {}, []
    for target in _targets(items, sequences):
        row = matched.get(target.output)
        ids: list[str | None] = []
        for column, stage in zip(style_table.STYLE_COLUMNS, ("geometry", "texture")):
            style = row.styles[column] if row is not None else None
            if style is None:
                style = defaults[column]
            if style is None or style is style_table.OFF:
                ids.append(None)
                continue
            where = (
                f"{stage} style"
                if row is None or row.styles[column] is None
                else (f"{stage} style of {target.source} ({row.where})")
            )
            ids.append(store.add(style, stage, where))
        if ids == [None, None]:
            bare.append(target.source)
        chosen[target.output] = tuple(ids)
    if bare:
        more = f" and {len(bare) - 3} more" if len(bare) > 3 else ""
        raise ValueError(
            f"no style for {', '.join(bare[:3])}{more}: name it in the styles table "
            "or give a default geometry style (--geometry-style) and/or texture "
            "style (--texture-style)"
        )
    by_sequence = {s.output: chosen[s.output] for s in sequences}
    item_styles = {
        i.output: by_sequence[i.sequence] if i.sequence is not None else chosen[i.output]
        for i in items
    }
    return item_styles, table


def _assign_hints(items, sequences, styles, hints) -> dict:
    """``{item output: [content_points, style_points] lists or None}``: each input's hints
    from the styles table's ``hints`` column, else ``hints`` (every input's); a video's or
    stack's frames share its hints. Checked now (a ``ValueError`` before any work), apart
    from lying inside the images, which each estimate checks."""
    from ..hints import check_hints

    rows = [] if styles is None else style_table.load_rows(styles)[0]
    matched = style_table.match_rows(rows, _targets(items, sequences))
    anywhere = (math.inf, math.inf)

    def checked(given, where):
        if given is None:
            return None
        try:
            valid = check_hints(given, anywhere, anywhere)
        except ValueError as error:
            raise ValueError(f"hints of {where}: {error}") from None
        return [valid.content_rc.tolist(), valid.style_rc.tolist()]

    default = checked(hints, "the batch")
    chosen = {}
    for target in _targets(items, sequences):
        row = matched.get(target.output)
        if row is not None and row.hints is not None:
            chosen[target.output] = checked(row.hints, row.where)
        else:
            chosen[target.output] = default
    return {
        i.output: chosen[i.sequence] if i.sequence is not None else chosen[i.output] for i in items
    }


def _refuse_links_out_of(folder: Path, names) -> None:
    """The batch writes only inside its output folder: a subfolder of it that is a link to
    somewhere else (a symlinked ``<stem>_frames``) is refused rather than written through."""
    root = folder.resolve()
    for parent in sorted({Path(name).parent for name in names} - {Path(".")}):
        resolved = (folder / parent).resolve()
        if not resolved.is_relative_to(root):
            raise ValueError(
                f"{folder / parent} leads to {resolved}, outside the output folder {folder} "
                "(a link): the batch writes only inside its output folder; remove the link or "
                "choose another output folder."
            )


def _refuse_outputs_on_inputs(folder: Path, items, sequences, style_files) -> None:
    """An output that is an input or a style (the same file after following links, or a hard
    link to it) is refused, with or without ``overwrite``: writing it would destroy the input.
    Files are compared by device and inode, so this is one ``stat`` per input and output."""
    from ..manifest import CSV_NAME, JOURNAL_NAME, MANIFEST_NAME

    # files only (an array's item is "array N"), each once (a video's frames share its path)
    sources = {i.source for i in items if i.array is None or i.sequence is not None}
    sources.update(s.source for s in sequences)
    for style in style_files:  # paths, or a list of them (a styles table may be a mapping)
        named = style if isinstance(style, list) else [style]
        sources.update(s for s in named if isinstance(s, (str, os.PathLike)))
    known: dict[tuple[int, int], str | os.PathLike] = {}
    for source in sources:
        try:
            found = os.stat(source)
        except (OSError, ValueError):  # not a file
            continue
        known.setdefault((found.st_dev, found.st_ino), source)
    if not known:
        return
    names = [i.output for i in items] + [s.output for s in sequences]
    for name in [*names, MANIFEST_NAME, CSV_NAME, JOURNAL_NAME]:
        try:
            found = os.stat(folder / name)
        except (OSError, ValueError):  # not there yet: not an input either
            continue
        source = known.get((found.st_dev, found.st_ino))
        if source is not None:
            raise ValueError(
                f"the output {folder / name} is the input {source} (the same file, after "
                "following links): writing it would destroy the input, overwrite or not; "
                "choose an output folder outside the inputs."
            )


def _plan(
    inputs,
    output_dir,
    geometry_style,
    texture_style,
    *,
    styles,
    device,
    overwrite,
    coherent,
    chunk,
    model,
    method,
    strength,
    geometry_per_frame,
    smooth_frames,
    smooth_kernel,
    geometry_batch,
    texture_options,
    hints=None,
) -> _Plan:
    import importlib.util

    from ... import __version__
    from ..geometry_options import GeometryOptions

    if geometry_style is None and texture_style is None and styles is None:
        raise ValueError(
            "give a geometry style (to warp), a texture style (to style), or both "
            "(or a styles table: one per input)."
        )
    if importlib.util.find_spec("distributed") is None:
        raise ValueError(
            "batch runs on Dask: pip install 'napari-geostyle[batch]' "
            "(dask.distributed and imageio-ffmpeg)."
        )
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a whole number of frames >= 1 or None; got {chunk!r}.")
    if geometry_batch is not None and (
        isinstance(geometry_batch, bool)
        or not isinstance(geometry_batch, int)
        or geometry_batch < 1
    ):
        raise ValueError(
            f"geometry_batch must be a whole number of pairs >= 1 or None (the "
            f"default for the workers' devices); got {geometry_batch!r}."
        )
    per_frame = temporal.per_frame_options(
        geometry_per_frame, smooth_frames, smooth_kernel, coherent
    )
    strength = GeometryOptions(model=model, method=method, strength=strength).strength
    texture_options = {**texture_options, "preview_every": 0}
    items, sequences = media.collect_inputs(inputs)
    store = _Styles()
    item_styles, table = _assign_styles(
        items, sequences, geometry_style, texture_style, styles, store
    )
    uses_geometry = any(g is not None for g, _ in item_styles.values())
    textures = [store.arrays[t] for _, t in item_styles.values() if t is not None]
    # checked even when no input gets a texture: a bad option is a mistake to report, not ignore
    stand_in = np.full((64, 64, 3), 0.5, np.float32)
    _check_texture_options(textures[0] if textures else stand_in, texture_options)
    geometry_options = {"model": model, "method": method, "strength": strength}
    item_hints = _assign_hints(items, sequences, styles, hints)
    texture_key = {k: v for k, v in texture_options.items() if k not in NOT_IN_KEY}
    if textures:  # the network "auto" takes here: the manifest names it, and it is the result's
        texture_key["backbone_used"] = resolve_backbone(texture_options.get("backbone", "auto"),
                                                        download=False).name  # fmt: skip

    def parts(output: str) -> dict:  # what an output's result depends on, but the input
        geometry, texture = item_styles[output]
        result: dict[str, Any] = {"version": 1}
        if geometry is not None:
            result["geometry"] = {"style": store.digests[geometry], **geometry_options}
            if item_hints.get(output) is not None:
                result["geometry"]["hints"] = item_hints[output]
        if texture is not None:
            result["texture"] = {"style": store.digests[texture], **texture_key}
        return result

    folder = Path(output_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"output folder {folder} is a file: give a folder")
    _refuse_outputs_on_inputs(folder, items, sequences, [styles, *store.described.values()])
    _refuse_links_out_of(folder, [i.output for i in items] + [s.output for s in sequences])
    manifest = Manifest(folder)
    settings = {
        "device": device,
        "texture": texture_options if textures else None,
        "geometry": geometry_options if uses_geometry else None,
        "per_frame": per_frame,
        "geometry_batch": geometry_batch,
        "hints": {o: h for o, h in item_hints.items() if h is not None},
    }

    keys: dict[str, str] = {}
    previous_key: dict[str, str] = {}
    for sequence in sequences:
        frames = sequence.items
        geometry, texture = item_styles[frames[0].output]
        for index, item in enumerate(frames):
            extra: dict[str, Any] = {"coherent": bool(coherent)}
            if coherent and geometry is not None and per_frame is None:
                extra["reference"] = frames[0].digest
            elif coherent and geometry is not None and per_frame is not None:
                # its window's frames and the smoothing
                window = temporal.window_range(index, len(frames), per_frame["smooth_frames"])
                extra["per_frame"] = {**per_frame, "window": [frames[j].digest for j in window]}
            if coherent and texture is not None and index % (chunk or len(frames)):
                extra["previous"] = previous_key[sequence.output]
            keys[item.output] = _key({**parts(item.output), "input": item.digest, **extra})
            previous_key[sequence.output] = keys[item.output]
    for item in items:
        keys.setdefault(item.output, _key({**parts(item.output), "input": item.digest}))
    for sequence in sequences:
        keys[sequence.output] = _key([keys[i.output] for i in sequence.items])

    todo = [i for i in items if not manifest.finished(i.output, keys[i.output])]
    skipped = [i for i in items if manifest.finished(i.output, keys[i.output])]
    pending = [i.output for i in todo] + [
        s.output for s in sequences if not manifest.finished(s.output, keys[s.output], "sequences")
    ]
    # a file that a killed run was moving into place (its hash journalled) is redone, not refused
    existing = [name for name in pending if (folder / name).exists() and not manifest.ours(name)]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise ValueError(
            f"{folder / existing[0]}{more} already exist(s) and were not made by this batch "
            "with the same inputs and options: pass overwrite=True (--overwrite) to replace "
            "them, or choose another output folder."
        )

    def default_digests(style, stage):
        return None if style is None else store.digests[store.add(style, stage, f"{stage} style")]

    manifest.header = {
        "package": {"name": "napari-geostyle", "version": __version__},
        "options": {
            "geometry": settings["geometry"],
            "texture": settings["texture"],
            "device": device,
            "coherent": bool(coherent),
            "chunk": chunk,
            "geometry_per_frame": per_frame is not None,
            "smooth_frames": (per_frame or {}).get("smooth_frames"),
            "smooth_kernel": (per_frame or {}).get("smooth_kernel"),
            "geometry_batch": geometry_batch,
        },
        "geometry_style": default_digests(geometry_style, "geometry"),
        "texture_style": default_digests(texture_style, "texture"),
        "styles_table": table,
        "inputs": [str(i) for i in inputs]
        if isinstance(inputs, (list, tuple)) and not any(isinstance(i, np.ndarray) for i in inputs)
        else (str(inputs) if isinstance(inputs, (str, Path)) else "arrays"),
    }
    return _Plan(
        folder,
        items,
        sequences,
        store.arrays,
        item_styles,
        store.described,
        settings,
        keys,
        todo,
        skipped,
        manifest,
        bool(coherent),
        chunk,
    )
