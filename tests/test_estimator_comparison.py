"""The scikit-learn estimators against scikit-learn's MLPs and kNN (nslviz.experiments.estimators), the
figures of notebook 11 (nslviz.viz.estimators) and `python -m nslviz estimators`."""
import dataclasses
import json
import statistics

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from nslviz.estimators import MetaNeighborsClassifier, MetaNeighborsRegressor
import nslviz.experiments.estimators as comparison
from nslviz.analysis.paired import format_paired, paired_difference
from nslviz.experiments.estimators import (HELD_OUT_TABLES, METHOD_LABELS, METHODS, TABLES, EstimatorComparisonConfig,
                                           compare_estimators, compare_on_table, cv_folds, load_table, make_estimator,
                                           compare_draws, pool_draws, summarise, tables_at_the_top)
from nslviz.viz import estimators as estimators_viz

from cli import run_in_process

TINY = dict(tables=("iris", "diabetes"), methods=METHODS, folds=2, max_rows=60, mn_params={"max_epochs": 3})
BASELINES = [m for m in METHODS if m != "mn"]


@pytest.fixture(scope="module")
def tiny():
    return compare_estimators(**TINY)


def test_every_method_is_scored_on_the_same_folds_and_mn_is_set_against_the_best(tiny):
    assert list(tiny.tables) == ["iris", "diabetes"]
    for name, metric in (("iris", "accuracy"), ("diabetes", "r2")):
        table = tiny.tables[name]
        assert table["metric"] == metric and table["rows"] == 60 and set(table["methods"]) == set(METHODS)
        methods = table["methods"]
        assert all(len(m["scores"]) == len(m["fit_seconds"]) == 2 for m in methods.values())
        best = max(BASELINES, key=lambda m: methods[m]["mean"])
        assert table["best_baseline"] == best
        assert table["mn_at_least_best"] == (methods["mn"]["mean"] >= methods[best]["mean"])
        for baseline in BASELINES:                  # paired over the folds, in points
            expected = 100 * statistics.mean(np.subtract(methods["mn"]["scores"], methods[baseline]["scores"]))
            assert table["mn_vs"][baseline]["mean_difference_points"] == pytest.approx(expected, abs=2e-3)
        assert table["mn_fit_time_ratio_to_mlp"] == pytest.approx(
            methods["mn"]["median_fit_seconds"] / methods["mlp"]["median_fit_seconds"], rel=1e-2)
    summary = tiny.summary()
    assert summary["tables_compared"] == 2 and summary["folds"] == 2 and summary["max_rows"] == 60
    assert summary["methods"] == list(METHODS)
    assert summary["mn_at_least_best_baseline"] == sum(t["mn_at_least_best"] for t in tiny.tables.values())


def test_the_same_seed_gives_the_same_scores(tiny):
    again = compare_estimators(**{**TINY, "tables": ("iris",)})
    assert {m: v["scores"] for m, v in again.tables["iris"]["methods"].items()} == \
        {m: v["scores"] for m, v in tiny.tables["iris"]["methods"].items()}


def test_the_folds_are_those_of_the_seed():
    task, x, y = load_table("iris", max_rows=60)
    by_seed = {}
    for seed in (0, 1):
        expected = [make_estimator("knn5", task, index).fit(x[train], y[train]).score(x[test], y[test])
                    for index, (train, test) in enumerate(cv_folds(task, x, y, 3, seed))]
        by_seed[seed] = compare_on_table("iris", ["knn5"], folds=3, seed=seed, max_rows=60)["methods"]["knn5"]["scores"]
        assert by_seed[seed] == [round(score, 5) for score in expected]
    assert by_seed[0] != by_seed[1]


def test_a_tie_with_the_best_baseline_counts_as_at_least_as_good(monkeypatch):
    monkeypatch.setattr(comparison, "fit_and_score", lambda *args: (0.5, 0.01))
    table = compare_on_table("iris", ["mn", "mlp", "knn5"], folds=2, max_rows=40)
    assert table["mn_at_least_best"] is True and table["mn_vs"]["mlp"]["level"] == 2


