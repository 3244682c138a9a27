"""Cross-instance accuracy of ``estimate_warp`` on image pairs with corresponding landmarks.

The question a user asks: "does my content take the shape of ANOTHER object?" Each pair is two
different images (face A, face B; one cat and another) whose landmarks correspond. The content's
landmarks go through the estimated transform and are compared with the style's; a landmark is
correct within ``alpha`` x the longest side of the style's landmark box (PCK, as Proposal Flow and
CNNGeometric report it).

Protocols:
- ``"perturbed"`` (the default for landmark sets): both images are zoomed ``zoom`` x about their
  centre, then the content is moved by a random similarity (rotation, scale, shift; mirror
  padding) drawn from a fixed seed; the style is not moved.
- ``"as-is"``: the images as they are (Proposal Flow's own protocol; use it to compare with
  published PF-WILLOW / PF-PASCAL numbers).

Sources: a landmark set (``.npz`` with ``images`` (N, H, W, C), ``landmarks`` (N, K, 2) in
``(row, col)`` and optional ``names``; pairs are ordered pairs of different items, drawn with a
seed) or a Proposal Flow pair CSV (``read_pf_pairs``).

Reference rows are computed in the same run: ``identity`` (no warp) and ``oracle`` (the
least-squares affine fitted on the true landmarks: what an affine could reach).

Simulated clicks (``clicks``, ``eval-geometry --clicks K ...``): K hints per pair, as a user at
the viewer would give them. Click k is the mean of the landmarks in group k of the set's
``click_groups`` (an int per landmark, -1 = never clicked); a set without them takes
farthest-point samples of the style's landmarks, from the one nearest their centroid. Each
click end gets Gaussian noise of ``CLICK_NOISE`` x its image's PCK unit (seeded). PCK is then
counted only on the landmarks outside the clicked groups, for the methods with the clicks as
``hints``, for the clicks alone (a translation for one, a similarity for two, an affine for three
or more: ``hints.point_fit``) and for the oracle affine on the same scored landmarks. Each method
row also gives the AUROC of the estimate's ``confidence`` for telling pairs with PCK@0.1 >= 0.5
from the rest.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROTOCOLS = ("perturbed", "as-is")
REFERENCE_METHODS = ("identity", "oracle")
DEFAULT_ALPHAS = (0.05, 0.1, 0.15)
CLICK_NOISE = 0.02  # sigma of a simulated click's noise, in units of its image's PCK unit
CORRECT_PAIR = (0.1, 0.5)  # a pair's estimate is "right" when PCK@0.1 >= 0.5 (confidence)


@dataclass
class LandmarkPair:
    """Two images and their corresponding landmarks, ``(row, col)`` pixels of each image."""

    content: np.ndarray
    style: np.ndarray
    content_points: np.ndarray
    style_points: np.ndarray
    name: str = ""
    groups: np.ndarray | None = None  # click group per landmark (-1: never clicked)


@dataclass
class Perturbation:
    """The protocol's changes: zoom of both images, then a similarity of the content only."""

    zoom: float = 1.4
    rotation_deg: float = 15.0
    scale: tuple = (0.8, 1.2)
    shift: float = 0.1  # fraction of the image side

    def __post_init__(self):
        if not (math.isfinite(self.zoom) and self.zoom > 0):
            raise ValueError(f"zoom must be a positive number; got {self.zoom}.")
        low, high = self.scale
        if not (0 < low <= high):
            raise ValueError(f"scale must be (low, high) with 0 < low <= high; got {self.scale}.")
        if self.rotation_deg < 0 or self.shift < 0:
            raise ValueError("rotation_deg and shift must be >= 0.")


@dataclass
class MethodScore:
    pck: dict  # alpha -> share of correct landmarks over all pairs
    per_pair: list  # PCK at the middle alpha per pair
    seconds_per_pair: float = 0.0
    confidence: list | None = None  # the estimate's confidence per pair
    confidence_features: list | None = None  # what each was made from (``core.confidence``)
    auroc: float | None = None  # of ``confidence`` for PCK@0.1 >= 0.5 (``CORRECT_PAIR``)


