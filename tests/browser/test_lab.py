"""Notebook 01 in a real JupyterLab, in quick mode, as a reader uses it: Run All, then the live T and S
sliders redraw the figure with another accuracy (training a pair not seen yet), and ▶ Play moves the
animation through its frames with the regions and the decision boundary in every frame painted.
NSLVIZ_BROWSER_RUN_ALL_S bounds the wait for Run All (seconds, default 1800)."""
from __future__ import annotations

import os
import re
import time

import pytest

NOTEBOOK = "01_spiral_toy.ipynb"
RUN_ALL_S = float(os.environ.get("NSLVIZ_BROWSER_RUN_ALL_S", 1800))  # quick mode: about a minute of CPU


@pytest.fixture(scope="module")
def notebook_page(lab_server, chromium_context):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout   # installed: chromium_context checked

    base, token, _ = lab_server
    page = chromium_context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}", timeout=120_000)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    # the status bar names the kernel once it is connected ("No Kernel | Initializing" before: Run All
    # then skips every cell)
    page.get_by_text(re.compile(r"\(ipykernel\) \| Idle")).first.wait_for(timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    try:
        explorer_note(page).filter(has_text="MN test accuracy").wait_for(timeout=RUN_ALL_S * 1000)
    except PlaywrightTimeout:
        shot = lab_server[2].parent / "run_all_timeout.png"
        page.screenshot(path=str(shot), full_page=True)
        pytest.fail(f"notebook 01 did not show the explorer's accuracy within {RUN_ALL_S:.0f} s (page: {shot})")
    tracebacks = page.locator(".jp-OutputArea-output", has_text="Traceback")
    assert tracebacks.count() == 0, tracebacks.first.inner_text()[:2000]
    yield page
    assert not errors, errors
    page.close()


def explorer_note(page):
    return page.locator(".widget-html", has_text=re.compile(r"T=.*S=")).last


def explorer_state(page) -> dict:
    """The live explorer's note and its figure's panel titles (which carry the accuracies)."""
    figure = page.locator(".widget-output .js-plotly-plot").last
    return {"note": explorer_note(page).inner_text(),
            "titles": figure.evaluate("gd => Array.from(gd.querySelectorAll('.annotation-text, .gtitle'))"
                                      ".map(node => node.textContent)")}


def move_slider(page, label: str, presses: int) -> str:
    """Press → (← for negative `presses`) on the handle of the slider labelled `label`: each press
    is a release, which sends the value; returns the readout after."""
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=re.compile(f"^{label}$"))).last
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for _ in range(abs(presses)):
        handle.press("ArrowRight" if presses > 0 else "ArrowLeft")
    return slider.locator(".widget-readout").inner_text()


def record_notes(page) -> None:
    """Keep every text the explorer's note shows from now on (a MutationObserver in the page), so that a
    note shown between two polls of `wait_for_note` is seen too."""
    explorer_note(page).evaluate("note => { window.nslvizNotes = [note.textContent];"
                                 " new MutationObserver(() => window.nslvizNotes.push(note.textContent))"
                                 ".observe(note, {subtree: true, childList: true, characterData: true}); }")


def wait_for_note(page, pair: str, timeout_s: float = 300) -> tuple[dict, bool]:
    """Wait until the explorer shows `pair` ("T=0.3, S=30") redrawn; also says whether the
    "training" note was shown on the way (since `record_notes`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = explorer_state(page)
        if state["note"].startswith(f"{pair}, 400 training steps: MN test accuracy"):   # quick mode's sweep length
            training_seen = any("⏳" in note for note in page.evaluate("window.nslvizNotes || []"))
            return state, training_seen
        page.wait_for_timeout(100)
    pytest.fail(f"the explorer did not show {pair} within {timeout_s} s: {explorer_state(page)}")


def panel_title(titles: list[str], start: str) -> str:
    return next(title for title in titles if title.startswith(start))


def test_t_and_s_sliders_redraw_the_figure_with_its_accuracy(notebook_page):
    page = notebook_page
    before = explorer_state(page)
    assert before["note"].startswith("T=0.1, S=100, 400 training steps: MN test accuracy")   # the paper's setting
    assert move_slider(page, "T", 1) == "0.3"
    after_t, _ = wait_for_note(page, "T=0.3, S=100")
    assert any("T=0.3" in title for title in after_t["titles"])
    assert panel_title(after_t["titles"], "linear + induced") != panel_title(before["titles"], "linear + induced")
    # S from 100 to 30: a pair quick mode has not trained, trained on release with a note meanwhile
    record_notes(page)
    assert move_slider(page, "S", -2) == "30"
    after_s, training_seen = wait_for_note(page, "T=0.3, S=30")
    assert training_seen
    assert any("S=30" in title for title in after_s["titles"])
    assert panel_title(after_s["titles"], "linear + induced") != panel_title(after_t["titles"], "linear + induced")
    # the plain linear classifier has no T or S: its panel is the same in all three
    assert len({panel_title(state["titles"], "plain linear") for state in (before, after_t, after_s)}) == 1


def test_play_paints_every_frame_with_its_regions_and_boundary(notebook_page):
    """▶ Play moves through the frames, and every frame the browser paints while it plays shows the
    predicted regions and the decision boundary (a heatmap there was taken off the plot while a frame's
    scatter traces moved, and a trace a frame left out was drawn under the regions)."""
    from nslviz.browser import watch_paints
    from nslviz.viz.spiral import PAINTED_BOUNDARY, PAINTED_REGIONS

    page = notebook_page
    animation = page.locator(".js-plotly-plot", has=page.locator(".updatemenu-button")).first
    animation.scroll_into_view_if_needed()
    seen = watch_paints(animation, PAINTED_REGIONS, PAINTED_BOUNDARY, ms=5000)
    assert len(seen["steps"]) >= 4, f"the animation showed steps {seen['steps']} in 5 s of playback"
    assert seen["painted"] >= 10, seen                                        # the watch saw playback
    assert seen["without_regions"] == 0, f"frames painted without the predicted regions: {seen}"
    assert seen["without_boundary"] == 0, f"frames painted without the decision boundary: {seen}"
    assert seen["boundaries"] >= 3, seen                                      # the boundary moves with training
