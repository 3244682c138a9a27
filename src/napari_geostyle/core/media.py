"""Batch inputs and outputs: folders, globs, videos and stacks in; image files, videos and
stacks out, every file written atomically.

Inputs (``collect_inputs``):
- a folder (its image files, sorted by name) or a glob pattern (``"shots/*.png"``);
- a single image file;
- a video file (read with imageio's ffmpeg plugin, ``imageio-ffmpeg``): one frame per item;
- a multi-page TIFF: one page (time point or z slice) per item;
- numpy arrays: a list of 2D images, or one ``(T, H, W)`` / ``(T, H, W, C)`` stack.

Image files travel to the workers as their encoded bytes (decoded there, so a corrupt file fails
in its own task, not in the planning); video frames and stack slices travel decoded. Each item
carries the SHA-256 of its bytes, the batch's resume key.

Writes go to a temporary file in the target folder, fsynced, then ``os.replace``: a kill or a
full disk leaves either the old file, the new one, or a stray temporary file
(``*.geostyle-tmp*``) that never counts as an output and is removed by the next run.
``write_atomic`` is the package's one atomic writer (landmark CSVs, sessions, exports and the
CLI's outputs use it too).
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
TEMP_MARK = ".geostyle-tmp"
FRAME_SUFFIX = ".png"  # frames of a sequence: lossless, so a warm start from disk is exact
DEFAULT_FPS = 25.0


@dataclass(eq=False)
class InputItem:
    """One image to process. ``output`` is its file name relative to the output folder."""

    output: str
    source: str
    digest: str
    data: bytes | None = None  # an encoded image file (decoded on the worker)
    array: np.ndarray | None = None  # a decoded frame / slice / array
    frame: int | None = None
    sequence: str | None = None  # the output name of the sequence the item belongs to
    error: str | None = None  # an input that could not be planned: its task fails with this


@dataclass
class InputSequence:
    """Frames of one video or stack, assembled into ``output`` once every frame is done."""

    output: str
    source: str
    kind: str  # "video" | "stack"
    items: list = field(default_factory=list)
    fps: float | None = None


# --------------------------------------------------------------------------- hashing
def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_array(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + array.tobytes()).hexdigest()


# --------------------------------------------------------------------------- reading
def decode_image(data: bytes, name: str) -> np.ndarray:
    """An image file's bytes as an array; ``ValueError`` naming the file when unreadable."""
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(data, extension=Path(name).suffix.lower() or None))
    except Exception as error:  # imageio raises many types for unreadable files
        message = " ".join(str(error).split())
        raise ValueError(f"cannot read {name} as an image: {message}") from error


def read_image_file(path) -> tuple[np.ndarray, str]:
    """``(array, sha256 of the file's bytes)``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no image file at {path}")
    data = path.read_bytes()
    return decode_image(data, str(path)), digest_bytes(data)


def _tiff_pages(path: Path) -> np.ndarray | None:
    """A multi-page TIFF as a ``(T, H, W[, C])`` stack; None for a single 2D image."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, stack = series.axes, series.asarray()
    except Exception:  # unreadable: left to its own task, which reports it as failed
        return None
    rgb = axes.endswith("S")
    if stack.ndim == (3 if rgb else 2):
        return None
    return stack.reshape(-1, *stack.shape[-(3 if rgb else 2) :])


def _ffmpeg_reason(error: Exception) -> str:
    """The gist of an imageio-ffmpeg error: ffmpeg's own last messages, not its banner."""
    text = str(error)
    head, _, stderr = text.partition("=== stderr ===")
    messages = []
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("[") and "]" in line:  # "[in#0 @ 0x...] moov atom not found"
            message = line.split("]", 1)[1].strip()
            if message and message not in messages:
                messages.append(message)
    reason = "; ".join(messages[-2:]) or " ".join(head.split()) or type(error).__name__
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _read_video(path: Path) -> tuple[list[np.ndarray], float]:
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"cannot read {path} as a video: video needs the imageio-ffmpeg package"
        ) from error
    try:
        reader = imageio.get_reader(path, format="FFMPEG")
    except Exception as error:
        raise ValueError(f"cannot read {path} as a video: {_ffmpeg_reason(error)}") from error
    try:
        fps = float(reader.get_meta_data().get("fps") or DEFAULT_FPS)
        frames = [np.asarray(frame) for frame in reader]
    except Exception as error:  # a stream that breaks off, a codec ffmpeg lacks
        raise ValueError(f"cannot read {path} as a video: {_ffmpeg_reason(error)}") from error
    finally:
        reader.close()
    if not frames:
        raise ValueError(f"video {path} has no frames")
    return frames, fps


