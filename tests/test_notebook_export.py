"""The papermill command and the static HTML export: `export-notebook` runs notebook 03 with
papermill parameters (`-p backbone resnet29`, as `papermill notebooks/03_cifar.ipynb out.ipynb -p
backbone resnet29` does) and writes an HTML page whose plotly figures work without a kernel or the
internet, equations included (MathML, not TeX for MathJax from a CDN)."""
import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from nslviz.__main__ import main
from nslviz.cli.export_notebook import html_exporter, parse_parameter, tex_to_mathml

NOTEBOOKS = sorted(Path("notebooks").glob("*.ipynb"))


def markdown_html(body: str) -> str:
    """The exported markdown cells of an HTML page, joined."""
    return "".join(re.findall(r'<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown[^>]*>(.*?)</div>', body, re.S))


def test_parameter_values_are_python_literals_or_text():
    assert [parse_parameter(v) for v in ("1", "0.5", "True", "None", "[1, 2]", "resnet29", "a b")] == \
        [1, 0.5, True, None, [1, 2], "resnet29", "a b"]


def test_quick_takes_papermills_text_for_true_and_false_and_names_anything_else(monkeypatch):
    from nslviz import quick_mode
    monkeypatch.setenv("NSLVIZ_QUICK", "1")
    for value in (False, 0, "false", "False", " no", "0", "off"):       # `-p quick false` asks for the full run
        assert quick_mode(value) is False, value
    for value in (True, 1, "true", "Yes", "1", "on"):
        assert quick_mode(value) is True, value
    assert quick_mode(None) is True
    monkeypatch.setenv("NSLVIZ_QUICK", "0")
    assert quick_mode(None) is False
    for value in ("maybe", 2, 0.5):
        with pytest.raises(ValueError, match=f"quick must be True or False .*got {value!r}"):
            quick_mode(value)


def test_equations_become_mathml_and_unknown_tex_stays_for_mathjax():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "Inline $\\phi_i = \\phi - \\alpha\\,\\nabla_\\phi L$ and $x<y$, a block\n\n$$\\sum_{j=1}^S \\omega_{ij}$$\n\n"
        "and a command latex2mathml does not know: $\\arg\\max_c v_c$. Code keeps dollars: `$HOME`.")])
    text = markdown_html(html_exporter().from_notebook_node(notebook)[0])
    formulas = re.findall(r"<math [^>]*>", text)
    assert len(formulas) == 3 and all('xmlns="http://www.w3.org/1998/Math/MathML"' in f for f in formulas)
    assert sorted(re.search(r'display="(\w+)"', f)[1] for f in formulas) == ["block", "inline", "inline"]
    assert "<mi>ω</mi>" in text and "<mo>&lt;</mo>" in text                # "<" is escaped inside MathML
    assert "$\\arg\\max_c v_c$" in text                                  # left for MathJax, not mangled
    assert "<code>$HOME</code>" in text
    assert tex_to_mathml("\\arg x", "inline") is None and tex_to_mathml("x^", "inline") is None
    assert tex_to_mathml("\\left( x", "block") is None
    assert tex_to_mathml("\\operatorname{arg\\,max}_c", "inline") is None          # latex2mathml: an empty <mo />
    assert "&#x02112;" in tex_to_mathml("\\mathcal L", "inline") and "&#x0211D;" in tex_to_mathml("\\mathbb R", "inline")


@pytest.mark.parametrize("tex", ["-\\lVert x-k\\rVert^2", "\\lVert W\\rVert_*", "\\|W\\|_*", "|\\nabla X|^2",
                                 "\\sum_i\\lVert y_i - W^\\top x_i\\rVert^2"])
def test_a_norm_with_a_power_or_index_takes_it_as_a_whole(tex):
    """‖x−k‖²: both bars inside the base of <msup>/<msub>; with the power on the closing bar alone
    Chromium draws that bar small and low and the opening one tall."""
    mathml = tex_to_mathml(tex, "inline")
    base = re.search(r"<(msup|msub)><mrow>(.*?)</mrow><m[ion]>", mathml)
    bar = "&#x02016;" if "V" in tex or "\\|" in tex else "&#x0007C;"
    assert base and base[2].count(bar) == 2, mathml
    assert tex_to_mathml("\\left\\lVert x \\right\\rVert^2", "inline") is not None       # \left...\right untouched


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_equation_of_the_notebooks_is_exported_as_mathml(path):
    """So the exported pages need no MathJax: no TeX is left in a markdown cell."""
    notebook = nbformat.read(path, as_version=4)
    text = markdown_html(html_exporter().from_notebook_node(notebook)[0])
    sources = "".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "$" not in text and "\\(" not in text and "\\begin{" not in text
    # letter styles as Unicode letters (ℝ, ℒ), not mathvariant attributes that Chromium ignores
    assert not re.search(r'mathvariant="(double-struck|script|fraktur|bold)"', text)
    assert text.count("<math ") >= sources.count("$$") // 2 + 1


