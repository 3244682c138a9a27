"""How far can local matching take a hinted estimate? The ceiling analysis of ``core.hint_matching``
on a landmark set (measuring only: the landmarks never tune anything here).

It separates the two things a hinted ``affine+tps`` estimate needs: the global pose left open by
the clicks, and the local shape that the features must find. On the perturbed protocol of
``eval-geometry`` (same pairs, same simulated clicks), PCK@0.1 of the landmarks that were not
clicked, for each number of clicks:

- ``estimate, unmatched``: the hinted estimate before the local matching;
- ``estimate, matched``: what ``estimate_warp`` returns (the matching on);
- ``oracle affine``: the least-squares affine on every landmark (the issue's reference);
- ``oracle affine start, matched``: the local field run from the oracle affine (kept as the
  pose, as for an estimate of confidence 1): what the features add once the pose is right;
- ``oracle matches, same field``: the matches replaced by the true positions (a thin-plate
  spline through the landmarks) and fed through the same pose correction and displacement
  field (as for an estimate of confidence 0): the ceiling of the machinery itself.

Then the features alone, at the landmarks: their mean error (normalised units, a side is 2) when
each content landmark looks for its match from where the oracle affine puts it, against staying
there; and the same on same-image pairs (a control: the machinery finds a displaced match).

    python scripts/hint_matching_ceiling.py --pairs faces.npz --count 40 --clicks 2 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _dedupe(content_points, style_points, min_px: float = 0.5) -> np.ndarray:
    """Indices of landmarks distinct at both ends (closed lips repeat points)."""
    kept: list[int] = []
    for index in range(len(content_points)):
        if all(
            np.abs(content_points[index] - content_points[k]).max() > min_px
            and np.abs(style_points[index] - style_points[k]).max() > min_px
            for k in kept
        ):
            kept.append(index)
    return np.array(kept)


class OracleMatcher:
    """Matches at the true positions: a thin-plate spline through the pair's landmarks."""

    def __init__(self, pair):
        from napari_geostyle.core.transforms import fit_tps

        keep = _dedupe(pair.content_points, pair.style_points)
        self.truth = fit_tps(pair.content_points[keep], pair.style_points[keep], 1e-3)
        self.content_shape, self.style_shape = pair.content.shape[:2], pair.style.shape[:2]

    def __call__(self, content_xy, here, factor=1.0):
        from napari_geostyle.core.images import normalized_to_pixel, pixel_to_normalized

        mapped = self.truth.map_points(normalized_to_pixel(content_xy, self.content_shape))
        return pixel_to_normalized(mapped, self.style_shape), np.ones(len(content_xy))


def _oracle_affine(pair):
    """The least-squares affine (content pixels -> output pixels) on every landmark."""
    from napari_geostyle.core.images import normalized_to_pixel, pixel_to_normalized
    from napari_geostyle.core.transforms import AffineTransform

    shape = pair.content.shape[:2]
    output = normalized_to_pixel(
        pixel_to_normalized(pair.style_points, pair.style.shape[:2]), shape
    )
    design = np.hstack([pair.content_points, np.ones((len(output), 1))])
    solution, *_ = np.linalg.lstsq(design, output, rcond=None)
    return AffineTransform(np.vstack([solution.T, [0.0, 0.0, 1.0]]))


def _with_identity_tps(affine, like_tps, shape):
    """``affine`` followed by an identity TPS (the matching moves a TPS)."""
    from napari_geostyle.core.transforms import ComposedTransform, TPSTransform

    side = np.linspace(0.0, 1.0, 3)
    rows, cols = np.meshgrid(side * (shape[0] - 1), side * (shape[1] - 1), indexing="ij")
    grid = np.stack([rows.ravel(), cols.ravel()], 1)
    identity = TPSTransform(grid, grid, like_tps.regularization, frame=like_tps.frame)
    return ComposedTransform([affine, identity])


