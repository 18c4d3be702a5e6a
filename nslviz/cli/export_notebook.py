"""python -m nslviz export-notebook: execute a notebook headless and write a standalone HTML page.

    python -m nslviz export-notebook notebooks/01_spiral_toy.ipynb -p temperature 0.3 -p quick True

`-p NAME VALUE` sets a papermill parameter as `papermill -p` does: VALUE is read as a Python literal
(1, 0.5, True, None, "text", [..]) and kept as text otherwise.
"""
from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

from .._checks import check_positive
from .common import emit_json, folder_path, positive_int


DEFAULT_CELL_TIMEOUT = 1800      # seconds one cell may run before the export stops

# The kernel runs on this machine for this process alone: its start-up notes (the transport it
# listens on, an interrupt caught) are not the reader's business; the notebook's errors still are.
QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]


def export_notebook(notebook: str | Path, out_dir: str | Path = "out", parameters: dict | None = None,
                    cell_timeout: int = DEFAULT_CELL_TIMEOUT) -> dict:
    """Run `notebook` with papermill (parameters injected after its `parameters` cell) in its own
    folder, then export the executed notebook to HTML: a page that makes no network request
    (plotly.js inlined once, no MathJax, require.js or widget scripts from a CDN; the equations are
    MathML, see `html_exporter`; `offline_outputs` says what happens to the widgets). A cell that
    runs longer than `cell_timeout` seconds stops the export with a TimeoutError that names the rerun
    (training runs already finished are reused, a cut one resumes). Returns the two paths.
    A cell that raises: NotebookFailed naming the cell, the error and the partly executed notebook."""
    import nbformat
    import papermill

    from ..training.rundir import atomic_write_text, check_run_dir_is_usable

    notebook, out_dir = Path(notebook), Path(out_dir)
    if not notebook.is_file():
        what = "is a folder" if notebook.is_dir() else "does not exist"
        raise ValueError(f"notebook {str(notebook)!r} {what}; expected a path to an .ipynb file")
    if notebook.suffix != ".ipynb":
        raise ValueError(f"notebook {str(notebook)!r} is not an .ipynb file; expected a path to an .ipynb file")
    check_positive("cell_timeout", cell_timeout, integer=True, minimum=1)
    try:
        nbformat.read(notebook, as_version=4)       # reading validates against the notebook schema too
    except Exception as error:       # not JSON, JSON of another shape, or a notebook that breaks its schema
        raise ValueError(f"notebook {str(notebook)!r} is not a readable Jupyter notebook "
                         f"({type(error).__name__}: {str(error).splitlines()[0][:200]}); expected an .ipynb file "
                         f"as JupyterLab writes it") from None
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
                                   execution_timeout=cell_timeout, extra_arguments=QUIET_KERNEL)
    except papermill.PapermillExecutionError as error:        # the notebook's own error, not 40 lines of frames
        raise NotebookFailed(f"{notebook.name} stopped in cell In [{error.exec_count}] with {error.ename}: "
                             f"{error.evalue}; the notebook as far as it ran is {str(executed.resolve())!r}") from None
    except RuntimeError as error:       # nbclient's DeadKernelError: the kernel process ended (out of memory?)
        if type(error).__name__ != "DeadKernelError":
            raise
        raise NotebookFailed(f"the kernel running {notebook.name} died ({error}; out of memory is the usual cause); "
                             f"the notebook as far as it ran is {str(executed.resolve())!r}") from None
    except TimeoutError as error:       # nbclient's CellTimeoutError
        rerun = " ".join(["python -m nslviz export-notebook", shlex.quote(str(notebook)), "--out",
                          shlex.quote(str(out_dir)), "--cell-timeout", str(2 * cell_timeout),
                          *(f"-p {name} {shlex.quote(repr(value))}" for name, value in (parameters or {}).items())])
        raise TimeoutError(f"a cell of {notebook.name} ran longer than --cell-timeout {cell_timeout} s, so no "
                           f"HTML was written. Training runs that finished are kept and a cut one resumes "
                           f"from its last checkpoint: rerun `{rerun}` (or the same command with "
                           f"NSLVIZ_QUICK=1 for the quick version)") from error
    executed_notebook = offline_outputs(nbformat.read(executed, as_version=4))
    atomic_write_text(executed, nbformat.writes(executed_notebook))
    body, _ = html_exporter().from_notebook_node(executed_notebook)
    html = executed.with_suffix(".html")
    atomic_write_text(html, body)
    return {"notebook": str(executed.resolve()), "html": str(html.resolve())}


def output_text(notebook: str | Path, text: str) -> str:
    """The first text output (plain-text display, result or printed stream) of an executed notebook that
    contains `text`, as shown in a terminal; ValueError naming the notebook when none does."""
    import nbformat

    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            shown = output.get("text") or output.get("data", {}).get("text/plain", "")
            shown = "".join(shown) if isinstance(shown, list) else shown
            if text in shown:
                return shown.rstrip("\n")
    raise ValueError(f"no output of {Path(notebook).name} contains {text!r}; the executed notebook is "
                     f"{str(Path(notebook).resolve())!r}")


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
    # a norm or absolute value raised or indexed as a whole (‖x−k‖², ‖W‖_*, |∇X|²) is braced: latex2mathml
    # would give the power to the closing bar alone, which Chromium then draws small and low
    tex = NORM_POWER.sub(r"{\1}", tex)
    try:
        mathml = convert(tex, display=display)
    except Exception:  # latex2mathml raises its own and plain parser errors on TeX it does not know
        return None
    # an unknown command left as its name, or an empty operator (latex2mathml's \operatorname{a\,b})
    if re.search(r">\\[A-Za-z]", mathml) or "<mo />" in mathml:
        return None
    if display == "block":
        # $$...$$ is display style: Σ drawn large (largeop) with its limits under and over it, as TeX
        # does, also where the browser's operator dictionary or font would set them beside it
        mathml = re.sub(r"<(munder|munderover)><mo>(" + "|".join(re.findall("&#x[0-9A-F]+;", LARGE_OPERATORS)) + ")</mo>",
                        r'<\1><mo largeop="true" movablelimits="false">\2</mo>', mathml)
    return mathml


