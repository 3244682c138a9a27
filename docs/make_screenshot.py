"""Make docs/screenshot.png: the demo viewer after a geometric warp (runs under Xvfb too).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py

Equivalent to ``napari-geostyle demo --method refine --screenshot docs/screenshot.png``
("refine": for this sample pair the shipped network alone predicts an almost identity warp).
"""

import sys
from pathlib import Path

from napari_geostyle.cli import main

if __name__ == "__main__":
    target = Path(__file__).resolve().parent / "screenshot.png"
    sys.exit(main(["demo", "--method", "refine", "--screenshot", str(target), *sys.argv[1:]]))