def _feature_errors(pair, trunk, settings, rng, same_image: bool):
    """(stay, matched) normalised errors of each landmark's feature match, from the oracle
    affine's position (``same_image``: the content against itself, from a random offset)."""
    from napari_geostyle.core import hint_matching
    from napari_geostyle.core.images import pixel_to_normalized, rgb_tensor

    style, style_points = (
        (pair.content, pair.content_points) if same_image else (pair.style, pair.style_points)
    )
    keep = _dedupe(pair.content_points, style_points)
    content_xy = pixel_to_normalized(pair.content_points[keep], pair.content.shape[:2])
    truth = pixel_to_normalized(style_points[keep], style.shape[:2])
    if same_image:
        start = truth + rng.normal(0.0, 0.04, truth.shape)
    else:
        design = np.hstack([content_xy, np.ones((len(keep), 1))])
        start = design @ np.linalg.lstsq(design, truth, rcond=None)[0]
    matcher = hint_matching.FeatureMatcher(
        hint_matching._features(rgb_tensor(pair.content, "cpu"), trunk, settings),
        hint_matching._features(rgb_tensor(style, "cpu"), trunk, settings),
        settings,
    )
    matched, _sharpness = matcher(content_xy, start)
    return np.linalg.norm(start - truth, axis=1), np.linalg.norm(matched - truth, axis=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", required=True, help="a landmark set (.npz), as eval-geometry")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clicks", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--method", default="refine", choices=("network", "refine"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from napari_geostyle.core import estimate, hint_matching
    from napari_geostyle.core import landmark_eval as le
    from napari_geostyle.core.hints import check_hints, honour_hints
    from napari_geostyle.core.images import rgb_tensor

    torch.set_num_threads(args.threads)
    trunk = hint_matching.matching_trunk("cpu")
    if trunk is None:
        sys.exit("the ImageNet EfficientNet-Lite0 weights are not installed: nothing to match")
    settings = hint_matching.DEFAULT_SETTINGS
    pairs = le.pairs_from_set(
        le.load_landmark_set(args.pairs), args.count, args.seed, le.load_click_groups(args.pairs)
    )
    pairs = le.perturb_pairs(pairs, None, args.seed)
    started = time.perf_counter()
    report: dict = {"pairs": len(pairs), "method": args.method, "pck@0.1": {}}
    for count in le.check_clicks(args.clicks):
        rows: dict[str, list] = {}
        for index, pair in enumerate(pairs):
            rng = np.random.default_rng([args.seed, index, count])
            content_clicks, style_clicks, scored = le.simulated_clicks(pair, count, rng)
            shape, style_shape = pair.content.shape[:2], pair.style.shape[:2]
            hints = check_hints((content_clicks, style_clicks), shape, style_shape)
            content_t, style_t = rgb_tensor(pair.content, "cpu"), rgb_tensor(pair.style, "cpu")
            options = estimate.GeometryOptions("affine+tps", args.method, hints=hints)
            params = estimate.estimate_parameters(content_t, style_t, options, "cpu")
            unmatched = estimate._transform_from_parameters(params, shape, 1.0, hints)
            oracle_start = _with_identity_tps(_oracle_affine(pair), unmatched.transforms[-1], shape)
            from_oracle_pose = hint_matching.match_around_hints(
                oracle_start, content_t, style_t, hints, trunk, settings, confidence=1.0
            )
            true_matches = hint_matching.match_around_hints(
                unmatched, content_t, style_t, hints, trunk, settings,
                matcher=OracleMatcher(pair), confidence=0.0,
            )  # fmt: skip
            transforms = {
                "estimate, unmatched": unmatched,
                "estimate, matched": estimate._transform_from_parameters(
                    params, shape, 1.0, hints, pair=(content_t, style_t)
                ),
                "oracle affine": _oracle_affine(pair),
                "oracle affine start, matched": honour_hints(from_oracle_pose, hints, shape),
                "oracle matches, same field": honour_hints(true_matches, hints, shape),
            }
            for name, transform in transforms.items():
                mapped = le.to_style_frame(
                    transform.map_points(pair.content_points), shape, style_shape
                )
                rows.setdefault(name, []).append(
                    le.correct_keypoints(mapped, pair.style_points, 0.1)[scored]
                )
        report["pck@0.1"][f"{count} clicks"] = {
            name: round(float(np.concatenate(hits).mean()), 3) for name, hits in rows.items()
        }
        print(json.dumps({f"{count} clicks": report["pck@0.1"][f"{count} clicks"]}), flush=True)
    rng = np.random.default_rng(args.seed)
    for label, same_image in (("different images", False), ("same image", True)):
        stay, matched = zip(*(_feature_errors(p, trunk, settings, rng, same_image) for p in pairs))
        report[f"landmark error, {label}"] = {
            "stay": round(float(np.concatenate(stay).mean()), 4),
            "feature match": round(float(np.concatenate(matched).mean()), 4),
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