def _draw(seed, mn, best, other=(0.5, 0.5), ratio=2.0):
    """A comparison result of one draw: two tables, MN's fold scores against two baselines'."""
    def row(scores):
        mine, theirs, third = scores
        best, best_scores = max((("mlp", theirs), ("knn5", third)), key=lambda pair: statistics.mean(pair[1]))
        return {"metric": "accuracy", "methods": {m: {"scores": s, "mean": statistics.mean(s)} for m, s in
                                                  (("mn", mine), ("mlp", theirs), ("knn5", third))},
                "best_baseline": best, "mn_vs": {best: {"mean_difference_points": 100 * statistics.mean(
                    np.subtract(mine, best_scores))}},
                "mn_at_least_best": statistics.mean(mine) >= statistics.mean(best_scores),
                "mn_fit_time_ratio_to_mlp": ratio}
    return {"seed": seed, "folds": 2, "mn_params": None,
            "tables": {"a": row((mn, best, other)), "b": row(((0.9, 0.9), (0.1, 0.1), (0.2, 0.2)))}}


def test_pooling_draws_averages_every_test_fold_and_counts_the_draws():
    # table a: MN wins draw 0 by 10 points and loses draw 1 by 30: pooled it is behind mlp by 10 points
    draws = [_draw(0, (0.8, 0.8), (0.7, 0.7)), _draw(1, (0.4, 0.4), (0.7, 0.7), ratio=4.5)]
    pooled = pool_draws(draws)
    a = pooled["tables"]["a"]
    assert a["means"] == {"mn": 0.6, "mlp": 0.7, "knn5": 0.5} and a["best_baseline"] == "mlp"
    assert a["mn_minus_best_points"] == pytest.approx(-10.0) and a["mn_at_least_best"] is False
    assert a["draws_mn_at_least_best"] == 1 and a["fit_time_ratio_to_mlp_max"] == 4.5
    assert a["mn_minus_best_points_per_draw"] == pytest.approx([10.0, -30.0])
    # fold by fold against the pooled best, with the interval for folds that share rows (2 folds: ρ = 1)
    assert a["mn_vs_best"] == paired_difference([0.8, 0.8, 0.4, 0.4], [0.7] * 4, test_train_ratio=1.0)
    assert (a["mn_vs_best"]["above"], a["mn_vs_best"]["below"]) == (2, 2)
    assert a["mn_vs_best"]["mean_difference_points"] == pytest.approx(a["mn_minus_best_points"])
    assert pooled["tables"]["b"]["mn_at_least_best"] is True and pooled["tables"]["b"]["best_baseline"] == "knn5"
    summary = pooled["summary"]
    assert summary["mn_at_least_best_per_draw"] == [2, 1] and summary["draws_meeting_goal"] == 1
    assert summary["tables_mn_at_least_best_pooled"] == 1 and summary["tables_lost_pooled"] == ["a"]
    assert summary["accuracy_goal_met_pooled"] is False and summary["test_folds"] == 4
    # the same rule for every method: on table a the top is MN in draw 0, mlp in draw 1 and pooled
    assert summary["tables_at_the_top_per_draw"] == {"mn": [2, 1], "mlp": [0, 1], "knn5": [0, 0]}
    assert summary["tables_at_the_top_pooled"] == {"mn": 1, "mlp": 1, "knn5": 0}
    # a tie pooled counts as at least as good
    tie = pool_draws([_draw(0, (0.7, 0.7), (0.7, 0.7)), _draw(1, (0.7, 0.7), (0.7, 0.7))])
    assert tie["tables"]["a"]["mn_at_least_best"] is True and tie["summary"]["accuracy_goal_met_pooled"] is True


def test_the_goals_rule_applied_to_every_method():
    means = [{"mn": 0.9, "mlp": 0.8, "knn5": 0.7},
             {"mn": 0.5, "mlp": 0.6, "knn5": 0.6},          # a tie at the top counts for both
             {"mn": 0.3, "mlp": 0.1, "knn5": 0.2}]
    assert tables_at_the_top(means) == {"mn": 2, "mlp": 1, "knn5": 1}
    assert tables_at_the_top([]) == {}
    # in a comparison, MN's count is the goal's count
    tables = {name: {"methods": {m: {"mean": v} for m, v in row.items()},
                     "mn_at_least_best": row["mn"] >= max(v for m, v in row.items() if m != "mn")}
              for name, row in zip("abc", means)}
    summary = summarise(tables)
    assert summary["tables_at_the_top"]["mn"] == summary["mn_at_least_best_baseline"] == 2
    assert summary["accuracy_goal_met"] is False                               # 2 of 3: below three quarters
    four = {**tables, "d": tables["a"]}                                        # 3 of 4: exactly three quarters
    assert summarise(four)["accuracy_goal_met"] is True