@dataclass
class LandmarkReport:
    pairs: int
    model: str
    protocol: str
    alphas: tuple
    scores: dict  # method -> MethodScore
    examples: list = field(default_factory=list)  # (pair, {method: transform}) for figures

    def table(self) -> str:
        """A Markdown table: one row per method, one column per alpha."""
        head = "| method | " + " | ".join(f"PCK@{a:g}" for a in self.alphas)
        head += " | s / pair | confidence AUROC |"
        rule = "|---" * (len(self.alphas) + 3) + "|"
        rows = [head, rule]
        for method, score in self.scores.items():
            cells = " | ".join(f"{score.pck[a]:.3f}" for a in self.alphas)
            auroc = "-" if score.auroc is None else f"{score.auroc:.3f}"
            rows.append(f"| {method} | {cells} | {score.seconds_per_pair:.3f} | {auroc} |")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {
            "pairs": self.pairs,
            "model": self.model,
            "protocol": self.protocol,
            "alphas": list(self.alphas),
            "methods": {
                method: {
                    **{f"pck@{a:g}": score.pck[a] for a in self.alphas},
                    "seconds_per_pair": score.seconds_per_pair,
                    "confidence_auroc": score.auroc,
                    "per_pair": score.per_pair,
                    "confidence": score.confidence,
                    "confidence_features": score.confidence_features,
                }
                for method, score in self.scores.items()
            },
        }


# --------------------------------------------------------------------------- reading
def _points_array(points, name: str) -> np.ndarray:
    if np.asarray(points).dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real numbers; got {np.asarray(points).dtype}.")
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) array of (row, col); got shape {array.shape}.")
    return array


def load_landmark_set(path) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``(image, landmarks (K, 2) row/col, name)`` items from an ``.npz`` landmark set."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no landmark set at {path}")
    # an empty, truncated or corrupt file fails in np.load or when an array is read, with
    # many exception types (EOFError, BadZipFile, zlib.error, tokenize.TokenError, ...)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ValueError(f"cannot read landmark set {path}: {error}") from error
    if not isinstance(data, np.lib.npyio.NpzFile):  # one .npy array, or text np.load parsed
        raise ValueError(f"landmark set {path} is not an .npz file of named arrays.")
    for key in ("images", "landmarks"):
        if key not in data.files:
            raise ValueError(f"landmark set {path} has no {key!r} array (it has {data.files}).")
    try:
        images, landmarks = data["images"], data["landmarks"]
        stored_names = data["names"] if "names" in data.files else None
    except Exception as error:
        raise ValueError(f"cannot read landmark set {path}: {error}") from error
    for key, array in (("images", images), ("landmarks", landmarks), ("names", stored_names)):
        if array is not None and array.ndim == 0:
            raise ValueError(f"landmark set {path}: {key!r} must be an array with one per item.")
    if len(images) != len(landmarks):
        raise ValueError(
            f"landmark set {path}: {len(images)} images but {len(landmarks)} landmark arrays."
        )
    names = (
        [str(n) for n in stored_names]
        if stored_names is not None
        else [f"item {i}" for i in range(len(images))]
    )
    if len(names) != len(images):
        raise ValueError(f"landmark set {path}: {len(names)} names for {len(images)} items.")
    items = []
    for index, (image, points) in enumerate(zip(images, landmarks)):
        points = _points_array(points, f"landmarks of item {index}")
        items.append((np.asarray(image), points, names[index]))
    if len(items) < 2:
        raise ValueError(f"landmark set {path} needs at least two items to make pairs.")
    return items


def load_click_groups(path) -> np.ndarray | None:
    """The set's ``click_groups`` (an int per landmark, -1 = never clicked), or None."""
    with np.load(path, allow_pickle=False) as data:
        if "click_groups" not in data.files:
            return None
        groups = np.asarray(data["click_groups"]).astype(np.int64).reshape(-1)
    return groups