def test_a_parameter_the_notebook_does_not_have_is_refused_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export-notebook", "notebooks/03_cifar.ipynb", "--out", str(tmp_path), "-p", "backbon", "resnet29"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "03_cifar.ipynb has no parameter(s) ['backbon']" in err and "backbone" in err
    assert not list(tmp_path.iterdir())                                # nothing was run or written
    (tmp_path / "folder").mkdir()
    (tmp_path / "plain").write_text("")
    for path, what in (("missing.ipynb", "does not exist"), ("folder", "is a folder"), ("plain", "is not an .ipynb file")):
        with pytest.raises(SystemExit):
            main(["export-notebook", str(tmp_path / path), "--out", str(tmp_path / "out")])
        assert f"notebook {str(tmp_path / path)!r} {what}; expected a path to an .ipynb file" in capsys.readouterr().err


@pytest.mark.slow
def test_papermill_run_of_notebook_03_with_parameters_exports_a_standalone_page(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NSLVIZ_RUNS", str(tmp_path / "runs"))
    code = main(["export-notebook", "notebooks/03_cifar.ipynb", "--out", str(tmp_path / "out"), "-p", "backbone",
                 "resnet29", "-p", "method", "mn", "-p", "compare_with", "vanilla", "-p", "epochs", "1",
                 "-p", "head_steps", "50", "-p", "quick", "True", "--json"])
    paths = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    cells = json.loads(open(paths["notebook"]).read())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    assert 'backbone = "resnet29"' in "".join(injected["source"]) and "quick = True" in "".join(injected["source"])
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    # quick mode ran the comparison on digits (resnet29 -> convnet4), one epoch per method asked for
    group = tmp_path / "runs" / "digits-convnet4-compare-seed0"
    summaries = {p.parent.name: json.loads(p.read_text()) for p in group.glob("*/summary.json")}
    assert set(summaries) == {"vanilla", "mn"} and {s["epochs"] for s in summaries.values()} == {1}
    # every plotly figure is in the page, with plotly.js itself inline (no CDN, no kernel needed)
    html = open(paths["html"], encoding="utf-8").read()
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not widgets and "0%|" not in html                             # no stale progress bars saved
    figures = sum("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    assert figures >= 2 and html.count("Plotly.newPlot(") >= figures
    assert "* plotly.js v" in html and 'src="https://cdn.plot.ly' not in html
    assert "<math " in markdown_html(html) and "$" not in markdown_html(html)


@pytest.mark.slow
def test_notebook_05_on_fine_labels_draws_the_map_and_retrieval_and_says_why_there_are_no_sub_categories(
        tmp_path, monkeypatch, capsys):
    """MN Fig. 5 is on sets without sub-categories (MNIST, CIFAR-10): a run on the fine labels goes
    through the map and the entries' retrieval; the sub-category cells show nothing and a note says why."""
    monkeypatch.setenv("NSLVIZ_RUNS", str(tmp_path / "runs"))
    code = main(["export-notebook", "notebooks/05_learned_neighbors.ipynb", "--out", str(tmp_path / "out"),
                 "-p", "label_kind", "fine", "-p", "epochs", "1", "-p", "map_points", "100", "-p", "quick", "True",
                 "--json"])
    paths = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    cells = [c for c in json.loads(open(paths["notebook"]).read())["cells"] if c["cell_type"] == "code"]
    outputs = [o for c in cells for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert "trained on label_kind='fine': no sub-category discovery" in text and "10 fine classes" in text
    figures = [c for c in cells if any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in c["outputs"])]
    sources = ["".join(c["source"]) for c in figures]
    assert any("neighbor_scatter" in s for s in sources) and any("entry_retrieval_grid" in s for s in sources)
    assert not any("subcategory" in s for s in sources)


def test_exported_page_loads_nothing_from_the_network_and_draws_display_sums_large():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$$\\sum_{j=1}^{S} \\omega_j$$ and $\\sum_j x$")])
    page = html_exporter().from_notebook_node(notebook)[0]
    assert not re.findall(r"<script[^>]*src=[\"']?(?:https?:)?//", page)          # no CDN script at all
    assert "require.min.js" not in page and "mathjax" not in page.lower()
    text = markdown_html(page)
    # display style: Σ large with its limits under and over it; inline: limits beside it
    assert re.search(r'<munderover><mo largeop="true" movablelimits="false">(∑|&#x02211;)</mo>', text)
    assert re.search(r"<msub><mo>(∑|&#x02211;)</mo>", text)
    assert re.search(r"math \{ font-family: [^}]*Math", page)               # a font with a MATH table first


def test_offline_outputs_keep_the_kernel_note_one_plotly_js_and_no_cdn_script():
    from nslviz.cli.export_notebook import offline_outputs

    widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0}}
    plotly_js = "<script>/**\n* plotly.js v4.1.1\n*/ var Plotly = 1;</script>"
    figure_html = '<div><script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script>' \
                  '<div id="a" class="plotly-graph-div"></div><script>Plotly.newPlot("a", [])</script></div>'
    display = nbformat.v4.new_output
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("fig", outputs=[display("display_data", data={"text/html": plotly_js}),
                                                  display("display_data", data={"text/html": figure_html})]),
        nbformat.v4.new_code_cell("for _ in tqdm(...)", outputs=[display("display_data", data={**widget, "text/plain": "  0%|"})]),
        nbformat.v4.new_code_cell("explorer", outputs=[
            display("display_data", data={"text/html": plotly_js}),          # a second copy of plotly.js
            display("display_data", data={**widget, "text/plain": "VBox(...)", "text/html": "<p>needs a running kernel</p>"})]),
    ], metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}})
    cells = offline_outputs(notebook).cells
    assert "widgets" not in notebook.metadata                              # no widget manager from a CDN
    assert [o["data"]["text/html"] for o in cells[0].outputs][0] == plotly_js
    assert "https://" not in cells[0].outputs[1]["data"]["text/html"] and "Plotly.newPlot" in cells[0].outputs[1]["data"]["text/html"]
    assert cells[1].outputs == []                                          # a stale progress bar
    assert [dict(o["data"]) for o in cells[2].outputs] == [{"text/html": "<p>needs a running kernel</p>"}]


