"""Sample data: a content photo, a geometry style and a texture style (from scikit-image)."""

from __future__ import annotations

import numpy as np


def content_and_style():
    """Layer data tuples: ``content`` (a cat photo), ``geometry style`` (a horse silhouette) and
    ``texture style`` (brick), all scikit-image sample images bundled with the package."""
    from skimage import data

    content = data.chelsea()
    # the silhouette as a bright shape on dark, the way a photo of an object looks
    geometry = np.where(data.horse(), 0, 255).astype(np.uint8)
    texture = data.brick()
    return [
        (content, {"name": "content", "rgb": True}, "image"),
        (geometry, {"name": "geometry style", "colormap": "gray"}, "image"),
        (texture, {"name": "texture style", "colormap": "gray"}, "image"),
    ]