def pairs_from_set(
    items, count: int | None = None, seed: int = 0, click_groups=None
) -> list[LandmarkPair]:
    """Ordered pairs ``(content, style)`` of DIFFERENT items, shuffled with ``seed``.

    ``count`` None takes all ``n (n - 1)`` pairs. Landmarks not finite in either item of a pair
    are dropped from that pair. ``click_groups``: the set's click group per landmark.
    """
    n = len(items)
    order = [(i, j) for i in range(n) for j in range(n) if i != j]
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    if count is not None:
        if int(count) < 1:
            raise ValueError(f"count must be >= 1; got {count}.")
        order = order[: int(count)]
    pairs = []
    for i, j in order:
        (image_a, points_a, name_a), (image_b, points_b, name_b) = items[i], items[j]
        if len(points_a) != len(points_b):
            raise ValueError(
                f"items {name_a!r} and {name_b!r} have {len(points_a)} and {len(points_b)} "
                "landmarks; corresponding landmark sets need the same count."
            )
        keep = np.isfinite(points_a).all(1) & np.isfinite(points_b).all(1)
        groups = None
        if click_groups is not None:
            if len(click_groups) != len(points_a):
                raise ValueError(
                    f"click_groups has {len(click_groups)} entries for {len(points_a)} landmarks."
                )
            groups = np.asarray(click_groups)[keep]
        pairs.append(
            LandmarkPair(
                image_a, image_b, points_a[keep], points_b[keep], f"{name_a} -> {name_b}", groups
            )
        )
    return pairs


def _coordinates(text: str, line: int, column: str) -> np.ndarray:
    try:
        values = [float(v) for v in str(text).replace(",", ";").split(";") if v.strip()]
    except ValueError:
        raise ValueError(
            f"line {line}: column {column} must be numbers separated by ';'; got {text!r}."
        ) from None
    return np.asarray(values, dtype=np.float64)


_PF_IMAGE_COLUMNS = (("imageA", "imageB"), ("source_image", "target_image"))


def read_pf_pairs(csv_path, image_root=None, one_based: bool = True, limit: int | None = None):
    """Pairs from a Proposal Flow benchmark CSV (PF-WILLOW ``test_pairs_pf.csv`` or PF-PASCAL).

    Columns: two image paths (``imageA``/``imageB`` or ``source_image``/``target_image``) and
    ``XA;YA;XB;YB``: each a ';'-separated list of coordinates (x = column, y = row). Image paths
    are relative to ``image_root`` (default: the CSV's folder). ``one_based``: the annotations
    are MATLAB's 1-based pixel coordinates (Proposal Flow's), shifted here to 0-based. Points
    with a negative or non-finite coordinate (missing keypoints) are dropped.
    """
    from .media import read_image_file

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"no pair CSV at {csv_path}")
    root = Path(image_root) if image_root is not None else csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            columns = next((c for c in _PF_IMAGE_COLUMNS if set(c) <= set(fields)), None)
            missing = {"XA", "YA", "XB", "YB"} - set(fields)
            if columns is None or missing:
                raise ValueError(
                    f"{csv_path} is not a Proposal Flow pair CSV: it needs columns imageA,imageB "
                    f"(or source_image,target_image) and XA,YA,XB,YB; it has {fields}."
                )
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{csv_path} is not a readable pair CSV: {error}") from error
    pairs, cache = [], {}

    def image(name: str, line: int):
        if name not in cache:
            path = root / name
            if not path.is_file():
                raise FileNotFoundError(f"{csv_path} line {line}: no image at {path}")
            try:  # the pixel cap, and one ValueError for every unreadable file
                cache[name] = read_image_file(path)[0]
            except ValueError as error:
                raise ValueError(f"{csv_path} line {line}: {error}") from error
        return cache[name]

    shift = 1.0 if one_based else 0.0
    for offset, row in enumerate(rows[: limit if limit else None]):
        line = offset + 2  # the header is line 1
        xa, ya = _coordinates(row["XA"], line, "XA"), _coordinates(row["YA"], line, "YA")
        xb, yb = _coordinates(row["XB"], line, "XB"), _coordinates(row["YB"], line, "YB")
        if not (len(xa) == len(ya) == len(xb) == len(yb)):
            raise ValueError(f"{csv_path} line {line}: XA, YA, XB, YB have different counts.")
        content_rc = np.stack([ya, xa], 1)
        style_rc = np.stack([yb, xb], 1)
        keep = (
            np.isfinite(content_rc).all(1)
            & np.isfinite(style_rc).all(1)
            & (content_rc >= 0).all(1)
            & (style_rc >= 0).all(1)
        )
        if keep.sum() < 1:
            continue
        name_a, name_b = row[columns[0]], row[columns[1]]
        pairs.append(
            LandmarkPair(
                image(name_a, line),
                image(name_b, line),
                content_rc[keep] - shift,
                style_rc[keep] - shift,
                f"{name_a} -> {name_b}",
            )
        )
    if not pairs:
        raise ValueError(f"{csv_path} holds no pair with valid keypoints.")
    return pairs