def _failed_item(path: Path, error: Exception) -> InputItem:
    """An input that cannot even be planned (an unreadable video): an item whose task fails
    with ``error``, recorded in the manifest as a bad image is, while the others go on."""
    message = " ".join(str(error).split())
    return InputItem(
        output=f"{path.stem}{path.suffix.lower()}",
        source=str(path),
        digest=digest_bytes(f"unreadable {path}: {message}".encode("utf-8", "surrogateescape")),
        error=message,
    )


def load_item(item: InputItem) -> np.ndarray:
    """An item's image, decoded on the worker; ``ValueError`` for an input that failed."""
    if item.error is not None:
        raise ValueError(item.error)
    if item.array is not None:
        return item.array
    return decode_image(item.data, item.source)


def _sequence(path: Path, kind: str, frames, fps=None) -> InputSequence:
    stem = path.stem
    output = f"{stem}{path.suffix.lower() if kind == 'video' else '.tif'}"
    sequence = InputSequence(output=output, source=str(path), kind=kind, fps=fps)
    for index, frame in enumerate(frames):
        frame = np.ascontiguousarray(frame)
        sequence.items.append(
            InputItem(
                output=f"{stem}_frames/{stem}_{index:06d}{FRAME_SUFFIX}",
                source=str(path),
                digest=digest_array(frame),
                array=frame,
                frame=index,
                sequence=output,
            )
        )
    return sequence


def _image_item(path: Path) -> InputItem:
    data = path.read_bytes()
    return InputItem(output=path.name, source=str(path), digest=digest_bytes(data), data=data)


def _expand(entry) -> list[Path]:
    """The files of one input: a file or folder that exists is taken literally (a name such as
    ``photo [edited].png`` is never a glob pattern), anything else with ``*?[`` is a glob."""
    text = str(entry)
    if any(c in text for c in "*?[") and not Path(text).expanduser().exists():
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not found:
            raise ValueError(f"no files match {text}")
        return found
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
        )
        if not found:
            raise ValueError(
                f"folder {path} holds no image or video files "
                f"({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})"
            )
        return found
    if not path.is_file():
        raise ValueError(f"no file, folder or matching files at {text}")
    return [path]


def collect_inputs(inputs) -> tuple[list[InputItem], list[InputSequence]]:
    """Every item to process (sequence frames included) and the sequences to assemble."""
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 4 or (inputs.ndim == 3 and inputs.shape[2] not in (1, 3, 4)):
            sequence = _sequence(Path("stack.tif"), "stack", list(inputs))
            return list(sequence.items), [sequence]
        inputs = [inputs]
    entries = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not entries:
        raise ValueError("no inputs given: pass a folder, a glob, a video, a stack or images")
    items, sequences = [], []
    for number, entry in enumerate(entries):
        if isinstance(entry, np.ndarray):
            array = np.ascontiguousarray(entry)
            items.append(
                InputItem(
                    output=f"image_{number:04d}.png",
                    source=f"array {number}",
                    digest=digest_array(array),
                    array=array,
                )
            )
            continue
        for path in _expand(entry):
            suffix = path.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                try:
                    sequences.append(_sequence(path, "video", *_read_video(path)))
                except ValueError as error:  # fails alone, in its own task, like a bad image
                    items.append(_failed_item(path, error))
                    continue
            elif suffix in (".tif", ".tiff") and (pages := _tiff_pages(path)) is not None:
                sequences.append(_sequence(path, "stack", pages))
            else:
                items.append(_image_item(path))
                continue
            items.extend(sequences[-1].items)
    names = [item.output for item in items] + [s.output for s in sequences]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"several inputs would write the same output {duplicates[0]}: "
            "give inputs with distinct file names"
        )
    return items, sequences


# --------------------------------------------------------------------------- writing
def encode_image(image: np.ndarray, name: str) -> bytes:
    """``image`` encoded in the format of ``name``'s suffix (floats become uint8; uint16 is kept
    where the format holds it)."""
    import imageio.v3 as iio

    from .images import from_float

    suffix = Path(name).suffix.lower()
    array = np.asarray(image)
    if array.dtype.kind == "f":
        array = from_float(np.clip(array, 0.0, 1.0), np.uint8)
    if array.dtype == np.uint16 and suffix not in (".png", ".tif", ".tiff"):
        array = (array >> 8).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return iio.imwrite("<bytes>", array, extension=suffix)


