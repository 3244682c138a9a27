"""Make docs/screenshot.png: the demo viewer after a geometric warp (runs under Xvfb too).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py

Equivalent to ``napari-geostyle demo --screenshot docs/screenshot.png``.
"""

import sys
from pathlib import Path

from napari_geostyle.cli import main

if __name__ == "__main__":
    target = Path(__file__).resolve().parent / "screenshot.png"
    sys.exit(main(["demo", "--screenshot", str(target), *sys.argv[1:]]))
