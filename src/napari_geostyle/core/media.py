"""Batch inputs and outputs: folders, globs, videos and stacks in; image files, videos and
stacks out, every file written atomically.

Inputs (``collect_inputs``):
- a folder (its image files, sorted by name) or a glob pattern (``"shots/*.png"``);
- a single image file;
- a video file (read with imageio's ffmpeg plugin, ``imageio-ffmpeg``): one frame per item;
- a multi-page TIFF: one page (time point or z slice) per item;
- numpy arrays: a list of 2D images, or one ``(T, H, W)`` / ``(T, H, W, C)`` stack.

Planning holds no pixels: an image file is planned by the SHA-256 of its bytes (streamed), a
video or a stack frame by frame (each frame's digest); the worker that needs an input reads it
then (the file's bytes, a stack's page, a video's frame, checked against the planned digest), so
a corrupt file fails in its own task, not in the planning. Arrays given in memory travel as they
are. The digests are the batch's resume keys.

Writes go to a temporary file in the target folder, fsynced, then ``os.replace``: a kill or a
full disk leaves either the old file, the new one, or a stray temporary file
(``*.geostyle-tmp*``) that never counts as an output and is removed by the next run.
``write_atomic`` is the package's one atomic writer (landmark CSVs, sessions, exports and the
CLI's outputs use it too).
"""

from __future__ import annotations

import atexit
import glob
import hashlib
import os
import subprocess
import tempfile
import threading
from collections import Counter
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
    stored: np.ndarray | None = None  # a decoded frame / slice / array held in memory
    frame: int | None = None
    sequence: str | None = None  # the output name of the sequence the item belongs to
    error: str | None = None  # an input that could not be planned: its task fails with this
    # read when used: "file" (the image file ``source``), "video" / "tiff" (its frame ``frame``)
    reader: str | None = None
    shape: tuple | None = None  # a lazily read frame's shape, known from the planning

    @property
    def array(self) -> np.ndarray | None:
        """The decoded frame (a lazy one read from its file now), or None for an image file."""
        if self.stored is not None:
            return self.stored
        if self.reader in ("video", "tiff"):
            return read_frame(self)
        return None


@dataclass
class InputSequence:
    """Frames of one video or stack, assembled into ``output`` once every frame is done."""

    output: str
    source: str
    kind: str  # "video" | "stack"
    items: list = field(default_factory=list)
    fps: float | None = None


# --------------------------------------------------------------------------- pixel cap
#: most pixels (height x width) one image, frame or page may have: a few-kilobyte file can
#: declare gigapixels, and reading it would take the machine's memory. Raise it with the
#: environment variable below (the CLI's ``--max-pixels`` sets it; Dask workers inherit it).
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "NAPARI_GEOSTYLE_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel cap in force: ``NAPARI_GEOSTYLE_MAX_PIXELS`` when set, else the default."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (1 <= value < float("inf")):
        raise ValueError(
            f"{MAX_PIXELS_ENV}={text!r} is not a number of pixels >= 1 (e.g. 400000000)."
        )
    return int(value)


def set_max_pixels(count) -> int:
    """Set the pixel cap for this process and the workers it starts; returns it."""
    try:
        value = float(count)
    except (TypeError, ValueError, OverflowError):
        value = float("nan")
    if not (1 <= value < float("inf")):
        raise ValueError(f"the pixel cap must be a number of pixels >= 1; got {count!r}.")
    os.environ[MAX_PIXELS_ENV] = str(int(value))
    return int(value)


def check_pixels(shape, name, pixels: int | None = None) -> None:
    """``ValueError`` when an image of ``shape`` ``(H, W, ...)`` (or of ``pixels`` pixels, its
    sides unknown) is over the pixel cap."""
    if pixels is None:
        height, width = (int(v) for v in tuple(shape)[:2])
        pixels, size = height * width, f"{width} x {height} pixels ("
    else:
        size = "("
    limit = max_pixels()
    if pixels > limit:
        raise ValueError(
            f"{name} is {size}{pixels / 1e6:.4g} megapixels), more than the limit of "
            f"{limit / 1e6:.4g} megapixels per image; if the machine has the memory, raise it "
            f"with --max-pixels or the {MAX_PIXELS_ENV} environment variable."
        )


