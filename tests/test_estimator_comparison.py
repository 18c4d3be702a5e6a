"""The scikit-learn estimators against scikit-learn's MLPs and kNN (nslviz.experiments.estimators), the
figures of notebook 11 (nslviz.viz.estimators) and `python -m nslviz estimators`."""
import json
import statistics

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from nslviz.estimators import MetaNeighborsClassifier, MetaNeighborsRegressor
from nslviz.experiments.estimators import (HELD_OUT_TABLES, TABLES, EstimatorComparisonConfig, compare_estimators,
                                           cv_folds, load_table)
from nslviz.viz import estimators as estimators_viz

from cli import run_in_process

TINY = dict(tables=("iris", "diabetes"), methods=("mn", "mlp", "knn5"), folds=2, max_rows=60,
            mn_params={"max_epochs": 3})


@pytest.fixture(scope="module")
def tiny():
    return compare_estimators(**TINY)


def test_every_method_is_scored_on_the_same_folds_and_mn_is_set_against_the_best(tiny):
    assert list(tiny.tables) == ["iris", "diabetes"]
    for name, metric in (("iris", "accuracy"), ("diabetes", "r2")):
        table = tiny.tables[name]
        assert table["metric"] == metric and table["rows"] == 60 and set(table["methods"]) == {"mn", "mlp", "knn5"}
        methods = table["methods"]
        assert all(len(m["scores"]) == len(m["fit_seconds"]) == 2 for m in methods.values())
        best = max(("mlp", "knn5"), key=lambda m: methods[m]["mean"])
        assert table["best_baseline"] == best
        assert table["mn_at_least_best"] == (methods["mn"]["mean"] >= methods[best]["mean"])
        for baseline in ("mlp", "knn5"):            # paired over the folds, in points
            expected = 100 * statistics.mean(np.subtract(methods["mn"]["scores"], methods[baseline]["scores"]))
            assert table["mn_vs"][baseline]["mean_difference_points"] == pytest.approx(expected, abs=2e-3)
        assert table["mn_fit_time_ratio_to_mlp"] == pytest.approx(
            methods["mn"]["median_fit_seconds"] / methods["mlp"]["median_fit_seconds"], rel=1e-2)
    summary = tiny.summary()
    assert summary["tables_compared"] == 2 and summary["folds"] == 2
    assert summary["mn_at_least_best_baseline"] == sum(t["mn_at_least_best"] for t in tiny.tables.values())


def test_the_same_seed_gives_the_same_scores(tiny):
    again = compare_estimators(**{**TINY, "tables": ("iris",)})
    assert {m: v["scores"] for m, v in again.tables["iris"]["methods"].items()} == \
        {m: v["scores"] for m, v in tiny.tables["iris"]["methods"].items()}


def test_tables_subsets_and_folds():
    assert not set(TABLES) & set(HELD_OUT_TABLES) and len(TABLES) == 8
    task, x, y = load_table("wine")
    assert task == "classification" and x.shape == (178, 13) and x.dtype == np.float64
    _, x60, y60 = load_table("wine", max_rows=60)
    assert x60.shape == (60, 13) and np.array_equal(x60, load_table("wine", max_rows=60)[1])   # seeded
    draws = {seed: [tuple(test) for _, test in cv_folds(task, x, y, 5, seed)] for seed in (0, 1)}
    assert draws[0] != draws[1]
    assert all(sorted(np.concatenate(d).tolist()) == list(range(len(x))) for d in draws.values())


@pytest.mark.parametrize("overrides, match", [
    ({"tables": ("mnist",)}, r"unknown tables \['mnist'\]; expected one or more of iris"),
    ({"tables": ()}, "tables: expected one or more of"),
    ({"methods": ("mn", "svm")}, r"unknown methods \['svm'\]"),
    ({"tables": ("iris", "iris")}, r"\['iris'\] given more than once"),
    ({"folds": 1}, "folds"),
    ({"max_rows": 5}, "max_rows"),
    ({"seed": -1}, "seed"),
    ({"mn_params": "width=8"}, "mn_params: expected a dict"),
])
def test_bad_settings_name_the_value_and_what_was_expected(overrides, match):
    with pytest.raises(ValueError, match=match):
        EstimatorComparisonConfig(**overrides)


