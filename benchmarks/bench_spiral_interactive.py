"""What notebook 01's interactive parts cost: seconds to train a (T, S) pair the live sliders have
not seen (quick mode: 400 steps), and milliseconds for headless Chromium to draw one frame of the
neighbor animation, for the figure as drawn (regions as filled rectangles and the boundary as a line,
all computed in numpy) and, as the baseline in the same run, with the regions as a heatmap (the
drawing before). While each plays, it also counts the frames Chromium paints without the regions
(plotly.js takes a heatmap off the plot while a frame's scatter traces move). The animation's frame
duration (nslviz.viz.spiral.FRAME_MS) must stay above the drawing time.

Prints one JSON object and writes benchmarks/results/spiral_interactive_cpu.json.
Usage: python benchmarks/bench_spiral_interactive.py [--steps 400] [--repeats 2] [--watch-seconds 8]
Needs Playwright and a Chromium (see nslviz/browser.py) for the drawing part, which is skipped otherwise.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from nslviz import browser
from nslviz.experiments.spiral import SpiralConfig, cached_spiral, run_spiral
from nslviz.viz import spiral as spiral_viz
import torch

from _results import environment, save_result  # noqa: E402  (benchmarks/_results.py)


def heatmap_baseline(result, figure: go.Figure) -> go.Figure:
    """The same animation with the regions drawn as a heatmap of P(class 1) in every frame, in place of
    the rectangles (figure.data[0] and [1]); the boundary becomes the first scatter trace."""
    def percent(f):                                                      # P(class 1) of frame f, whole %
        return np.round(result.mn_grid_prob[f] * 100).astype(np.uint8)

    light = spiral_viz.REGION_COLORS
    regions = go.Heatmap(x=result.grid_x, y=result.grid_y, z=percent(0), zmin=0, zmax=100, showscale=False,
                         colorscale=[[0, light[0]], [0.5, light[0]], [0.5, light[1]], [1, light[1]]], hoverinfo="skip")
    return go.Figure(data=[regions, *figure.data[2:]], layout=figure.layout,
                     frames=[go.Frame(data=[go.Heatmap(z=percent(f)), *frame.data[2:]], name=frame.name)
                             for f, frame in enumerate(figure.frames)])


FIRST_FRAME_JS = """() => { const gd = document.querySelector('.plotly-graph-div');
  return Plotly.animate(gd, [gd._transitionData._frames[0].name],
                        {mode: 'immediate', frame: {duration: 0, redraw: true}, transition: {duration: 0}}); }"""

# per figure: the CSS selectors of its regions and boundary (see nslviz.browser.watch_paints)
SELECTORS = {"rectangles_and_line": (spiral_viz.PAINTED_REGIONS, spiral_viz.PAINTED_BOUNDARY),
             "heatmap_baseline": (".heatmaplayer image", ".scatterlayer > .trace:nth-child(1)")}


def draw_times(figures: dict[str, go.Figure], repeats: int, watch_ms: float) -> dict[str, dict]:
    times = {}
    with tempfile.TemporaryDirectory() as folder, browser.chromium() as context:
        for name, figure in figures.items():
            page_path = Path(folder) / f"{name}.html"
            figure.write_html(page_path, include_plotlyjs=True, auto_play=False)
            page = context.new_page()
            page.goto(page_path.as_uri())
            page.wait_for_function("document.querySelector('.plotly-graph-div')?._fullLayout !== undefined",
                                   timeout=60_000)
            browser.animation_draw_ms(page)                           # warm-up: every frame once
            ms = browser.animation_draw_ms(page, repeats=repeats)
            page.evaluate(FIRST_FRAME_JS)                                  # play from the start
            painted = browser.watch_paints(page.locator(".plotly-graph-div").first, *SELECTORS[name], watch_ms)
            times[name] = {"median_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1),
                           "frames": len(ms), "painted_while_playing": painted["painted"],
                           "painted_without_regions": painted["without_regions"]}
            page.close()
    return times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps of a pair (quick mode: 400)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the animation's frames")
    parser.add_argument("--watch-seconds", type=float, default=8, help="seconds of playback watched per figure")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/<name>.json)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    cached_spiral(0.3, 30, steps=args.steps)                         # first pair: trains the shared baseline too
    first_pair = time.perf_counter() - started
    pair_seconds = []
    for temperature, entries in [(0.1, 60), (1.0, 10), (0.03, 100)]:
        started = time.perf_counter()
        cached_spiral(temperature, entries, steps=args.steps)
        pair_seconds.append(time.perf_counter() - started)
    result = {"benchmark": "spiral_interactive", "steps_per_pair": args.steps,
              "first_pair_seconds": round(first_pair, 2),
              "unseen_pair_seconds_median": round(statistics.median(pair_seconds), 2),
              "unseen_pair_seconds": [round(s, 2) for s in pair_seconds],
              "frame_duration_ms": spiral_viz.FRAME_MS, "environment": environment(torch.device("cpu"))}

    reason = browser.missing_browser()
    if reason:
        result["drawing"] = f"skipped: {reason}"
    else:
        run = run_spiral(SpiralConfig(steps=800))                                      # notebook 01's quick run
        figure = spiral_viz.neighbor_animation(run)
        times = draw_times({"rectangles_and_line": figure, "heatmap_baseline": heatmap_baseline(run, figure)},
                           args.repeats, args.watch_seconds * 1000)
        result["draw_ms_per_frame"] = times
        result["heatmap_over_rectangles"] = round(times["heatmap_baseline"]["median_ms"]
                                                  / times["rectangles_and_line"]["median_ms"], 2)
        result["frame_duration_covers_max_draw"] = bool(times["rectangles_and_line"]["max_ms"] < spiral_viz.FRAME_MS)
    save_result(result, "spiral_interactive_cpu", args.out)
    return result


if __name__ == "__main__":
    main()
