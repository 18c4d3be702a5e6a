"""The issue's papermill command and the static HTML export: `export-notebook` runs notebook 03 with
papermill parameters (`-p backbone resnet29`, as `papermill notebooks/03_cifar.ipynb out.ipynb -p
backbone resnet29` does) and writes an HTML page whose plotly figures work without a kernel or the
internet."""
import json

import pytest

from nslviz.__main__ import main
from nslviz.cli.export_notebook import parse_parameter


def test_parameter_values_are_python_literals_or_text():
    assert [parse_parameter(v) for v in ("1", "0.5", "True", "None", "[1, 2]", "resnet29", "a b")] == \
        [1, 0.5, True, None, [1, 2], "resnet29", "a b"]


def test_a_parameter_the_notebook_does_not_have_is_refused_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export-notebook", "notebooks/03_cifar.ipynb", "--out", str(tmp_path), "-p", "backbon", "resnet29"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "03_cifar.ipynb has no parameter(s) ['backbon']" in err and "backbone" in err
    assert not list(tmp_path.iterdir())                                # nothing was run or written


@pytest.mark.slow
def test_papermill_run_of_notebook_03_with_parameters_exports_a_standalone_page(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NSLVIZ_RUNS", str(tmp_path / "runs"))
    code = main(["export-notebook", "notebooks/03_cifar.ipynb", "--out", str(tmp_path / "out"), "-p", "backbone",
                 "resnet29", "-p", "epochs", "1", "-p", "quick", "True", "--json"])
    paths = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    cells = json.loads(open(paths["notebook"]).read())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    assert 'backbone = "resnet29"' in "".join(injected["source"]) and "quick = True" in "".join(injected["source"])
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    # quick mode ran the comparison on digits (resnet29 -> convnet4), one epoch per method
    group = tmp_path / "runs" / "digits-convnet4-compare-seed0"
    summaries = {p.parent.name: json.loads(p.read_text()) for p in group.glob("*/summary.json")}
    assert set(summaries) == {"vanilla", "mn", "mn_ifilm"} and {s["epochs"] for s in summaries.values()} == {1}
    # every plotly figure is in the page, with plotly.js itself inline (no CDN, no kernel needed)
    html = open(paths["html"], encoding="utf-8").read()
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not widgets and "0%|" not in html                             # no stale progress bars saved
    figures = sum("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    assert figures >= 2 and html.count("Plotly.newPlot(") >= figures
    assert "* plotly.js v" in html and 'src="https://cdn.plot.ly' not in html
