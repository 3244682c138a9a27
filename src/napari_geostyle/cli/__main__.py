"""``python -m napari_geostyle.cli``: the same as the ``napari-geostyle`` command."""

import sys

from . import main

sys.exit(main())
