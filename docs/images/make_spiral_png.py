"""Write docs/images/spiral.png, the README's picture, with the project's own code: the spiral toy at
the paper's setting (`python -m nslviz spiral`'s defaults) drawn by the figure notebook 01 shows.

    pip install kaleido          # plotly's static export; it drives an installed Chrome or Chromium
    python docs/images/make_spiral_png.py
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> Path:
    from nslviz.training.spiral import SpiralConfig, run_spiral
    from nslviz.viz.spiral import linear_vs_meta_neighborhoods

    out = Path(__file__).resolve().parent / "spiral.png"
    figure = linear_vs_meta_neighborhoods(run_spiral(SpiralConfig()))
    figure.write_image(out, width=920, height=460, scale=1)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
