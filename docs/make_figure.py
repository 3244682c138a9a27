"""Make docs/pipeline.png: the sample data through both stages, with the public API only.

    python docs/make_figure.py [--backbone auto] [--preset fast]

Panels: content | geometry style | texture style | warped content | result.
"""

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="auto")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import imageio.v3 as iio
    from skimage.transform import resize

    import napari_geostyle as gs
    from napari_geostyle._sample_data import content_and_style
    from napari_geostyle.core.images import to_rgb_float

    (content, _, _), (geometry, _, _), (texture, _, _) = content_and_style()
    result = gs.geometric_style_transfer(
        content, geometry_style=geometry, texture_style=texture,
        preset=args.preset, backbone=args.backbone, device=args.device,
    )  # fmt: skip
    height = 240
    panels = []
    for image in (content, geometry, texture, result.warped, result.image):
        rgb = to_rgb_float(image)
        width = round(rgb.shape[1] * height / rgb.shape[0])
        panels.append(resize(rgb, (height, width), anti_aliasing=True))
        panels.append(np.ones((height, 8, 3)))
    figure = np.concatenate(panels[:-1], axis=1)
    target = Path(__file__).resolve().parent / "pipeline.png"
    iio.imwrite(target, (np.clip(figure, 0, 1) * 255).astype(np.uint8))
    print(f"saved {target}")


if __name__ == "__main__":
    main()