def test_each_fold_fits_the_methods_in_another_order(monkeypatch):
    """Fit times are compared as ratios: no method always runs first (a cold cache) or last."""
    order = []

    def fit_and_score(estimator, *data):
        order.append(estimator)
        return 1.0, 0.01

    monkeypatch.setattr(comparison, "fit_and_score", fit_and_score)
    monkeypatch.setattr(comparison, "make_estimator", lambda method, *args, **kwargs: method)
    comparison.compare_on_table("iris", methods=("mn", "mlp", "knn5"), folds=3)
    assert order == ["mn", "mlp", "knn5", "mlp", "knn5", "mn", "knn5", "mn", "mlp"]


@pytest.mark.parametrize("draws, match", [
    ([_draw(0, (1, 1), (0, 0))], "at least 2 draws"),
    ([_draw(0, (1, 1), (0, 0)), _draw(0, (1, 1), (0, 0))], "its own seed"),
    ([_draw(0, (1, 1), (0, 0)), {**_draw(1, (1, 1), (0, 0)), "mn_params": {"width": 8}}], "parameters of the first"),
    ([_draw(0, (1, 1), (0, 0)), {**_draw(1, (1, 1), (0, 0)), "folds": 3}], "expected 2 folds"),
])
def test_pooling_refuses_draws_that_are_not_the_same_comparison(draws, match):
    with pytest.raises(ValueError, match=match):
        pool_draws(draws)


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
    ({"max_rows": 5}, r"max_rows must be at least 2 x folds = 10 \(two rows a fold\), got 5"),
    ({"tables": "iris,mnist"}, r"unknown tables \['mnist'\]"),
    ({"seed": -1}, "seed"),
    ({"mn_params": "width=8"}, "mn_params: expected a dict"),
])
def test_bad_settings_name_the_value_and_what_was_expected(overrides, match):
    with pytest.raises(ValueError, match=match):
        EstimatorComparisonConfig(**overrides)


def test_text_names_and_folds_a_table_cannot_fill():
    assert EstimatorComparisonConfig(tables="iris, wine").tables == ("iris", "wine")     # as papermill passes it
    with pytest.raises(ValueError, match="folds=60 is more than table 'iris' can fill: it has 50 rows in its smallest"):
        compare_estimators(tables=("diabetes", "iris"), folds=60)        # refused before diabetes runs
    with pytest.raises(ValueError, match="max_rows"):
        load_table("iris", max_rows=0)


def test_the_first_fit_of_a_process_is_made_before_any_is_timed(monkeypatch):
    calls = []
    monkeypatch.setattr(comparison, "warm_up", lambda: calls.append("warm-up"))
    monkeypatch.setattr(comparison, "compare_on_table", lambda name, *args: calls.append(name) or {"methods": {}})
    compare_estimators(tables=("iris", "wine"), folds=2)
    assert calls == ["warm-up", "iris", "wine"]
    calls.clear()
    compare_estimators(tables=("iris",), methods=("knn5",), folds=2)          # no MN, nothing to warm up
    assert calls == ["iris"]