def test_cell_timeout_is_checked_and_the_cli_takes_it(tmp_path, capsys):
    from nslviz.cli.export_notebook import export_notebook

    with pytest.raises(ValueError, match="cell_timeout must be >= 1"):
        export_notebook("notebooks/01_spiral_toy.ipynb", tmp_path, cell_timeout=0)
    with pytest.raises(SystemExit) as exit_info:
        main(["export-notebook", "notebooks/01_spiral_toy.ipynb", "--out", str(tmp_path), "--cell-timeout", "0"])
    assert exit_info.value.code == 2 and "--cell-timeout: expected a positive integer, got '0'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_cell_past_the_timeout_names_the_rerun(tmp_path):
    from nslviz.cli.export_notebook import export_notebook

    notebook = tmp_path / "slow.ipynb"
    cells = [nbformat.v4.new_code_cell("seconds = 30", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("import time\ntime.sleep(seconds)")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), notebook)
    with pytest.raises(TimeoutError) as error:
        export_notebook(notebook, tmp_path / "out", {"seconds": 30}, cell_timeout=2)
    message = str(error.value)
    assert "ran longer than --cell-timeout 2 s" in message and "no HTML was written" in message
    assert f"python -m nslviz export-notebook {notebook} --out {tmp_path / 'out'} --cell-timeout 4 -p seconds 30" in message
    assert not (tmp_path / "out" / "slow.html").exists()