def _image_header_shape(source) -> tuple | int | None:
    """``(H, W)`` of an image file (a path or its bytes) from its header, without decoding it
    (or only its pixel count, from Pillow's decompression-bomb refusal); None when the format
    is not one read here (the decoder then decides)."""
    import io

    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else None
    try:
        if handle is not None:
            head = bytes(source[:4])
        else:
            with open(source, "rb") as file:
                head = file.read(4)
        if head[:2] in (b"II", b"MM"):  # TIFF and BigTIFF: the first page's shape
            import tifffile

            with tifffile.TiffFile(handle if handle is not None else source) as tif:
                page = tif.pages[0]
                return int(page.imagelength), int(page.imagewidth)
        import warnings

        from PIL import Image

        limit = max_pixels()  # Pillow refuses twice its own limit: the cap here decides
        if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < limit:
            Image.MAX_IMAGE_PIXELS = limit // 2 + 1
        with warnings.catch_warnings():  # the cap says it better than Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(handle if handle is not None else source) as image:
                width, height = image.size  # opening reads the header only
        return int(height), int(width)
    except Exception as error:
        if type(error).__name__ == "DecompressionBombError":  # "Image size (N pixels) ..."
            import re

            found = re.search(r"\((\d+) pixels\)", str(error))
            return int(found.group(1)) if found else None
        return None  # not a format read here: the decoder decides


def check_image_file(source, name) -> None:
    """The pixel cap applied to an image file (a path or its bytes) before it is decoded."""
    shape = _image_header_shape(source)
    if isinstance(shape, int):  # only the pixel count is known
        check_pixels(None, name, pixels=shape)
    elif shape is not None:
        check_pixels(shape, name)


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

    check_image_file(data, name)
    try:
        suffix = Path(name).suffix.lower()  # none: imageio guesses the format from the bytes
        array = np.asarray(iio.imread(data, extension=suffix) if suffix else iio.imread(data))
    except Exception as error:  # imageio raises many types for unreadable files
        message = " ".join(str(error).split())
        raise ValueError(f"cannot read {name} as an image: {message}") from error
    if array.ndim >= 2:
        check_pixels(array.shape, name)
    return array