# nbconvert's JupyterLab page without the scripts it loads from CDNs (require.js, MathJax, mermaid):
# the equations are MathML, and plotly.js, inlined by the first figure, needs no module loader.
# Display formulas ask for a font with an OpenType MATH table, in which the browser draws a
# display-size Σ with its limits above and below; the generic `math` family is the last resort.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{% block extra_css %}
<style type="text/css">
math { font-family: "STIX Two Math", "Latin Modern Math", "DejaVu Math TeX Gyre", "Cambria Math", math; }
math[display="block"] { margin: 0.8em 0; font-size: 1.1em; }
</style>
{% endblock extra_css %}
"""
NORM_POWER = re.compile(r"((?<!\\left)\\lVert(?:(?!\\[lr]Vert).)*\\rVert"    # \lVert x \rVert
                        r"|\\\|(?:(?!\\\|).)*\\\|"                                # \|x\|
                        r"|(?<![\\a-z])\|[^|]*(?<!\\)\|)(?=\s*[\^_])")                # |x|, not \| or \left|
LARGE_OPERATORS = "&#x02211;&#x0220F;&#x02210;&#x0222B;&#x022C3;&#x022C2;"     # ∑ ∏ ∐ ∫ ⋃ ⋂ as latex2mathml writes them


def html_exporter():
    """nbconvert's HTML exporter with the markdown cells' equations written as MathML, which every
    current browser draws itself, so the exported page shows them offline, in a page that loads
    nothing from the network (`OFFLINE_TEMPLATE`). (Plain nbconvert leaves them as TeX for MathJax,
    which it loads from a CDN.) A formula latex2mathml cannot write stays TeX; tests/test_notebook_export.py
    checks that no formula in this repository's notebooks is left so."""
    from jinja2 import DictLoader, pass_context
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
        def __init__(self, **kwargs):
            super().__init__(extra_loaders=[DictLoader({"nslviz_offline.html.j2": OFFLINE_TEMPLATE})],
                             template_file="nslviz_offline.html.j2", **kwargs)

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


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\ssrc=[\"']?(https?:)?//[^>]*>\s*</script>", re.I)
PLOTLY_JS_BANNER = "* plotly.js v"           # the licence header that opens every inlined copy of plotly.js


def offline_outputs(notebook):
    """A notebook executed headless, made for a static page with no kernel and no network:

    * ipywidgets have no saved state there, so their data is dropped: an output that carries an HTML
      fallback (nslviz.viz.spiral.KernelOnly's "needs a running kernel" note) shows it; one with only
      text (a tqdm progress bar, whose saved text is a stale "0%") is removed; the notebook's saved
      widget state goes too (the page would load the widget manager from a CDN to draw it);
    * `<script src="https://...">` tags in HTML outputs (plotly's figure HTML asks for MathJax from a
      CDN, which no figure here uses) are removed;
    * plotly.js is kept once: a later output that only inlines it again is removed.
    The figures and the printed results stay."""
    notebook.metadata.pop("widgets", None)
    plotly_js_seen = False
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                if "text/html" not in data:
                    continue
                data.pop("text/plain", None)
            html = data.get("text/html")
            if html is not None:
                html = EXTERNAL_SCRIPT.sub("", "".join(html) if isinstance(html, list) else html)
                if PLOTLY_JS_BANNER in html:
                    if plotly_js_seen and "plotly-graph-div" not in html:
                        continue
                    plotly_js_seen = True
                data["text/html"] = html
            outputs.append(output)
        cell.outputs = outputs
    return notebook


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export-notebook", help="execute a notebook and export it to standalone HTML")
    p.add_argument("notebook", help="path to the .ipynb")
    p.add_argument("--out", type=folder_path, default="out", help="output folder (default: out)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="papermill parameter (repeatable); VALUE is a Python literal or else text")
    p.add_argument("--cell-timeout", type=positive_int, default=DEFAULT_CELL_TIMEOUT, metavar="SECONDS",
                   help=f"stop when one cell runs longer (default: {DEFAULT_CELL_TIMEOUT}); the error names "
                        "the rerun, which reuses finished training runs")
    p.add_argument("--show", metavar="TEXT", default=None,
                   help="then print the first text output that contains TEXT (exit 2 when none does)")
    p.add_argument("--json", action="store_true",
                   help='end the output with one JSON object: {"notebook": executed .ipynb, "html": its page}')
    p.set_defaults(run=run, subparser=p)


def parse_parameter(value: str):
    """A `-p` value: the Python literal it spells (1, 0.5, True, None, [..]), else the text itself."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def run(args) -> int:
    paths = export_notebook(args.notebook, args.out, {name: parse_parameter(value) for name, value in args.parameter},
                            cell_timeout=args.cell_timeout)
    print(f"executed notebook: {paths['notebook']}\nstandalone HTML:   {paths['html']}", flush=True)
    if args.show is not None:
        print(output_text(paths["notebook"], args.show), flush=True)
    if args.json:
        emit_json(paths)
    return 0