def test_comparisons_pool_into_the_draws_figure(tiny):
    """Notebook 11's part 3: comparisons on other seeds, pooled (EstimatorComparison.record), drawn as one dot
    per draw and table (MN minus that draw's best baseline) and a diamond for every fold of every draw."""
    other = compare_estimators(**{**TINY, "seed": 1})
    assert tiny.record == {"seed": 0, "folds": 2, "mn_params": {"max_epochs": 3}, "tables": tiny.tables}
    pooled = pool_draws([tiny.record, other.record])
    assert pooled["seeds"] == [0, 1] and pooled["mn_params"] == {"max_epochs": 3}
    fig = estimators_viz.draws_figure(pooled)
    dots = [trace for trace in fig.data if trace.type == "box"]
    assert [trace.x[0].split("<br>")[0] for trace in dots] == ["iris", "diabetes"]
    for trace, name in zip(dots, ("iris", "diabetes")):
        expected = [c.tables[name]["mn_vs"][c.tables[name]["best_baseline"]]["mean_difference_points"]
                    for c in (tiny, other)]
        assert list(trace.y) == expected == pooled["tables"][name]["mn_minus_best_points_per_draw"]
        # each dot names the baseline it is measured against: its own draw's best, not the pooled one
        bests = [c.tables[name]["best_baseline"] for c in (tiny, other)]
        assert pooled["tables"][name]["best_baseline_per_draw"] == bests
        assert [list(c) for c in trace.customdata] == [[0, METHOD_LABELS[bests[0]]], [1, METHOD_LABELS[bests[1]]]]
        assert trace.x[0].endswith(f"pooled best:<br>{METHOD_LABELS[pooled['tables'][name]['best_baseline']]}")
    diamonds = [trace for trace in fig.data if trace.type == "scatter"]
    pooled_vs_best = [pooled["tables"][n]["mn_vs_best"] for n in ("iris", "diabetes")]
    assert list(diamonds[0].y) == [d["mean_difference_points"] for d in pooled_vs_best] == pytest.approx(
        [pooled["tables"][n]["mn_minus_best_points"] for n in ("iris", "diabetes")], abs=0.01)
    # the error bars reach the interval for folds that share rows
    assert np.allclose(np.add(diamonds[0].y, diamonds[0].error_y.array), [d["ci95_points"][1] for d in pooled_vs_best])
    assert np.allclose(np.subtract(diamonds[0].y, diamonds[0].error_y.arrayminus),
                       [d["ci95_points"][0] for d in pooled_vs_best])
    assert "2 shuffles" in fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    with pytest.raises(ValueError, match="needs the result of pool_draws"):
        estimators_viz.draws_figure(tiny.summary())


def test_comparison_figures_and_table(tiny):
    figure = estimators_viz.paired_differences_figure(tiny)
    assert figure.layout.title.text and figure.layout.xaxis.title.text and figure.layout.yaxis.title.text
    boxes = [t for t in figure.data if t.type == "box"]
    for box, table in zip(boxes, tiny.tables.values()):           # one dot a fold, one box a table
        methods = table["methods"]
        expected = 100 * np.subtract(methods["mn"]["scores"], methods[table["best_baseline"]]["scores"])
        assert np.allclose(box.y, expected)
    assert len(boxes) == 2
    means = next(t for t in figure.data if t.type == "scatter")
    assert list(means.y) == [tiny.tables[n]["mn_vs"][tiny.tables[n]["best_baseline"]]["mean_difference_points"]
                             for n in tiny.tables]
    times = estimators_viz.fit_times_figure(tiny)
    assert times.layout.title.text and times.layout.yaxis.type == "log"
    assert [t.name for t in times.data] == ["MN", "MLP (100,100)", "kNN 5", "kNN tuned"]   # MLP (100) is the unit
    assert times.data[0].base == 1 and times.data[0].customdata[0] == pytest.approx(
        tiny.tables["iris"]["mn_fit_time_ratio_to_mlp"], rel=1e-2)
    assert times.data[0].y[0] == pytest.approx(times.data[0].customdata[0] - 1)          # a bar from 1x to the ratio
    labels = {a.text: a for a in times.layout.annotations}               # the lines' labels, right of the bars
    assert set(labels) == {"5x: MN's goal", "1x: MLP (100)"}
    assert all(a.xref == "paper" and a.x == 1 and a.xanchor == "left" for a in labels.values())
    assert labels["1x: MLP (100)"].y == 0 and labels["5x: MN's goal"].y == pytest.approx(np.log10(5))
    table = estimators_viz.comparison_table(tiny)
    assert list(table.index) == ["iris", "diabetes"] and {"MN", "MLP (100)", "kNN 5", "MN ≥ best"} <= set(table.columns)
    for name, row in tiny.tables.items():
        best = row["best_baseline"]
        assert table.loc[name, "MN - best baseline, points [95 % CI]"] == \
            f"{format_paired(row['mn_vs'][best])} vs {comparison.METHOD_LABELS[best]}"
        assert table.loc[name, "MN ≥ best"] == ("yes" if row["mn_at_least_best"] else "no")
        mn = row["methods"]["mn"]                                          # on one line, and said what it is
        assert table.loc[name, "MN"] == f"{mn['mean']:.3f}\u00a0±\u00a0{mn['std']:.3f}"
    assert table.columns.name == "score: mean ± std over the test folds"


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
    with pytest.raises(TypeError, match="got LinearRegression"):
        from sklearn.linear_model import LinearRegression
        estimators_viz.loss_curves_figure(LinearRegression().fit(x, y))
    model = estimator(n_estimators=1, max_epochs=8, random_state=0).fit(x, y)
    figure = estimators_viz.loss_curves_figure(model)
    training, validation, kept = figure.data
    assert list(training.y) == model.loss_curve_ and list(validation.y) == model.validation_loss_curve_
    assert list(training.x) == [epoch - 0.5 for epoch in range(1, model.n_iter_ + 1)] and validation.x[0] == 0
    assert list(kept.x) == [model.best_epoch_] and kept.y[0] == model.best_validation_loss_
    assert figure.layout.title.text and figure.layout.xaxis.title.text and figure.layout.yaxis.title.text
    assert figure.layout.yaxis.range[1] >= max(model.loss_curve_ + model.validation_loss_curve_)   # no point cut off
    floors = [shape.y0 for shape in figure.layout.shapes]
    if estimator is MetaNeighborsClassifier:            # ε = 0.1, 3 classes: H(0.9333, 0.0333, 0.0333)
        assert floors == [pytest.approx(-(0.9 + 0.1 / 3) * np.log(0.9 + 0.1 / 3) - 2 * (0.1 / 3) * np.log(0.1 / 3))]
    else:
        assert floors == []


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
    top = summary["tables_at_the_top"]
    assert set(top) == {"mn", "knn5"} and top["mn"] == summary["mn_at_least_best_baseline"]
    assert lines[-2] == f"Tables on which each method's mean is at least every other's: MN: {top['mn']}, kNN 5: {top['knn5']}"