def _temp_path(path: Path) -> Path:
    handle, name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f"{TEMP_MARK}{path.suffix}", dir=path.parent
    )
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # an ordinary file's mode, not mkstemp's private 0600
    return Path(name)


def write_atomic(path, data, make_folder: bool = True) -> Path:
    """Write ``path`` atomically: the package's one writer of files that must never be seen
    half-written (batch outputs and manifests, landmark CSVs, sessions, transform JSON,
    ``.npy`` exports, the CLI's outputs).

    ``data`` is the file's bytes (``str`` is written as UTF-8), or a callable ``write(temp)``
    that writes the file at the ``Path`` it is given (imageio, tifffile, ``np.save``). The
    file goes to a temporary file in the same folder, is flushed to disk (fsync), then moved
    over ``path`` with ``os.replace`` (and the folder entry is synced): a crash, a kill or a full
    disk leaves either the old file or the new one, never a truncated one. The temporary file is
    removed on any error, which propagates (``OSError`` for a full disk or a read-only folder).
    ``make_folder`` creates missing parent folders. Returns ``path``.
    """
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(path)
    try:
        if callable(data):
            data(temp)
            with open(temp, "rb+") as handle:  # what the writer left, flushed to the disk
                os.fsync(handle.fileno())
        else:
            with open(temp, "wb") as handle:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_folder(path.parent)
    finally:
        temp.unlink(missing_ok=True)
    return path


def write_user_file(path, data, what: str) -> Path:
    """``write_atomic`` for a file the user named (an export, a session): its folder must exist,
    and a failure (no folder, a folder in the way, permissions, a full disk) is a ``ValueError``
    that names the file and the reason, the previous file left intact."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write the {what} {path}: folder {path.parent} does not exist.")
    if path.is_dir():
        raise ValueError(f"cannot write the {what} {path}: it is a folder; give a file name.")
    try:
        return write_atomic(path, data, make_folder=False)
    except OSError as error:
        reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"cannot write the {what} {path}: {reason}.") from error


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    try:
        handle = os.open(folder, os.O_RDONLY | flags)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def remove_stale_temporaries(folder) -> int:
    """Delete temporary files a killed run left in ``folder`` (recursively); how many."""
    count = 0
    for path in Path(folder).rglob(f"*{TEMP_MARK}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            count += 1
    return count


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _mux_audio(video: Path, source: Path) -> str:
    """Copy ``source``'s audio (if any) into ``video`` in place; a note on what happened."""
    muxed = _temp_path(video)
    try:
        for audio_codec in ("copy", "aac"):
            command = [
                _ffmpeg(),
                "-y",
                "-loglevel",
                "error",
                "-i",
                str(video),
                "-i",
                str(source),
                "-map",
                "0:v:0",
                "-map",
                "1:a?",
                "-c:v",
                "copy",
                "-c:a",
                audio_codec,
                "-shortest",
                str(muxed),
            ]
            if subprocess.run(command, capture_output=True, check=False).returncode == 0:
                os.replace(muxed, video)
                return f"audio from the input ({audio_codec})"
        return "audio could not be copied"
    finally:
        muxed.unlink(missing_ok=True)


def write_video(path, frames, fps: float, audio_from=None) -> str:
    """Frames (uint8 RGB/gray) as an H.264 video at ``fps``, atomically, with ``audio_from``'s
    audio when it has any. Returns a note on the audio."""
    import imageio.v2 as imageio

    note = ["no audio"]

    def write(temp: Path) -> None:
        # macro_block_size=2: keep the size (H.264 with yuv420p needs even sides only)
        writer = imageio.get_writer(
            temp,
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            quality=8,
            macro_block_size=2,
            ffmpeg_log_level="error",
        )
        try:
            for frame in frames:
                writer.append_data(np.asarray(frame))
        finally:
            writer.close()
        if audio_from is not None:
            note[0] = _mux_audio(temp, Path(audio_from))

    write_atomic(path, write, make_folder=False)
    return note[0]


def write_stack(path, frames) -> None:
    """Frames as one multi-page TIFF, atomically."""
    import tifffile

    stack = np.stack([np.asarray(f) for f in frames])
    rgb = stack.ndim == 4 and stack.shape[3] in (3, 4)
    write_atomic(
        path,
        lambda temp: tifffile.imwrite(temp, stack, photometric="rgb" if rgb else "minisblack"),
        make_folder=False,
    )
