"""python -m nslviz site: every notebook executed in quick mode, as a folder of standalone pages.

    python -m nslviz site --out site            # what `make site` runs
    python -m nslviz site --only 01_spiral_toy  # one notebook; the others' pages stay

Writes one page per notebook (`export-notebook`'s pages: no kernel, no network needed), a thumbnail
of each page's first figure (a screenshot by headless Chromium, where nslviz.browser finds one) and
index.html, which links them with the time each notebook took in quick mode. site.json keeps those
times, so that a rerun of some notebooks (--only) keeps the others' rows.
"""
from __future__ import annotations

import html
import json
import re
import shlex
import time
from pathlib import Path

from .common import emit_json, folder_path, positive_int
from .export_notebook import DEFAULT_CELL_TIMEOUT, export_notebook

NOTEBOOKS = Path("notebooks")
THUMBNAIL_WIDTH = 360


def notebook_title(path: Path) -> str:
    """The first markdown heading of a notebook, without its '#'s (the file name where it has none)."""
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            heading = re.search(r"^#+\s+(.+)$", cell.source, re.M)
            if heading:
                return heading.group(1).strip()
    return path.stem


def thumbnail(page: Path, out: Path, context) -> bool:
    """Screenshot of the first drawn plotly figure of `page` (else the top of the page), THUMBNAIL_WIDTH
    wide, to `out`. False where the page has nothing to show."""
    from PIL import Image

    tab = context.new_page()
    try:
        tab.goto(page.resolve().as_uri(), timeout=120_000)
        figure = tab.locator(".plotly-graph-div .main-svg").first
        try:
            figure.wait_for(timeout=30_000)
            tab.wait_for_timeout(500)                             # let the first frame settle
            target = tab.locator(".plotly-graph-div").first
        except Exception:                                        # no figure on the page (a timeout)
            target = tab.locator("body")
        target.screenshot(path=str(out), timeout=30_000)
    finally:
        tab.close()
    with Image.open(out) as image:
        height = round(image.height * THUMBNAIL_WIDTH / image.width)
        image.convert("RGB").resize((THUMBNAIL_WIDTH, height), Image.LANCZOS).save(out, optimize=True)
    return True