@pytest.mark.slow
def test_command_line_pools_several_draws_of_the_folds():
    process = run_in_process("estimators", "--tables", "iris,diabetes", "--methods", "mn,knn5", "--folds", "2",
                             "--max-rows", "40", "--draws", "3", "--json")
    assert process.returncode == 0, process.stderr
    lines = process.stdout.strip().splitlines()
    assert lines[0].startswith("iris (accuracy, mean of 6 test folds): MN ") and "of 3 draws" in lines[0]
    assert lines[1].startswith("diabetes (r2, mean of 6 test folds): ")
    pooled = json.loads(lines[-1])
    assert pooled["seeds"] == [0, 1, 2] and len(pooled["summary"]["mn_at_least_best_per_draw"]) == 3
    # the same numbers as the comparisons themselves, pooled
    config = EstimatorComparisonConfig(tables=("iris", "diabetes"), methods=("mn", "knn5"), folds=2, max_rows=40)
    _, expected = compare_draws(config, 3)
    assert pooled["tables"] == json.loads(json.dumps(expected["tables"]))
    per_draw = pooled["summary"]["tables_at_the_top_per_draw"]
    assert per_draw["mn"] == pooled["summary"]["mn_at_least_best_per_draw"]
    assert lines[-2] == ("Tables on which each method's mean is at least every other's, draw by draw: "
                         f"MN {per_draw['mn']}; kNN 5 {per_draw['knn5']}")


def test_compare_draws_reuses_the_first_comparison_and_checks_it(tiny):
    config = tiny.config
    comparisons, pooled = compare_draws(config, 2, first=tiny)
    assert comparisons[0] is tiny and comparisons[1].config.seed == 1 and pooled["seeds"] == [0, 1]
    with pytest.raises(ValueError, match="first: expected the comparison of"):
        compare_draws(dataclasses.replace(config, folds=3), 2, first=tiny)
    with pytest.raises(ValueError, match="draws must be >= 2, got 1"):
        compare_draws(config, 1)
    for methods in (("mn",), ("knn5", "mlp")):                      # refused before any fit, not after every draw
        with pytest.raises(ValueError, match=rf"methods must hold mn and at least one other method, got \['"):
            compare_draws(dataclasses.replace(config, methods=methods, tables=("classes10",)), 2)


@pytest.mark.parametrize("argv, message", [
    (["--tables", "mnist"], "unknown tables ['mnist']"),
    (["--methods", "mn,svm"], "unknown methods ['svm']"),
    (["--folds", "1"], "expected an integer >= 2, got '1'"),
    (["--tables", "iris", "--folds", "60"], "folds=60 is more than table 'iris' can fill"),
    (["--draws", "0"], "--draws"),
])
def test_command_line_refuses_bad_values(argv, message):
    process = run_in_process("estimators", *argv)
    assert process.returncode == 2 and message in process.stderr
