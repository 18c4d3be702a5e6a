"""A headless Chromium driven by Playwright, for what only a browser can tell: screenshots of the
exported pages (`make site`), the time a figure takes to draw (benchmarks/bench_spiral_interactive.py)
and the browser tests (tests/browser, `make test-browser`).

Playwright's own browser download is not used: it drives the system's Chromium (Debian's `chromium`
package) through `executable_path`. Install both with `pip install -e ".[browser]"` and
`apt-get install chromium`; set NSLVIZ_CHROMIUM to use another Chromium binary.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# milliseconds each step of one frame of a plotly animation takes to draw: Plotly.animate to the
# frame (redraw included), then the next two animation frames, so that the page has been painted
ANIMATE_FRAMES_JS = """async ({index, repeats}) => {
  const gd = document.querySelectorAll('.plotly-graph-div')[index];
  const names = gd._transitionData._frames.map(frame => frame.name);
  const paint = () => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const times = [];
  for (let r = 0; r < repeats; r++) {
    for (const name of names) {
      const start = performance.now();
      await Plotly.animate(gd, [name], {mode: 'immediate', frame: {duration: 0, redraw: true},
                                         transition: {duration: 0}});
      await paint();
      times.push(performance.now() - start);
    }
  }
  return times;
}"""


# what a playing animation shows at every frame the page paints (requestAnimationFrame), for `ms`
# milliseconds: the slider's step (plotly.js writes it back into the layout), whether the element the CSS
# selector `regions` names is there, and the path of the line trace `boundary` names (one path per piece)
WATCH_PAINTS_JS = """(gd, {regions, boundary, ms}) => new Promise(resolve => {
  const painted = [];
  const end = performance.now() + ms;
  function paint() {
    const pieces = gd.querySelectorAll(boundary + ' path.js-line');
    painted.push({step: gd.layout.sliders[0].active, regions: !!gd.querySelector(regions),
                  boundary: Array.from(pieces, path => path.getAttribute('d') || '').join('')});
    if (performance.now() < end) requestAnimationFrame(paint); else resolve(painted);
  }
  requestAnimationFrame(paint);
})"""


def watch_paints(figure, regions: str, boundary: str, ms: float) -> dict:
    """Play the animation of `figure` (a Playwright locator of a plotly figure) with its ▶ Play button
    and watch every frame painted for `ms` milliseconds (WATCH_PAINTS_JS): how many were painted, how
    many without the element `regions` or without the line trace `boundary` (CSS selectors within the
    figure), and the distinct slider steps and boundaries seen."""
    figure.locator(".updatemenu-button", has_text="Play").click()
    painted = figure.evaluate(WATCH_PAINTS_JS, {"regions": regions, "boundary": boundary, "ms": ms})
    return {"painted": len(painted), "without_regions": sum(not p["regions"] for p in painted),
            "without_boundary": sum(len(p["boundary"]) < 50 for p in painted),
            "steps": sorted({p["step"] for p in painted}), "boundaries": len({p["boundary"] for p in painted})}


def chromium_path() -> str | None:
    """The Chromium binary to drive: NSLVIZ_CHROMIUM, else the first of CHROMIUM_NAMES on PATH, else None."""
    configured = os.environ.get("NSLVIZ_CHROMIUM")
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise ValueError(f"NSLVIZ_CHROMIUM={configured!r} is not an executable file; expected the path "
                             "of a Chromium binary (or unset it to search PATH)")
        return configured
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def missing_browser() -> str | None:
    """Why no browser can be driven here (a sentence naming the install step), or None when one can.
    A bad NSLVIZ_CHROMIUM is an error (chromium_path), whether or not playwright is installed."""
    path = chromium_path()
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed: pip install -e \".[browser]\""
    if path is None:
        return ("no Chromium binary on PATH (looked for " + ", ".join(CHROMIUM_NAMES)
                + "): apt-get install chromium, or set NSLVIZ_CHROMIUM")
    return None


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[object]:
    """A Playwright browser context (new pages via `.new_page()`) of a headless Chromium, closed on exit."""
    reason = missing_browser()
    if reason:
        raise RuntimeError(f"cannot start a browser: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses its sandbox to the root user (containers, CI)
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context
        finally:
            browser.close()


def animation_draw_ms(page, index: int = 0, repeats: int = 1) -> list[float]:
    """Milliseconds to draw each frame of the `index`-th plotly figure of `page` (see ANIMATE_FRAMES_JS)."""
    return page.evaluate(ANIMATE_FRAMES_JS, {"index": index, "repeats": repeats})