def read_image(path) -> np.ndarray:
    """An image file as an array (anything imageio reads), the pixel cap checked on its header
    before it is decoded.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.

    Returns
    -------
    numpy.ndarray
        The decoded pixels, in the file's dtype.

    Raises
    ------
    ValueError
        No file at ``path``, a file that is not an image, or one over the pixel cap.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no image file at {path}")
    return decode_image(path.read_bytes(), str(path))


def read_image_file(path) -> tuple[np.ndarray, str]:
    """``(array, sha256 of the file's bytes)``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no image file at {path}")
    data = path.read_bytes()
    return decode_image(data, str(path)), digest_bytes(data)


def _tiff_pages(path: Path):
    """A multi-page TIFF's planes (time points or z slices), planned from its header:
    ``(planes, lazy)``, an iterable of the plane arrays read one page at a time, and whether
    each page can be read again on its own; None for a single 2D image or an unreadable file
    (left to its own task, which reports it). ``ValueError`` for pages over the pixel cap."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape, pages = series.axes, tuple(series.shape), len(series.pages)
    except Exception:
        return None
    rgb = axes.endswith("S")
    plane = shape[-(3 if rgb else 2) :]
    if len(shape) == len(plane) or len(plane) < 2:
        return None
    check_pixels(plane, f"a page of {path}")
    count = int(np.prod(shape[: -len(plane)]))
    lazy = pages == count  # one plane per page: page i is read on its own

    def planes():
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if lazy:
                for index in range(count):
                    yield series.asarray(key=index).reshape(plane)
            else:  # planes packed into fewer pages: read whole (a rare layout)
                yield from series.asarray().reshape(-1, *plane)

    return planes(), lazy


def read_frame(item: InputItem) -> np.ndarray:
    """A lazily planned frame: page ``item.frame`` of a TIFF stack or frame ``item.frame`` of a
    video, read from ``item.source`` now. It must be the frame that was planned (its digest):
    a file changed since, or a seek that lands elsewhere, is caught."""
    path = Path(item.source)
    if not path.is_file():
        raise ValueError(
            f"cannot read {path}: no such file here (a remote Dask cluster needs the inputs on "
            "a file system its workers share)"
        )
    if item.reader == "tiff":
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                array = tif.series[0].asarray(key=item.frame).reshape(item.shape)
        except Exception as error:  # tifffile raises many types for a broken page
            reason = " ".join(str(error).split())[:200]
            raise ValueError(
                f"cannot read page {item.frame} of {path}: {type(error).__name__}: {reason}"
            ) from error
    else:
        array = _video_frame(path, item)
    if digest_array(array) != item.digest:
        raise ValueError(f"{path} changed since the batch was planned (frame {item.frame})")
    return array


_VIDEO_READERS: dict = {}  # (path, size, mtime) -> an open reader, for this process's next frame
_VIDEO_READERS_KEPT = 2
_VIDEO_LOCK = threading.Lock()


def _video_frame(path: Path, item: InputItem) -> np.ndarray:
    """Frame ``item.frame``, checked against the planned digest. The reader stays open for the
    process's next frame, so frames read in order cost one decode each (a seek restarts ffmpeg
    and decodes up to 10 s of video); from the start when a seek lands on another frame (a
    stream whose timestamps are irregular)."""
    import imageio.v2 as imageio

    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _VIDEO_LOCK:  # taken out of the cache: one thread reads with a reader at a time
        reader = _VIDEO_READERS.pop(key, None)
    try:
        if reader is None:
            reader = imageio.get_reader(path, format="FFMPEG")
        frame = np.ascontiguousarray(reader.get_data(item.frame))
        if digest_array(frame) != item.digest:
            reader.close()
            reader = imageio.get_reader(path, format="FFMPEG")
            for index, frame in enumerate(reader.iter_data()):
                if index == item.frame:
                    break
            else:
                raise ValueError(f"{path} has no frame {item.frame} any more")
            frame = np.ascontiguousarray(frame)
    except ValueError:
        reader.close()
        raise
    except Exception as error:
        if reader is not None:
            reader.close()
        raise ValueError(
            f"cannot read frame {item.frame} of {path}: {_ffmpeg_reason(error)}"
        ) from error
    with _VIDEO_LOCK:
        previous = _VIDEO_READERS.pop(key, None)  # another thread's, put back meanwhile
        if previous is not None:
            previous.close()
        _VIDEO_READERS[key] = reader
        while len(_VIDEO_READERS) > _VIDEO_READERS_KEPT:  # the oldest first
            _VIDEO_READERS.pop(next(iter(_VIDEO_READERS))).close()
    return frame


@atexit.register
def _close_video_readers() -> None:
    with _VIDEO_LOCK:
        while _VIDEO_READERS:
            _VIDEO_READERS.popitem()[1].close()


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


def _read_video(path: Path) -> tuple[list[tuple[str, tuple]], float]:
    """``([(digest, shape) per frame], fps)``, the frames decoded one at a time."""
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
        meta = reader.get_meta_data()
        fps = float(meta.get("fps") or DEFAULT_FPS)
        width, height = meta.get("size") or (0, 0)
        check_pixels((height, width), f"a frame of {path}")
        # one frame at a time: its digest and shape are kept, never the frames themselves
        planned = [(digest_array(frame), np.shape(frame)) for frame in _frames_of(reader)]
    except ValueError:
        raise
    except Exception as error:  # a stream that breaks off, a codec ffmpeg lacks
        raise ValueError(f"cannot read {path} as a video: {_ffmpeg_reason(error)}") from error
    finally:
        reader.close()
    if not planned:
        raise ValueError(f"video {path} has no frames")
    return planned, fps


def _frames_of(reader):
    for frame in reader:
        yield np.ascontiguousarray(frame)


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
    """An item's image, decoded (or read) on the worker; ``ValueError`` for an input that
    failed."""
    if item.error is not None:
        raise ValueError(item.error)
    array = item.array  # held, or a lazy frame read now
    if array is not None:
        return array
    data = _file_bytes(item) if item.reader == "file" else item.data
    assert data is not None, "an input item holds an array, a lazy frame, a file or its bytes"
    return decode_image(data, item.source)


def _sequence(path: Path, kind: str, frames, fps=None, reader=None) -> InputSequence:
    """The sequence of ``frames``: arrays held in memory; with ``reader`` ("tiff") arrays seen
    once for their digest and read again when used, or ("video") ``(digest, shape)`` pairs."""
    stem = path.stem
    output = f"{stem}{path.suffix.lower() if kind == 'video' else '.tif'}"
    sequence = InputSequence(output=output, source=str(path), kind=kind, fps=fps)
    for index, frame in enumerate(frames):
        if reader == "video":
            digest, shape = frame
            frame = None
        else:
            frame = np.ascontiguousarray(frame)
            digest, shape = digest_array(frame), frame.shape
        sequence.items.append(
            InputItem(
                output=f"{stem}_frames/{stem}_{index:06d}{FRAME_SUFFIX}",
                source=str(path),
                digest=digest,
                stored=None if reader is not None else frame,
                frame=index,
                sequence=output,
                reader=reader,
                shape=tuple(shape),
            )
        )
    return sequence


def _stack(path: Path) -> InputSequence | InputItem | None:
    """A multi-page TIFF as a sequence read page by page (None: a single image); a stack
    over the pixel cap or with an unreadable page is an item that fails in its own task."""
    try:
        pages = _tiff_pages(path)
        if pages is None:
            return None
        planes, lazy = pages
        return _sequence(path, "stack", planes, reader="tiff" if lazy else None)
    except Exception as error:  # tifffile raises many types for a broken page
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        message = reason if isinstance(error, ValueError) else f"{type(error).__name__}: {reason}"
        return _failed_item(path, ValueError(f"cannot read {path} as a stack: {message}"))


def _image_item(path: Path) -> InputItem:
    """An image file: its digest streamed from disk now, its bytes read by the worker that
    decodes it (planning holds no file's bytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return InputItem(output=path.name, source=str(path), digest=digest.hexdigest(), reader="file")


def _file_bytes(item: InputItem) -> bytes:
    """A lazily planned image file's bytes, which must still be those that were planned."""
    path = Path(item.source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"cannot read {path}: no such file here (a remote Dask cluster needs the inputs on "
            "a file system its workers share)"
        ) from None
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    if digest_bytes(data) != item.digest:
        raise ValueError(f"{path} changed since the batch was planned")
    return data


def _expand(entry) -> list[Path]:
    """The files of one input: a file or folder that exists is taken literally (a name such as
    ``photo [edited].png`` is never a glob pattern), anything else with ``*?[`` is a glob."""
    text = str(entry)
    if any(c in text for c in "*?[") and not Path(text).expanduser().exists():
        # the folder form's suffix filter: a batch's own manifest.json/.csv is never an input
        found = sorted(
            Path(p)
            for p in glob.glob(text, recursive=True)
            if Path(p).suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES and Path(p).is_file()
        )
        if not found:
            raise ValueError(
                f"no image or video files match {text} "
                f"({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})"
            )
        return found
    path = Path(text).expanduser()
    if path.is_dir():  # scandir: the file type without a stat per file, names sorted as str
        with os.scandir(path) as entries:
            found = [
                path / entry.name
                for entry in entries
                if os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
                and entry.is_file()
            ]
        found.sort(key=lambda p: p.name)
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
                    stored=array,
                )
            )
            continue
        for path in _expand(entry):
            suffix = path.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                try:
                    planned, fps = _read_video(path)
                    sequences.append(_sequence(path, "video", planned, fps, reader="video"))
                except ValueError as error:  # fails alone, in its own task, like a bad image
                    items.append(_failed_item(path, error))
                    continue
            elif suffix in (".tif", ".tiff") and (stack := _stack(path)) is not None:
                if isinstance(stack, InputItem):  # a stack that cannot be read fails alone
                    items.append(stack)
                    continue
                sequences.append(stack)
            else:
                items.append(_image_item(path))
                continue
            items.extend(sequences[-1].items)
    names = [item.output for item in items] + [s.output for s in sequences]
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)  # not quadratic
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