# --------------------------------------------------------------------------- protocol
def _zoom_matrix(shape, zoom: float) -> np.ndarray:
    """Content -> output ``(row, col, 1)`` matrix of a zoom about the image centre."""
    centre = (np.asarray(shape[:2], np.float64) - 1.0) / 2.0
    matrix = np.eye(3)
    matrix[:2, :2] *= zoom
    matrix[:2, 2] = centre - zoom * centre
    return matrix


def _similarity_matrix(shape, angle_deg: float, scale: float, shift_rc) -> np.ndarray:
    """Rotation and scale about the image centre, then a shift (all in pixels, row/col)."""
    centre = (np.asarray(shape[:2], np.float64) - 1.0) / 2.0
    angle = math.radians(angle_deg)
    c, s = math.cos(angle), math.sin(angle)
    linear = scale * np.array([[c, -s], [s, c]])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre - linear @ centre + np.asarray(shift_rc, np.float64)
    return matrix


def _moved(image, points, matrix):
    from .transforms import AffineTransform
    from .warp import warp_image

    transform = AffineTransform(matrix)
    return (
        warp_image(image, transform, padding="reflection", device="cpu"),
        transform.map_points(points),
    )


def perturb_pairs(pairs, perturbation: Perturbation | None = None, seed: int = 0):
    """The ``"perturbed"`` protocol applied to ``pairs`` (fixed ``seed``): new pairs."""
    perturbation = perturbation or Perturbation()
    rng = np.random.default_rng(seed)
    moved = []
    for pair in pairs:
        angle = rng.uniform(-1, 1) * perturbation.rotation_deg
        scale = rng.uniform(*perturbation.scale)
        side = np.asarray(pair.content.shape[:2], np.float64)
        shift = rng.uniform(-1, 1, 2) * perturbation.shift * side
        content_matrix = _similarity_matrix(pair.content.shape, angle, scale, shift) @ _zoom_matrix(
            pair.content.shape, perturbation.zoom
        )
        content, content_points = _moved(pair.content, pair.content_points, content_matrix)
        style, style_points = _moved(
            pair.style, pair.style_points, _zoom_matrix(pair.style.shape, perturbation.zoom)
        )
        moved.append(
            LandmarkPair(content, style, content_points, style_points, pair.name, pair.groups)
        )
    return moved


# --------------------------------------------------------------------------- scoring
def pck_threshold(style_points) -> float:
    """The PCK unit: the longest side of the style landmarks' bounding box, in pixels."""
    points = _points_array(style_points, "style_points")
    return float((points.max(0) - points.min(0)).max())


def correct_keypoints(predicted, style_points, alpha: float) -> np.ndarray:
    """Bool per landmark: within ``alpha`` x ``pck_threshold(style_points)`` of the truth."""
    predicted = _points_array(predicted, "predicted")
    truth = _points_array(style_points, "style_points")
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted {predicted.shape} and true {truth.shape} points differ.")
    return np.linalg.norm(predicted - truth, axis=1) <= alpha * pck_threshold(truth)


def to_style_frame(points_output, content_shape, style_shape) -> np.ndarray:
    """``estimate_warp``'s output frame is the content's ``(H, W)`` holding the style's geometry;
    its points, in the style's own pixels."""
    from .images import normalized_to_pixel, pixel_to_normalized

    return normalized_to_pixel(pixel_to_normalized(points_output, content_shape), style_shape)


