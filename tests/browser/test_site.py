"""Every page `make site` wrote, opened offline in Chromium: no console error, no request leaving the
machine, every plotly figure drawn, and the index links every page with its thumbnail."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SITE = Path(os.environ.get("NSLVIZ_SITE", Path(__file__).resolve().parents[2] / "site"))
PAGES = sorted(p.name for p in SITE.glob("*.html")) or ["index.html"]     # none: site_dir says why


@pytest.fixture(scope="session")
def site_dir():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"{SITE}/index.html does not exist: run `make site` (or python -m nslviz site --only "
                    "01_spiral_toy) first")
    return SITE


def open_offline(context, page_path: Path):
    """Open a page with every request other than file: and data: refused; returns (page, errors, requests)."""
    page = context.new_page()
    errors, requests = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def refuse_remote(route):
        requests.append(route.request.url)
        route.abort()

    page.route(lambda url: not url.startswith(("file:", "data:", "blob:")), refuse_remote)
    page.goto(page_path.resolve().as_uri(), timeout=180_000, wait_until="load")
    return page, errors, requests


@pytest.mark.parametrize("name", PAGES)
def test_page_draws_offline_without_errors(site_dir, chromium_context, name):
    page, errors, requests = open_offline(chromium_context, site_dir / name)
    try:
        figures = page.locator(".js-plotly-plot")
        page.wait_for_function("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
                                     .every(gd => gd._fullLayout && gd.querySelector('.main-svg'))""",
                               timeout=120_000)
        drawn = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
                                   .map(gd => gd.querySelectorAll('.main-svg .trace, .main-svg image').length)""")
        assert all(traces > 0 for traces in drawn), f"figures with nothing drawn: {drawn}"
        if name != "index.html":
            assert figures.count() >= 1
        assert not requests, f"{name} asked the network for {requests[:5]}"
        assert not errors, f"{name} logged console errors: {errors[:5]}"
    finally:
        page.close()


def test_index_links_every_page_with_thumbnail_and_time(site_dir):
    index = (site_dir / "index.html").read_text()
    pages = sorted(p.name for p in site_dir.glob("*.html") if p.name != "index.html")
    assert pages, "the site has no notebook page"
    for name in pages:
        assert f'href="{name}"' in index
        stem = name.removesuffix(".html")
        assert f'src="thumbnails/{stem}.png"' in index and (site_dir / "thumbnails" / f"{stem}.png").stat().st_size > 1000
    assert index.count("quick mode:") == len(pages)
