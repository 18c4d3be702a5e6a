"""What notebook 01's interactive parts cost: seconds to train a (T, S) pair the live sliders have
not seen (quick mode: 400 steps), and milliseconds for headless Chromium to draw one frame of the
neighbor animation, for the figure as drawn (regions as a heatmap, the boundary a precomputed line)
and, as the baseline in the same run, with the regions as a plotly contour trace computed in the
browser. The animation's frame duration (nslviz.viz.spiral.FRAME_MS) must stay above the first.

Prints one JSON object and writes benchmarks/results/spiral_interactive_cpu.json.
Usage: python benchmarks/bench_spiral_interactive.py [--steps 400] [--repeats 2]
Needs Playwright and a Chromium (see nslviz/browser.py) for the drawing part, which is skipped otherwise.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import plotly.graph_objects as go

from nslviz import browser
from nslviz.experiments.spiral import SpiralConfig, cached_spiral, run_spiral
from nslviz.viz import spiral as spiral_viz
import torch

from _results import environment, save_result  # noqa: E402  (benchmarks/_results.py)


def contour_baseline(figure: go.Figure) -> go.Figure:
    """The same animation with the regions drawn as a filled contour at P = 50 %, recomputed by
    plotly.js in every frame (the drawing before the heatmap), the precomputed boundary line hidden."""
    baseline = go.Figure(figure)
    heatmap = baseline.data[0]
    baseline.data[0].visible = False
    baseline.add_trace(go.Contour(x=heatmap.x, y=heatmap.y, z=heatmap.z, zmin=0, zmax=100, showscale=False,
                                  contours=dict(start=50, end=50, size=1, coloring="fill"),
                                  colorscale=spiral_viz.REGION_SCALE, line=dict(color="black", width=2)))
    baseline.data[1].visible = False
    last = len(baseline.data) - 1
    baseline.frames = [go.Frame(data=[*frame.data, go.Contour(z=frame.data[0].z)],
                                traces=[*frame.traces, last], name=frame.name) for frame in figure.frames]
    return baseline


def draw_times(figures: dict[str, go.Figure], repeats: int) -> dict[str, dict]:
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
            times[name] = {"median_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1),
                           "frames": len(ms)}
            page.close()
    return times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps of a pair (quick mode: 400)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the animation's frames")
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
        figure = spiral_viz.neighbor_animation(run_spiral(SpiralConfig(steps=800)))   # notebook 01's quick run
        times = draw_times({"heatmap_and_line": figure, "contour_baseline": contour_baseline(figure)},
                           args.repeats)
        result["draw_ms_per_frame"] = times
        result["contour_over_heatmap"] = round(times["contour_baseline"]["median_ms"]
                                               / times["heatmap_and_line"]["median_ms"], 2)
        result["frame_duration_covers_max_draw"] = bool(times["heatmap_and_line"]["max_ms"] < spiral_viz.FRAME_MS)
    save_result(result, "spiral_interactive_cpu", args.out)
    return result


if __name__ == "__main__":
    main()