def test_comparison_figures_and_table(tiny):
    figure = estimators_viz.paired_differences_figure(tiny)
    assert figure.layout.title.text and figure.layout.xaxis.title.text and figure.layout.yaxis.title.text
    boxes = [t for t in figure.data if t.type == "box"]
    assert [len(b.y) for b in boxes] == [2, 2]                    # one dot a fold, one box a table
    means = next(t for t in figure.data if t.type == "scatter")
    assert list(means.y) == [tiny.tables[n]["mn_vs"][tiny.tables[n]["best_baseline"]]["mean_difference_points"]
                             for n in tiny.tables]
    times = estimators_viz.fit_times_figure(tiny)
    assert times.layout.title.text and times.layout.yaxis.type == "log"
    assert [t.name for t in times.data] == ["MN", "kNN 5"]       # the default MLP is the unit
    assert times.data[0].y[0] == pytest.approx(tiny.tables["iris"]["mn_fit_time_ratio_to_mlp"], rel=1e-2)
    table = estimators_viz.comparison_table(tiny)
    assert list(table.index) == ["iris", "diabetes"] and {"MN", "MLP (100)", "kNN 5", "MN ≥ best"} <= set(table.columns)


def test_comparison_figures_say_what_they_need():
    without_mlp = compare_estimators(tables=("iris",), methods=("mn", "knn5"), folds=2, max_rows=40,
                                     mn_params={"max_epochs": 1})
    with pytest.raises(ValueError, match="with 'mlp' among its methods"):
        estimators_viz.fit_times_figure(without_mlp)
    alone = compare_estimators(tables=("iris",), methods=("mn",), folds=2, max_rows=40, mn_params={"max_epochs": 1})
    with pytest.raises(ValueError, match="'mn' and at least one baseline"):
        estimators_viz.paired_differences_figure(alone)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")          # 8 epochs: stopped short
@pytest.mark.parametrize("estimator", [MetaNeighborsClassifier, MetaNeighborsRegressor])
def test_loss_curves_figure_marks_the_epoch_kept(estimator):
    _, x, y = load_table("iris" if estimator is MetaNeighborsClassifier else "diabetes", max_rows=80)
    with pytest.raises(NotFittedError):
        estimators_viz.loss_curves_figure(estimator())
    model = estimator(n_estimators=1, max_epochs=8, random_state=0).fit(x, y)
    figure = estimators_viz.loss_curves_figure(model)
    training, validation, kept = figure.data
    assert list(training.y) == model.loss_curve_ and list(validation.y) == model.validation_loss_curve_
    assert list(training.x) == list(range(1, model.n_iter_ + 1)) and validation.x[0] == 0
    assert list(kept.x) == [model.best_epoch_] and kept.y[0] == model.best_validation_loss_
    assert figure.layout.title.text and figure.layout.xaxis.title.text and figure.layout.yaxis.title.text


def test_command_line_prints_every_table_and_ends_with_json():
    process = run_in_process("estimators", "--tables", "iris,diabetes", "--methods", "mn,knn5", "--folds", "2",
                             "--max-rows", "40", "--json")
    assert process.returncode == 0, process.stderr
    lines = process.stdout.strip().splitlines()
    assert lines[0].startswith("iris (accuracy): MN ") and "| MN - kNN 5: " in lines[0]
    assert lines[1].startswith("diabetes (r2): ")
    summary = json.loads(lines[-1])
    assert summary["tables"] == ["iris", "diabetes"] and summary["tables_compared"] == 2
    assert set(summary["per_table"]["iris"]["methods"]) == {"mn", "knn5"}


@pytest.mark.parametrize("argv, message", [
    (["--tables", "mnist"], "unknown tables ['mnist']"),
    (["--methods", "mn,svm"], "unknown methods ['svm']"),
    (["--folds", "1"], "expected an integer >= 2, got '1'"),
])
def test_command_line_refuses_bad_values(argv, message):
    process = run_in_process("estimators", *argv)
    assert process.returncode == 2 and message in process.stderr
