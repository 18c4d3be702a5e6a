"""python -m nslviz export-notebook: execute a notebook headless and write a standalone HTML page.

    python -m nslviz export-notebook notebooks/03_cifar.ipynb -p backbone resnet29 -p epochs 1 -p quick True

`-p NAME VALUE` sets a papermill parameter as `papermill -p` does: VALUE is read as a Python literal
(1, 0.5, True, None, "text", [..]) and kept as text otherwise.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from .common import emit_json, folder_path


def export_notebook(notebook: str | Path, out_dir: str | Path = "out", parameters: dict | None = None,
                    timeout: int = 1800) -> dict:
    """Run `notebook` with papermill (parameters injected after its `parameters` cell) in its own
    folder, then export the executed notebook to HTML (plotly figures embed plotly.js, so the page,
    animations included, works offline with no kernel; the equations are MathML, see
    `html_exporter`; `drop_widget_outputs` says what happens to the widgets). Returns the two paths.
    A cell that raises: NotebookFailed naming the cell, the error and the partly executed notebook."""
    import nbformat
    import papermill

    from ..training.rundir import atomic_write_text, check_run_dir_is_usable

    notebook, out_dir = Path(notebook), Path(out_dir)
    if not notebook.is_file():
        raise ValueError(f"notebook {str(notebook)!r} does not exist; expected a path to an .ipynb file")
    unknown = sorted(set(parameters or {}) - set(papermill.inspect_notebook(str(notebook))))
    if unknown:
        raise ValueError(f"{notebook.name} has no parameter(s) {unknown}; its parameters are "
                         f"{', '.join(papermill.inspect_notebook(str(notebook)))}")
    check_run_dir_is_usable(out_dir, "output folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    try:
        papermill.execute_notebook(str(notebook), str(executed), parameters=parameters or {},
                                   cwd=str(notebook.parent), kernel_name="python3", progress_bar=False,
                                   execution_timeout=timeout)
    except papermill.PapermillExecutionError as error:        # the notebook's own error, not 40 lines of frames
        raise NotebookFailed(f"{notebook.name} stopped in cell In [{error.exec_count}] with {error.ename}: "
                             f"{error.evalue}; the notebook as far as it ran is {str(executed.resolve())!r}") from None
    executed_notebook = drop_widget_outputs(nbformat.read(executed, as_version=4))
    atomic_write_text(executed, nbformat.writes(executed_notebook))
    body, _ = html_exporter().from_notebook_node(executed_notebook)
    html = executed.with_suffix(".html")
    atomic_write_text(html, body)
    return {"notebook": str(executed.resolve()), "html": str(html.resolve())}


class NotebookFailed(ValueError):
    """A cell of the executed notebook raised (a bad parameter value, most often): the CLI exits 2
    with the cell and the error's last line, and the partly executed notebook stays for a look."""


def tex_to_mathml(tex: str, display: str) -> str | None:
    """The MathML of one TeX formula (`display` "inline" or "block"), or None where latex2mathml
    cannot write it: it leaves an unknown command as its literal name (`<mi>\\foo</mi>`) or raises."""
    from latex2mathml.converter import convert

    # "\mathbb R" becomes <mi mathvariant="double-struck">, which Chromium draws as a plain R;
    # "\mathbb{R}" becomes the letter ℝ itself, which every browser draws
    tex = re.sub(r"\\(mathbb|mathcal|mathbf|mathfrak|mathscr)\s+([A-Za-z])", r"\\\1{\2}", tex)
    try:
        mathml = convert(tex, display=display)
    except Exception:  # latex2mathml raises its own and plain parser errors on TeX it does not know
        return None
    # an unknown command left as its name, or an empty operator (latex2mathml's \operatorname{a\,b})
    return None if re.search(r">\\[A-Za-z]", mathml) or "<mo />" in mathml else mathml


def html_exporter():
    """nbconvert's HTML exporter with the markdown cells' equations written as MathML, which every
    current browser draws itself, so the exported page shows them offline. (Plain nbconvert leaves
    them as TeX for MathJax, which it loads from a CDN.) A formula latex2mathml cannot write stays
    TeX, for MathJax to typeset when the page is online; tests/test_notebook_export.py checks that
    no formula in this repository's notebooks needs it."""
    from jinja2 import pass_context
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    class MathMLRenderer(IPythonRenderer):
        def block_math(self, body: str) -> str:
            return tex_to_mathml(body, "block") or super().block_math(body)

        def inline_math(self, body: str) -> str:
            return tex_to_mathml(body, "inline") or super().inline_math(body)

        def latex_environment(self, name: str, body: str) -> str:
            return (tex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block")
                    or super().latex_environment(name, body))

    class MathMLHTMLExporter(HTMLExporter):
        @pass_context
        def markdown2html(self, context, source):
            # HTMLExporter.markdown2html with the renderer above
            cell = context.get("cell", {})
            renderer = MathMLRenderer(
                escape=False, attachments=cell.get("attachments", {}), embed_images=self.embed_images,
                path=context.get("resources", {}).get("metadata", {}).get("path", ""),
                anchor_link_text=self.anchor_link_text, exclude_anchor_links=self.exclude_anchor_links,
                **self.lexer_options)
            return MarkdownWithMath(renderer=renderer).render(source)

    return MathMLHTMLExporter()


def drop_widget_outputs(notebook):
    """Remove the ipywidgets outputs (tqdm progress bars, sliders) of a notebook executed headless:
    their state is not saved, so a static page shows them as empty boxes and the saved text of a
    progress bar is a stale "0%". The figures and the printed results stay."""
    widget = "application/vnd.jupyter.widget-view+json"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if widget not in output.get("data", {})]
    return notebook


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export-notebook", help="execute a notebook and export it to standalone HTML")
    p.add_argument("notebook", help="path to the .ipynb")
    p.add_argument("--out", type=folder_path, default="out", help="output folder (default: out)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="papermill parameter (repeatable); VALUE is a Python literal or else text")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run, subparser=p)


def parse_parameter(value: str):
    """A `-p` value: the Python literal it spells (1, 0.5, True, None, [..]), else the text itself."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def run(args) -> int:
    paths = export_notebook(args.notebook, args.out, {name: parse_parameter(value) for name, value in args.parameter})
    print(f"executed notebook: {paths['notebook']}\nstandalone HTML:   {paths['html']}", flush=True)
    if args.json:
        emit_json(paths)
    return 0
