"""python -m nslviz regress / knn-toy: a one-line summary, and one JSON object as the last line."""
import dataclasses
import json
from pathlib import Path

import pytest

from nslviz.__main__ import main
from nslviz.experiments import knn


def test_regress_prints_a_summary_and_json(capsys, tmp_path):
    code = main(["regress", "--dataset", "diabetes", "--folds", "2", "--neighbors", "5", "15", "--layers", "2",
                 "--widths", "16", "--temperature", "0.3", "--max-epochs", "8", "--run-dir", str(tmp_path / "run"),
                 "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert lines[0].startswith("regress diabetes (n=442, d=10, 2 folds") and "MN vs MLP p=" in lines[0]
    summary = json.loads(lines[-1])
    for key in ("knn_mse", "mlp_mse", "mn_mse", "folds", "seconds", "mn_vs_mlp_pvalue"):
        assert key in summary
    assert summary["mn_minus_mlp_mse"] == pytest.approx(summary["mn_mse"] - summary["mlp_mse"])   # the sign
    assert summary["folds"] == 2 and all(row["k"] in (5, 15) for row in summary["chosen"])
    stored = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert stored["mn_mse"] == pytest.approx(summary["mn_mse"])
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_quick_mode_is_the_notebooks_and_keeps_the_users_grid(capsys, monkeypatch):
    import nslviz.experiments.regression_table as regression_table
    from nslviz.experiments.regression_table import RegressionCVConfig, quick_config
    quick = quick_config(RegressionCVConfig(layers=(4, 5, 3), widths=(8, 16, 32), temperatures=(0.5, 1.0, 2.0)))
    assert (quick.layers, quick.widths, quick.temperatures, quick.max_rows) == ((4, 5), (8, 16), (0.5, 1.0), 2000)
    assert quick_config(RegressionCVConfig(max_rows=300)).max_rows == 300
    seen = []

    def record(config):
        seen.append(config)
        raise SystemExit(0)
    monkeypatch.setattr(regression_table, "cross_validate_regression", record)
    with pytest.raises(SystemExit):
        main(["regress", "--quick", "--layers", "4", "5", "3", "--widths", "8", "16", "32"])
    assert seen[0] == quick_config(dataclasses.replace(seen[0], layers=(4, 5, 3), widths=(8, 16, 32),
                                                       temperatures=RegressionCVConfig().temperatures, max_rows=None))
    import nbformat                                  # notebook 06's quick mode calls the same function
    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "06_regression_uci.ipynb"
    source = "".join(c.source for c in nbformat.read(notebook, 4).cells if c.cell_type == "code")
    assert "config = quick_config(config)" in source


def test_regress_checks_its_run_dir_before_the_cross_validation(capsys, tmp_path, monkeypatch):
    import nslviz.experiments.regression_table as regression_table

    def never(*args, **kwargs):
        raise AssertionError("the cross-validation ran although its results could not be written")
    monkeypatch.setattr(regression_table, "cross_validate_regression", never)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main(["regress", "--run-dir", str(tmp_path / "a-file" / "run")])
    assert exit_info.value.code == 2 and "cannot be made" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "summary.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["regress", "--run-dir", str(tmp_path / "used")])
    assert "already holds a finished run" in capsys.readouterr().err


def test_regress_rejects_bad_values_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["regress", "--folds", "1"])
    assert exit_info.value.code == 2 and "folds must be >= 2, got 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["regress", "--dataset", "boston"])
    assert "invalid choice: 'boston'" in capsys.readouterr().err


def test_knn_toy_command(capsys, monkeypatch):
    tiny = knn.KnnToyConfig(points=40, test_points=50, grid=20, neighbors=(1, 5), temperatures=(0.3,),
                            entries=6, width=8, max_epochs=3, patience=2)
    monkeypatch.setattr(knn.KnnToyConfig, "quick", lambda self: tiny)
    assert main(["knn-toy", "--quick", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("knn-toy: test MSE kNN best k=")
    assert set(json.loads(lines[-1])["knn_mse"]) == {"1", "5"}
    assert "| one step from the prior (k=1) best α=" in lines[0]
    assert set(json.loads(lines[-1])["from_prior_mse"]) == {"0.0", "0.1", "0.2", "0.3", "0.4", "0.45", "0.5"}


def test_an_unknown_option_is_named_by_the_command_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["heads", "--bogus"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage: python -m nslviz heads" in err
    assert "python -m nslviz heads: error: unrecognized arguments: --bogus" in err


@pytest.mark.parametrize("before", [["--json"], ["--seed", "3"]])
def test_an_option_before_the_command_is_said_to_go_after_it(capsys, before):
    with pytest.raises(SystemExit) as exit_info:
        main([*before, "spiral"])
    err = capsys.readouterr().err
    given = " ".join(before)
    assert exit_info.value.code == 2 and (f"python -m nslviz spiral: error: {given} comes before the command; options "
                                          f"go after it: python -m nslviz spiral {given} ...") in err
