"""Write docs/images/spiral.png, the README's picture, with the project's own code: the spiral toy at
the paper's setting (`python -m nslviz spiral`'s defaults), drawn by the figure notebook 01 shows,
exported as a standalone HTML page and photographed by headless Chromium.

    apt-get install chromium        # or any Chrome / Chromium; --browser names another binary
    python docs/images/make_spiral_png.py
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
WIDTH, HEIGHT = 920, 540


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", default=shutil.which("chromium") or shutil.which("google-chrome") or "chromium")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "spiral.png"))
    args = parser.parse_args(argv)

    from nslviz.experiments.spiral import SpiralConfig, run_spiral
    from nslviz.viz.spiral import linear_vs_meta_neighborhoods

    figure = linear_vs_meta_neighborhoods(run_spiral(SpiralConfig()))
    figure.update_layout(width=WIDTH, height=HEIGHT, margin=dict(l=60, r=20, t=80, b=120))
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "spiral.html"
        figure.write_html(page, include_plotlyjs=True, full_html=True, config={"staticPlot": True})
        subprocess.run([args.browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=10000",
                        f"--screenshot={Path(args.out).resolve()}", page.as_uri()],
                       check=True, capture_output=True, timeout=900)
    print(f"wrote {args.out}")
    return Path(args.out)


if __name__ == "__main__":
    main()