def click_groups_of(pair: LandmarkPair, count: int) -> list:
    """The landmark indices behind each of ``count`` simulated clicks (see the module)."""
    groups = None if pair.groups is None else np.asarray(pair.groups)
    if groups is not None and (groups >= 0).any():
        chosen = [np.flatnonzero(groups == g) for g in range(count)]
        empty = [g for g, members in enumerate(chosen) if not len(members)]
        if empty:
            raise ValueError(
                f"{count} clicks asked for, but no landmark of {pair.name!r} is in click group "
                f"{empty[0]} (the set's click_groups has {int(groups.max()) + 1} groups)."
            )
        return chosen
    points = pair.style_points
    if count > len(points):
        raise ValueError(
            f"{count} clicks asked for, but {pair.name!r} has {len(points)} landmarks."
        )
    first = int(np.argmin(np.linalg.norm(points - points.mean(0), axis=1)))
    picked, distance = [first], np.linalg.norm(points - points[first], axis=1)
    while len(picked) < count:  # farthest-point sampling
        picked.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[picked[-1]], axis=1))
    return [np.array([c]) for c in picked]


def simulated_clicks(pair: LandmarkPair, count: int, rng):
    """``(content_clicks, style_clicks, scored)``: ``count`` noisy clicks at each end (``(K,
    2)`` pixels of each image) and the landmarks outside the clicked groups (bool per landmark).
    """
    groups = click_groups_of(pair, count)
    scored = np.ones(len(pair.style_points), bool)
    ends = []
    for points, image in ((pair.content_points, pair.content), (pair.style_points, pair.style)):
        clicks = np.stack([points[g].mean(0) for g in groups])
        clicks = clicks + rng.normal(0.0, CLICK_NOISE * pck_threshold(points), clicks.shape)
        limit = np.asarray(image.shape[:2], np.float64) - 1.0
        ends.append(np.clip(clicks, 0.0, limit))
    for members in groups:
        scored[members] = False
    return ends[0], ends[1], scored


def predict_points(pair: LandmarkPair, method: str, model: str, estimate_options: dict, hints=None):
    """``(predicted style points, transform or None)`` of ``method`` on ``pair``; ``hints``:
    ``(content_points, style_points)`` for ``estimate_warp`` and the ``"clicks alone"`` fit."""
    from .estimate import estimate_warp
    from .hints import point_fit
    from .transforms import _homogeneous_apply

    content_shape, style_shape = pair.content.shape[:2], pair.style.shape[:2]
    if method == "identity":
        return to_style_frame(pair.content_points, content_shape, style_shape), None
    if method == "oracle":
        # plain least squares: landmark sets may repeat a point (closed lips), which fit_affine
        # rightly refuses for a warp but which does not matter for this reference row
        design = np.hstack([pair.content_points, np.ones((len(pair.content_points), 1))])
        solution, *_ = np.linalg.lstsq(design, pair.style_points, rcond=None)
        return design @ solution, None
    if method == "clicks alone":
        return _homogeneous_apply(point_fit(*hints), pair.content_points), None
    tf = estimate_warp(
        pair.content, pair.style, model=model, method=method, hints=hints, **estimate_options
    )
    mapped = tf.map_points(pair.content_points)
    return to_style_frame(mapped, content_shape, style_shape), tf