def test_site_refuses_a_bad_out_folder_or_browser_before_running_any_notebook(tmp_path, capsys, monkeypatch):
    import nslviz.cli.site as site

    def never(*args, **kwargs):
        raise AssertionError("a notebook ran before the site's settings were checked")
    monkeypatch.setattr(site, "export_notebook", never)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, message in (("", "got an empty one"), (str(a_file), "is a file, not a folder")):
        with pytest.raises(SystemExit) as exit_info:
            main(["site", "--out", out, "--only", "08_nsl_implicit_regularization"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    monkeypatch.setenv("NSLVIZ_CHROMIUM", str(tmp_path / "no-such-chromium"))
    with pytest.raises(ValueError, match="NSLVIZ_CHROMIUM=.*is not an executable file"):
        site.build_site(tmp_path / "site", [site.NOTEBOOKS / "08_nsl_implicit_regularization.ipynb"])
    monkeypatch.chdir(tmp_path)                                           # outside the repository: say so
    with pytest.raises(ValueError, match=f"does not exist in the current folder {str(tmp_path)!r}; .*from the "
                                         "repository's root"):
        site.build_site(tmp_path / "site", [site.notebook_path("01_spiral_toy")])


def test_a_dead_kernel_and_a_site_timeout_name_what_to_do(tmp_path, monkeypatch):
    from nslviz.cli.export_notebook import NotebookFailed, export_notebook
    import nslviz.cli.site as site

    notebook = tmp_path / "dies.ipynb"
    cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("import os\nos._exit(1)")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), notebook)
    with pytest.raises(NotebookFailed, match="the kernel running dies.ipynb died .*out of memory.*as far as it ran"):
        export_notebook(notebook, tmp_path / "out")

    def slow(path, *args, **kwargs):
        raise TimeoutError("cell timeout")
    monkeypatch.setattr(site, "export_notebook", slow)
    pages = [site.NOTEBOOKS / f"{name}.ipynb" for name in ("01_spiral_toy", "08_nsl_implicit_regularization")]
    with pytest.raises(TimeoutError, match=r"rerun `python -m nslviz site --out .* --only 01_spiral_toy "
                                           r"08_nsl_implicit_regularization --cell-timeout 20`"):
        site.build_site(tmp_path / "site", pages, cell_timeout=10)


@pytest.mark.slow
def test_make_demo_prints_notebook_01s_accuracies_and_the_kernel_keeps_its_start_up_notes_to_itself(tmp_path):
    """`make demo`'s command, in quick mode: notebook 01 exported, then the table holding its accuracies
    printed (`--show`); a text no output holds is an error that names the executed notebook. The
    executing kernel's own log (a transport warning, an interrupt caught, which alarm a reader) stays
    quiet. In a process of its own, so that no other test's kernel writes into the stderr read here."""
    import subprocess
    import sys

    from nslviz.cli.export_notebook import output_text

    recipe = re.search(r"^demo: setup\n\t(.*)\n", Path("Makefile").read_text(), re.M).group(1)
    assert recipe.startswith("NSLVIZ_QUICK=0 $(PY) -m nslviz export-notebook notebooks/01_spiral_toy.ipynb --out ")
    show = recipe.split("--show ")[1]
    done = subprocess.run([sys.executable, "-m", "nslviz", "export-notebook", "notebooks/01_spiral_toy.ipynb",
                           "--out", str(tmp_path / "out"), "--show", show],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NSLVIZ_QUICK": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "IPKernelApp" not in done.stderr and "without encryption" not in done.stderr, done.stderr
    table = done.stdout.split("standalone HTML:")[1].split("\n", 1)[1]
    rows = dict(line.split() for line in table.splitlines()[2:])           # quantity  value
    assert float(rows["mn_test_acc"]) > float(rows["linear_test_acc"]) and "linear_train_acc" in rows
    executed = tmp_path / "out" / "01_spiral_toy.ipynb"
    assert output_text(executed, "linear_test_acc") == table.rstrip("\n")
    with pytest.raises(ValueError, match=f"no output of 01_spiral_toy.ipynb contains 'no such text'; the executed "
                                         f"notebook is '{executed.resolve()}'"):
        output_text(executed, "no such text")


@pytest.mark.parametrize("text", ['{"cells": 5}', "{}", "[1]", "not json"])
def test_a_file_that_is_not_a_notebook_is_named_before_any_kernel_starts(tmp_path, text):
    from nslviz.cli.export_notebook import export_notebook

    notebook = tmp_path / "bad.ipynb"
    notebook.write_text(text)
    with pytest.raises(ValueError, match=f"notebook {str(notebook)!r} is not a readable Jupyter notebook .*expected an "
                                         f".ipynb file as JupyterLab writes it"):
        export_notebook(notebook, tmp_path / "out")
    assert not (tmp_path / "out").exists()