def check_image_name(path) -> None:
    """``ValueError`` unless an image can be written under ``path``'s name: its extension is an
    image format that ``encode_image`` encodes (imageio would write a TIFF under a name it does
    not know, so those names are refused). Nothing is written.

    Parameters
    ----------
    path : str or os.PathLike
        The image file to be written.

    Raises
    ------
    ValueError
        The extension is not an image format, or its encoder refuses an RGB image.
    """
    import imageio.config

    path = Path(path)
    if path.suffix.lower() not in imageio.config.known_extensions:
        raise ValueError(
            f"cannot write {path}: {path.suffix or 'no extension'} is not an image format; "
            "use .png, .tif, .jpg or another image extension"
        )
    try:
        encode_image(np.zeros((2, 2, 3), np.uint8), path.name)
    except Exception as error:  # imageio raises many types for a format it cannot write
        message = " ".join(str(error).split())
        raise ValueError(f"cannot write {path} as a {path.suffix} image: {message}") from None


def check_writable(path) -> None:
    """Create and remove a temporary file next to ``path``, as ``write_atomic`` will: an
    ``OSError`` now (a read-only folder, no space for a new entry) rather than after the work.

    Parameters
    ----------
    path : str or os.PathLike
        The file to be written; its folder must exist.

    Raises
    ------
    OSError
        The folder refuses a new file.
    """
    _temp_path(Path(path)).unlink()


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