def auroc(scores, labels) -> float | None:
    """Area under the ROC curve of ``scores`` for the True ``labels`` (ties count half); None
    when one class is empty."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    positive, negative = scores[labels], scores[~labels]
    if not len(positive) or not len(negative):
        return None
    greater = (positive[:, None] > negative[None]).sum()
    ties = (positive[:, None] == negative[None]).sum()
    return float((greater + 0.5 * ties) / (len(positive) * len(negative)))


def _row_name(method: str, clicks: int) -> str:
    if clicks == 0:
        return method
    return f"{method}, {clicks} click{'s' if clicks > 1 else ''}"


def check_clicks(clicks) -> tuple:
    try:
        values = tuple(int(k) for k in clicks)
    except (TypeError, ValueError):
        raise ValueError(f"clicks must be whole numbers >= 0; got {clicks!r}.") from None
    if not values or any(k < 0 for k in values) or any(k != c for k, c in zip(values, clicks)):
        raise ValueError(f"clicks must be whole numbers >= 0; got {clicks!r}.")
    return values


def evaluate_landmark_pairs(
    pairs,
    model: str = "affine+tps",
    methods=("network", "refine"),
    alphas=DEFAULT_ALPHAS,
    keep_examples: int = 0,
    clicks=(0,),
    click_seed: int = 0,
    on_pair=None,
    **estimate_options,
) -> LandmarkReport:
    """PCK of identity, the oracle affine and each of ``methods`` on ``pairs`` (same run).

    ``clicks``: numbers of simulated clicks (module docstring); 0 is the automatic mode, where
    every landmark is scored. ``click_seed``: the clicks' noise. ``on_pair(index, {row: (PCK
    at the middle alpha, confidence or None)})``: called after each pair (progress).
    ``estimate_options``: further ``estimate_warp`` keywords (device, checkpoint, passes, ...).
    """
    from .estimate import METHODS, MODELS

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: model must be one of {', '.join(MODELS)}.")
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: accepted {', '.join(METHODS)}.")
    alphas = tuple(float(a) for a in alphas)
    if not alphas or any(not (0 < a < 1) for a in alphas):
        raise ValueError(f"alphas must be numbers between 0 and 1; got {alphas}.")
    clicks = check_clicks(clicks)
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no pairs to evaluate.")
    rows = {}  # row name -> (method, clicks)
    for count in clicks:
        references = ("identity",) if count == 0 else ("clicks alone",)
        for method in (*references, *methods, "oracle"):
            rows[_row_name(method, count)] = (method, count)
    middle = alphas[len(alphas) // 2]
    right_alpha, right_share = CORRECT_PAIR
    correct: dict[str, dict[float, list]] = {r: {a: [] for a in alphas} for r in rows}
    per_pair: dict[str, list] = {r: [] for r in rows}
    right: dict[str, list] = {r: [] for r in rows}
    confidence: dict[str, list] = {r: [] for r in rows}
    features: dict[str, list] = {r: [] for r in rows}
    seconds = {r: 0.0 for r in rows}
    examples = []
    for index, pair in enumerate(pairs):
        transforms: dict[str, Any] = {}
        clicked: dict[int, tuple] = {}
        for count in clicks:
            if count:
                rng = np.random.default_rng([click_seed, index, count])
                content_clicks, style_clicks, scored = simulated_clicks(pair, count, rng)
                clicked[count] = ((content_clicks, style_clicks), scored)
            else:
                clicked[count] = (None, np.ones(len(pair.style_points), bool))
        for row, (method, count) in rows.items():
            hints, scored = clicked[count]
            start = time.perf_counter()
            predicted, tf = predict_points(pair, method, model, estimate_options, hints)
            seconds[row] += time.perf_counter() - start
            if tf is not None:
                transforms[row] = tf
                confidence[row].append(getattr(tf, "confidence", None))
                features[row].append(getattr(tf, "confidence_features", None))
            truth = pair.style_points[scored]
            for alpha in alphas:
                correct[row][alpha].append(correct_keypoints(predicted[scored], truth, alpha))
            per_pair[row].append(float(correct[row][middle][-1].mean()))
            right[row].append(
                float(correct_keypoints(predicted[scored], truth, right_alpha).mean())
                >= right_share
            )
        if index < keep_examples:
            examples.append((pair, transforms))
        if on_pair is not None:
            on_pair(
                index,
                {
                    r: (per_pair[r][-1], getattr(transforms.get(r), "confidence", None))
                    for r in rows
                },
            )
    scores = {}
    for row in rows:
        values = confidence[row] if confidence[row] and None not in confidence[row] else None
        scores[row] = MethodScore(  # by keyword: the fields' order is not the reading order
            pck={a: float(np.concatenate(correct[row][a]).mean()) for a in alphas},
            per_pair=per_pair[row],
            seconds_per_pair=seconds[row] / len(pairs),
            confidence=values,
            confidence_features=features[row] or None,
            auroc=None if values is None else auroc(values, right[row]),
        )
    return LandmarkReport(len(pairs), model, "", alphas, scores, examples)


def run_protocol(
    source,
    model: str = "affine+tps",
    methods=("network", "refine"),
    count: int | None = 40,
    seed: int = 0,
    protocol: str | None = None,
    perturbation: Perturbation | None = None,
    image_root=None,
    alphas=DEFAULT_ALPHAS,
    keep_examples: int = 0,
    clicks=(0,),
    on_pair=None,
    **estimate_options,
) -> LandmarkReport:
    """The whole evaluation from a file: ``.npz`` landmark set or Proposal Flow ``.csv``.
    ``clicks``: numbers of simulated clicks (module docstring; the set's ``click_groups``).

    ``protocol`` None picks ``"perturbed"`` for landmark sets and ``"as-is"`` for Proposal Flow
    CSVs (comparable with published numbers).
    """
    source = Path(source)
    if source.suffix.lower() == ".csv":
        pairs = read_pf_pairs(source, image_root)
        default_protocol = "as-is"
        if count is not None:
            pairs = pairs[: int(count)]
    elif source.suffix.lower() == ".npz":
        pairs = pairs_from_set(load_landmark_set(source), count, seed, load_click_groups(source))
        default_protocol = "perturbed"
    else:
        raise ValueError(
            f"{source}: expected a landmark set (.npz) or a Proposal Flow pair CSV (.csv)."
        )
    protocol = protocol or default_protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; accepted: {', '.join(PROTOCOLS)}.")
    if protocol == "perturbed":
        pairs = perturb_pairs(pairs, perturbation, seed)
    report = evaluate_landmark_pairs(
        pairs, model, methods, alphas, keep_examples, clicks, seed, on_pair, **estimate_options
    )
    report.protocol = protocol
    return report


# --------------------------------------------------------------------------- figure
def _dots(image: np.ndarray, points, colour, radius: int = 2) -> np.ndarray:
    out = image.copy()
    height, width = out.shape[:2]
    for row, col in np.rint(np.asarray(points)).astype(int):
        r0, r1 = max(row - radius, 0), min(row + radius + 1, height)
        c0, c1 = max(col - radius, 0), min(col + radius + 1, width)
        if r0 < r1 and c0 < c1:
            out[r0:r1, c0:c1] = colour
    return out


def landmark_figure(examples, methods=("network", "refine"), size: int = 192) -> np.ndarray:
    """uint8 mosaic, a row per pair: content | style | content warped by each method.

    Dots: green = the style's landmarks (where the content's should land), red = the content's
    landmarks where the method puts them.
    """
    from .images import to_rgb_float
    from .transforms import AffineTransform
    from .warp import warp_image

    green, red = np.array([0.1, 0.9, 0.2]), np.array([1.0, 0.15, 0.1])
    rows = []
    for pair, transforms in examples:
        content = to_rgb_float(pair.content)
        style = to_rgb_float(pair.style)
        style_shape = style.shape[:2]
        to_style = AffineTransform(_frame_matrix(content.shape, style_shape))
        tiles = [_dots(content, pair.content_points, red), _dots(style, pair.style_points, green)]
        for method in methods:
            tf = transforms.get(method)
            if tf is None:
                continue
            warped = warp_image(content, tf, device="cpu")
            warped = warp_image(warped, to_style, output_shape=style_shape, device="cpu")
            mapped = to_style_frame(tf.map_points(pair.content_points), content.shape, style_shape)
            tiles.append(_dots(_dots(warped, pair.style_points, green), mapped, red, 1))
        tiles = [_fit(t, size) for t in tiles]
        gap = np.ones((size, 4, 3))
        rows.append(np.concatenate([p for t in tiles for p in (t, gap)][:-1], 1))
    if not rows:
        raise ValueError("no examples to draw.")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=1) for r in rows]
    return (np.clip(np.concatenate(rows, 0), 0, 1) * 255 + 0.5).astype(np.uint8)


def _frame_matrix(content_shape, style_shape) -> np.ndarray:
    """Pixel matrix taking the content-sized output frame to the style's frame."""
    from .images import normalized_to_pixel_matrix, pixel_to_normalized_matrix

    return normalized_to_pixel_matrix(style_shape) @ pixel_to_normalized_matrix(content_shape)


def _fit(tile: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    height, width = tile.shape[:2]
    scale = size / max(height, width)
    small = resize(
        tile, (max(1, round(height * scale)), max(1, round(width * scale))), anti_aliasing=True
    )
    out = np.ones((size, size, 3))
    out[: small.shape[0], : small.shape[1]] = small
    return out