def index_page(rows: list[dict], note: str) -> str:
    """index.html: a card per notebook (thumbnail, title, quick-mode time, link); no script, no network."""
    cards = []
    for row in rows:
        image = (f'<img src="{html.escape(row["thumbnail"])}" alt="first figure of {html.escape(row["page"])}">'
                 if row.get("thumbnail") else '<div class="none">no figure</div>')
        cards.append(f"""<a class="card" href="{html.escape(row['page'])}">{image}
<h2>{html.escape(row['title'])}</h2>
<p>{html.escape(row['page'])} · quick mode: {row['seconds']:.0f} s</p></a>""")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nslviz notebooks</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax({THUMBNAIL_WIDTH + 20}px, 1fr)); gap: 1em; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 10px; color: inherit; text-decoration: none; }}
.card:hover {{ border-color: #4c72b0; }}
.card img {{ width: 100%; border: 1px solid #eee; }}
.card h2 {{ font-size: 1.05em; margin: 0.5em 0 0.2em; }}
.card p, .none {{ color: #666; font-size: 0.9em; margin: 0; }}
</style></head>
<body><h1>nslviz notebooks</h1>
<p>{html.escape(note)}</p>
<div class="grid">
{chr(10).join(cards)}
</div></body></html>
"""


def build_site(out_dir: str | Path = "site", notebooks: list[Path] | None = None,
               cell_timeout: int = DEFAULT_CELL_TIMEOUT, progress=print) -> dict:
    """Execute `notebooks` (default: every notebooks/*.ipynb) in quick mode into `out_dir` and write
    the thumbnails, site.json ({name: {title, page, thumbnail, seconds}}) and index.html.
    Returns site.json's content."""
    from .. import browser
    from ..training.rundir import atomic_write_json, atomic_write_text, check_run_dir_is_usable

    check_run_dir_is_usable(out_dir, "output folder")                  # "" or a file: refused before any run
    out_dir = Path(out_dir)
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb")) if notebooks is None else [Path(p) for p in notebooks]
    if not notebooks:
        raise ValueError(f"no notebooks to build: expected .ipynb files in {NOTEBOOKS}/ (relative to the current folder "
                         f"{str(Path.cwd())!r}: run site from the repository's root) or named with --only")
    for path in notebooks:
        if not path.is_file():
            where = "" if path.is_absolute() else f" in the current folder {str(Path.cwd())!r}"
            raise ValueError(f"notebook {str(path)!r} does not exist{where}; expected one of {NOTEBOOKS}/*.ipynb, "
                             f"from the repository's root")
    reason = browser.missing_browser()          # a bad NSLVIZ_CHROMIUM is named now, not after the notebooks
    (out_dir / "thumbnails").mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "site.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for path in notebooks:
        progress(f"{path.name}: running in quick mode ...")
        started = time.perf_counter()
        try:
            export_notebook(path, out_dir, {"quick": True}, cell_timeout=cell_timeout)
        except TimeoutError as error:       # the rerun that finishes the site, not one page of it
            left = " ".join(shlex.quote(p.stem) for p in notebooks[notebooks.index(path):])
            raise TimeoutError(f"a cell of {path.name} ran longer than --cell-timeout {cell_timeout} s. Training "
                               f"runs that finished are kept and a cut one resumes: rerun `python -m nslviz site "
                               f"--out {shlex.quote(str(out_dir))} --only {left} --cell-timeout {2 * cell_timeout}`"
                               ) from error
        seconds = time.perf_counter() - started
        manifest[path.stem] = {"title": notebook_title(path), "page": f"{path.stem}.html", "seconds": round(seconds, 1)}
        progress(f"{path.name}: {seconds:.0f} s")
        atomic_write_json(manifest_path, manifest)
    if reason:
        progress(f"no thumbnails: {reason}")
    else:
        with browser.chromium() as context:
            for name in [p.stem for p in notebooks]:
                shot = out_dir / "thumbnails" / f"{name}.png"
                thumbnail(out_dir / manifest[name]["page"], shot, context)
                manifest[name]["thumbnail"] = f"thumbnails/{name}.png"
        atomic_write_json(manifest_path, manifest)
    rows = [manifest[name] for name in sorted(manifest) if (out_dir / manifest[name]["page"]).exists()]
    note = ("Every notebook of the repository, executed in quick mode (NSLVIZ_QUICK=1: short runs on small "
            "data) and saved as a page that needs no kernel and no network. The time is the notebook's whole "
            "quick-mode run on the machine that built this site.")
    atomic_write_text(out_dir / "index.html", index_page(rows, note))
    return manifest


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("site", help="run every notebook in quick mode and write a folder of standalone pages")
    p.add_argument("--out", type=folder_path, default="site", help="output folder (default: site)")
    p.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK",
                   help="notebook names or paths to (re)build, e.g. 01_spiral_toy (default: all of notebooks/)")
    p.add_argument("--cell-timeout", type=positive_int, default=DEFAULT_CELL_TIMEOUT, metavar="SECONDS",
                   help=f"stop when one cell runs longer (default: {DEFAULT_CELL_TIMEOUT})")
    p.add_argument("--json", action="store_true",
                   help="end the output with one JSON object: the site's manifest (every page built)")
    p.set_defaults(run=run, subparser=p)


def notebook_path(name: str) -> Path:
    """A --only value: a path to an .ipynb, or a notebook's name in notebooks/ (with or without .ipynb)."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.exists():
        return path
    return NOTEBOOKS / f"{path.stem}.ipynb"


def run(args) -> int:
    notebooks = None if args.only is None else [notebook_path(name) for name in args.only]
    manifest = build_site(args.out, notebooks, cell_timeout=args.cell_timeout,
                          progress=lambda line: print(line, flush=True))
    print(f"site: {Path(args.out).resolve() / 'index.html'}", flush=True)
    if args.json:
        emit_json(manifest)
    return 0
