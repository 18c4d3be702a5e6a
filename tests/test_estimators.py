"""The scikit-learn estimators: the full check_estimator suite, sklearn tooling, and input errors."""
import os

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from nslviz._threads import torch_threads
from nslviz.estimators import MetaNeighborsClassifier, MetaNeighborsRegressor
from nslviz.feature_space import MetaNeighborhoodsFeatureMLP
from nslviz.regression import MetaNeighborhoodsMLP

# No check is skipped or expected to fail: `expected_failed_checks` stays empty, and
# xfail_strict=True makes an unexpected pass of an expected failure an error too.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


pytestmark = [pytest.mark.usefixtures("one_thread"),   # tiny tensors: see tests/conftest.py
              # the short fits here stop at max_epochs on purpose (the warning itself: its own test)
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


def test_a_fit_cut_by_max_epochs_says_so_and_a_converged_one_does_not():
    """scikit-learn's own convention (MLPClassifier): a ConvergenceWarning when training ends at max_epochs
    before early stopping ended it, naming the limit and, for an ensemble, how many members it cut."""
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    X, y = make_blobs(n_samples=120, centers=3, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"MetaNeighborsClassifier: max_epochs=2 reached before the "
                                                r"validation loss stopped improving \(3 of 3 members\)"):
        MetaNeighborsClassifier(max_epochs=2, n_estimators=3, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"max_epochs=2 reached .*improving; raise max_epochs"):
        MetaNeighborsRegressor(max_epochs=2, n_estimators=1, random_state=0).fit(X, y.astype(float))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = MetaNeighborsClassifier(n_estimators=1, random_state=0).fit(X, y)
    assert model.fit_results_[0].stopped_early and model.n_iter_ < model.max_epochs


@parametrize_with_checks([MetaNeighborsRegressor(random_state=0), MetaNeighborsClassifier(random_state=0)],
                         expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS, xfail_strict=True)
def test_scikit_learn_check_estimator(estimator, check):
    check(estimator)


def _regression(n=160, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 3))
    y = np.sin(2 * x[:, 0]) + x[:, 1] ** 2 + 0.05 * rng.normal(size=n)
    return x, 10 * y + 3                                     # targets in their own units: standardised inside


def test_regressor_fits_a_nonlinear_function_in_original_units():
    x, y = _regression(250)
    model = MetaNeighborsRegressor(random_state=0, learning_rate=3e-3).fit(x[:200], y[:200])
    assert model.score(x[200:], y[200:]) > 0.8
    assert model.n_features_in_ == 3 and model.entries_ == 128 and model.batch_size_ == 180
    assert model.temperature_ == 0.05 and model.step_size_init_ == 0.2        # feature space, width 128
    assert isinstance(model.module_, MetaNeighborhoodsFeatureMLP)
    assert abs(model.predict(x[200:]).mean() - y[200:].mean()) < 3          # back in the units of y
    assert 1 <= model.best_epoch_ <= model.n_iter_ <= model.max_epochs
    again = MetaNeighborsRegressor(random_state=0, learning_rate=3e-3).fit(x[:200], y[:200])
    np.testing.assert_array_equal(model.predict(x[200:]), again.predict(x[200:]))



def test_feature_trunk_ends_with_a_relu_unless_asked_for_the_papers_trunk():
    """The estimators' trunk ends with a ReLU (features >= 0); feature_relu=False is MN sec. 2.3's µ_θ
    without its last non-linearity, whose features take both signs."""
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    ours = MetaNeighborhoodsFeatureMLP(5, 3, layers=3, width=16, entries=8)
    paper = MetaNeighborhoodsFeatureMLP(5, 3, layers=3, width=16, entries=8, feature_relu=False)
    assert ours.trunk(x).min() >= 0 and paper.trunk(x).min() < 0
    assert paper(x).shape == (64, 3)
    with pytest.raises(ValueError, match="feature_relu must be True or False"):
        MetaNeighborhoodsFeatureMLP(5, 3, feature_relu="no")


def test_multi_output_regression_and_classifier_probabilities():
    x, y = _regression()
    targets = np.stack([y, -y], axis=1)
    model = MetaNeighborsRegressor(random_state=0, max_epochs=20).fit(x, targets)
    assert model.predict(x).shape == (160, 2)
    xb, yb = make_blobs(n_samples=150, centers=3, random_state=0)
    names = np.array(["ant", "bee", "cat"])[yb]
    clf = MetaNeighborsClassifier(random_state=0).fit(xb, names)
    proba = clf.predict_proba(xb)
    assert list(clf.classes_) == ["ant", "bee", "cat"] and proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(xb))
    assert clf.score(xb, names) > 0.9
    # the classifier's wider trunk (256 units) and the temperature that goes with it, 0.05·√(128/256)
    assert clf.module_.head.input_dim == 256
    assert clf.temperature_ == pytest.approx(0.05 * np.sqrt(0.5))


def test_a_rows_prediction_does_not_depend_on_the_other_rows():
    """Each input is finetuned on its own: predicting a row alone, in a small batch or among all rows
    gives the same number (float64 prediction; in float32 the row count changes the rounding)."""
    x, y = _regression()
    model = MetaNeighborsRegressor(random_state=0, max_epochs=5).fit(x, y)
    whole = model.predict(x)
    assert whole.dtype == np.float64
    pieces = np.concatenate([model.predict(x[i:i + 7]) for i in range(0, len(x), 7)])
    alone = np.array([model.predict(x[i:i + 1])[0] for i in range(0, len(x), 16)])
    np.testing.assert_allclose(pieces, whole, rtol=1e-12, atol=0)
    np.testing.assert_allclose(alone, whole[::16], rtol=1e-12, atol=0)


def test_works_in_cross_val_score_grid_search_and_pipelines():
    x, y = _regression(120)
    scores = cross_val_score(MetaNeighborsRegressor(random_state=0, max_epochs=30), x, y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    search = GridSearchCV(MetaNeighborsRegressor(random_state=0, max_epochs=20),
                          {"temperature": [0.1, 1.0], "width": np.array([16]), "max_epochs": np.arange(20, 21)},
                          cv=2, error_score="raise").fit(x, y)           # NumPy grids give np.int64 values
    assert search.best_params_["temperature"] in (0.1, 1.0) and search.best_estimator_.width == 16
    holes = x.copy()
    holes[::7, 1] = np.nan
    pipeline = make_pipeline(SimpleImputer(), MetaNeighborsRegressor(random_state=0, max_epochs=20)).fit(holes, y)
    assert pipeline.predict(holes).shape == (120,)


@pytest.mark.parametrize("estimator", [MetaNeighborsRegressor, MetaNeighborsClassifier])
def test_input_errors_say_what_was_expected(estimator):
    x, y = make_blobs(n_samples=40, centers=2, random_state=0)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        estimator().fit(bad, y)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        estimator().fit(bad, y)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        estimator().fit(x[:, 0], y)
    with pytest.raises(ValueError, match="at least 2 samples .* n_samples=1"):
        estimator().fit(x[:1], y[:1])
    with pytest.raises(NotFittedError):
        estimator().predict(x)
    fitted = estimator(random_state=0, max_epochs=3).fit(x, y)
    with pytest.raises(ValueError, match="X has 3 features, but .* is expecting 2 features"):
        fitted.predict(np.zeros((2, 3)))


def _must_be(name: str, expected: str, got: str, estimator: str = "MetaNeighborsRegressor") -> str:
    """scikit-learn's parameter-validation message, as a pattern."""
    return rf"The '{name}' parameter of {estimator} must be {expected}\. Got {got} instead\."


@pytest.mark.parametrize("params,match", [
    (dict(temperature=0), _must_be("temperature", r"a float in the range \(0\.0, inf\) or a str among \{'auto'\}", "0")),
    (dict(entries=0), _must_be("entries", r"an int in the range \[1, inf\) or a str among \{'auto'\}", "0")),
    (dict(batch_size="big"), _must_be("batch_size", r"an int in the range \[1, inf\) or a str among \{'auto'\}",
                                      "'big'")),
    (dict(layers=1.5), _must_be("layers", r"an int in the range \[1, inf\)", r"1\.5")),
    (dict(validation_fraction=0.0), _must_be("validation_fraction", r"a float in the range \(0\.0, 1\.0\)", r"0\.0")),
    (dict(similarity="manhattan"), _must_be("similarity", r"a str among \{.*'cosine'.*\}", "'manhattan'")),
    (dict(weight_decay=-1), _must_be("weight_decay", r"a float in the range \[0\.0, inf\)", "-1")),
    (dict(space="output"), _must_be("space", r"a str among \{('feature', 'input'|'input', 'feature')\}", "'output'")),
    (dict(layers=1), "layers must be an integer >= 2, got 1"),
    (dict(width=True), "MetaNeighborsRegressor: width must be an integer >= 1, got True"),
    (dict(entries=True), "entries must be an integer >= 1 or auto, got True"),
    (dict(n_estimators=True), "n_estimators must be an integer >= 1, got True"),
    (dict(step_size_init=-0.1), _must_be("step_size_init", r"a float in the range \(0\.0, inf\) or a str among "
                                         r"\{'auto'\}", r"-0\.1")),
    (dict(dictionary_init="kmeans"), _must_be("dictionary_init", r"a str among \{('random', 'data'|'data', 'random')\}",
                                              "'kmeans'")),
    (dict(warm_start="yes"), _must_be("warm_start", "an instance of 'bool' or an instance of 'numpy.bool'", "'yes'")),
    (dict(temperature=float("inf")), _must_be("temperature", r"a float in the range \(0\.0, inf\) or a str among "
                                              r"\{'auto'\}", "inf")),
    (dict(learning_rate=float("nan")), _must_be("learning_rate", r"a float in the range \(0\.0, inf\)", "nan")),
])
def test_bad_hyper_parameters_fail_at_fit(params, match):
    x, y = _regression(20)
    model = MetaNeighborsRegressor(**params)                 # the constructor only stores them
    assert model.get_params()[next(iter(params))] is next(iter(params.values()))
    with pytest.raises(ValueError, match=match):
        model.fit(x, y)


@pytest.mark.parametrize("estimator", [MetaNeighborsRegressor(max_epochs=1), MetaNeighborsClassifier(max_epochs=1)],
                         ids=lambda e: type(e).__name__)
def test_every_parameter_has_a_constraint_and_bad_values_are_named(estimator):
    """scikit-learn's own check for its estimators (not part of check_estimator): a constraint for every
    parameter, and an informative error for a value of a wrong type or out of range."""
    from sklearn.utils.estimator_checks import check_param_validation
    check_param_validation(type(estimator).__name__, estimator)


def test_classifier_smooths_its_labels_and_the_regressor_has_no_such_parameter(monkeypatch):
    import nslviz.estimators as estimators
    seen = []
    fit = estimators.fit_tabular
    monkeypatch.setattr(estimators, "fit_tabular", lambda *a, **k: seen.append(k["label_smoothing"]) or fit(*a, **k))
    xb, yb = make_blobs(n_samples=60, centers=3, random_state=0)
    MetaNeighborsClassifier(random_state=0, max_epochs=2, n_estimators=2).fit(xb, yb)
    MetaNeighborsClassifier(random_state=0, max_epochs=2, n_estimators=1, label_smoothing=0.0).fit(xb, yb)
    x, y = _regression(40)
    MetaNeighborsRegressor(random_state=0, max_epochs=2, n_estimators=1).fit(x, y)
    assert seen == [0.1, 0.1, 0.0, 0.0]                      # the default ε reaches every member; mse: none
    assert "label_smoothing" not in MetaNeighborsRegressor().get_params()
    with pytest.raises(ValueError, match=_must_be("label_smoothing", r"a float in the range \[0\.0, 1\.0\)", "1",
                                                "MetaNeighborsClassifier")):
        MetaNeighborsClassifier(label_smoothing=1).fit(xb, yb)


def test_the_classifier_repeats_the_shared_parameters_with_the_same_defaults():
    """scikit-learn reads parameters from each class's own __init__ signature, so the classifier spells out
    the shared ones again to add label_smoothing: their defaults must not drift apart, except the width,
    which the classifier sets on purpose (256 against the regressor's 128)."""
    shared = MetaNeighborsRegressor().get_params()
    classifier = MetaNeighborsClassifier().get_params()
    assert (classifier.pop("width"), shared.pop("width")) == (256, 128)
    assert {k: v for k, v in classifier.items() if k != "label_smoothing"} == shared


def test_classifier_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes .* only one class: 1"):
        MetaNeighborsClassifier().fit(np.random.default_rng(0).normal(size=(10, 2)), np.ones(10, dtype=int))


def test_input_space_variant_is_kept():
    x, y = _regression(250)
    model = MetaNeighborsRegressor(space="input", layers=2, width=64, random_state=0,
                                   learning_rate=3e-3).fit(x[:200], y[:200])
    assert isinstance(model.module_, MetaNeighborhoodsMLP) and model.entries_ == 180
    assert model.temperature_ == pytest.approx(3 ** -0.5) and model.step_size_init_ == 0.01
    assert model.score(x[200:], y[200:]) > 0.8
    MetaNeighborsRegressor(space="input", layers=1, max_epochs=2, random_state=0).fit(x, y)   # a linear f_φ


def test_decision_function_orders_classes_as_predict_and_predict_proba():
    x, y = make_blobs(n_samples=150, centers=3, random_state=0)
    clf = MetaNeighborsClassifier(random_state=0, max_epochs=30).fit(x, y)
    scores = clf.decision_function(x)
    assert scores.shape == (150, 3)
    np.testing.assert_array_equal(clf.classes_[scores.argmax(1)], clf.predict(x))
    np.testing.assert_array_equal(scores.argmax(1), clf.predict_proba(x).argmax(1))
    binary = MetaNeighborsClassifier(random_state=0, max_epochs=30).fit(x[y < 2], np.where(y[y < 2], "b", "a"))
    margin = binary.decision_function(x[y < 2])
    assert margin.shape == (int((y < 2).sum()),)
    np.testing.assert_array_equal(np.where(margin > 0, "b", "a"), binary.predict(x[y < 2]))
    np.testing.assert_allclose(binary.predict_proba(x[:5]).sum(1), 1.0, rtol=1e-12)
    # what the docstring says it is: log p(c | x) of the members' mean probabilities, and its margin
    np.testing.assert_allclose(scores, np.log(clf.predict_proba(x)), rtol=1e-10, atol=1e-12)
    p = binary.predict_proba(x[y < 2])
    np.testing.assert_allclose(margin, np.log(p[:, 1]) - np.log(p[:, 0]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(clf.predict_log_proba(x), np.log(clf.predict_proba(x)), rtol=1e-10, atol=1e-12)
    far = clf.predict_log_proba(x * 1e3)                                  # where predict_proba rounds to 0
    assert np.isfinite(far).all() and np.allclose(np.exp(far).sum(1), 1.0)


def test_a_small_fit_runs_on_one_thread_and_restores_torch_setting():
    x, y = _regression(100)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = MetaNeighborsRegressor(random_state=0, max_epochs=3).fit(x, y)
        assert model.n_threads_ == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_members_train_at_once_on_a_free_core_each_and_give_the_same_model():
    x, y = make_blobs(n_samples=120, centers=3, random_state=0)
    models = {}
    for threads in (1, 2):
        with torch_threads(threads):
            models[threads] = MetaNeighborsClassifier(random_state=0, max_epochs=8).fit(x, y)
            assert torch.get_num_threads() == threads
    assert models[1].n_parallel_members_ == 1 and models[2].n_parallel_members_ == 2
    assert models[1].n_threads_ == models[2].n_threads_ == 1
    for one, two in zip(models[1].modules_, models[2].modules_):
        assert all(torch.equal(p, q) for p, q in zip(one.parameters(), two.parameters()))
    assert [r.epochs for r in models[1].fit_results_] == [r.epochs for r in models[2].fit_results_]


def test_fits_in_several_threads_give_the_sequential_models_and_leave_the_global_generator_alone():
    """torch has one global generator: fits running at once in user threads (joblib's threading backend),
    or the members of one fit, must neither draw each other's numbers nor restore each other's state."""
    from concurrent.futures import ThreadPoolExecutor
    x, y = make_blobs(n_samples=120, centers=3, random_state=0)

    def fit(seed):
        return MetaNeighborsClassifier(random_state=seed, max_epochs=4).fit(x, y).predict_proba(x)
    sequential = [fit(seed) for seed in range(3)]
    with ThreadPoolExecutor(3) as pool:
        for _ in range(2):
            for one, other in zip(sequential, pool.map(fit, range(3))):
                np.testing.assert_array_equal(one, other)
    with torch_threads(2):
        for seed in range(3):
            torch.manual_seed(0)
            model = MetaNeighborsClassifier(random_state=seed, max_epochs=6).fit(x, y)
            assert model.n_parallel_members_ == 2
            assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(0)))


def test_an_error_in_one_of_the_members_training_at_once_ends_the_fit(monkeypatch):
    import nslviz.estimators as estimators
    fit, calls = estimators.fit_tabular, []

    def second_member_fails(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 2:
            raise RuntimeError("member failed")
        return fit(*args, **kwargs)
    monkeypatch.setattr(estimators, "fit_tabular", second_member_fails)
    x, y = make_blobs(n_samples=60, centers=3, random_state=0)
    previous = torch.get_num_threads()
    with torch_threads(2), pytest.raises(RuntimeError, match="member failed"):
        MetaNeighborsClassifier(random_state=0, max_epochs=3, n_estimators=3).fit(x, y)
    assert torch.get_num_threads() == previous


@pytest.mark.slow
def test_parallel_grid_search_and_cross_validation_do_not_oversubscribe():
    """n_jobs=2: every fit runs in a joblib worker on at most its share of the cores."""
    x, y = make_blobs(n_samples=90, centers=3, random_state=0)
    share = max(1, (os.cpu_count() or 1) // 2)
    result = cross_validate(MetaNeighborsClassifier(random_state=0, max_epochs=5), x, y, cv=2, n_jobs=2,
                            return_estimator=True, error_score="raise")
    assert np.all(result["test_score"] > 0.5)
    assert all(1 <= e.n_threads_ * e.n_parallel_members_ <= share for e in result["estimator"])
    scores = cross_val_score(MetaNeighborsClassifier(random_state=0, max_epochs=5), x, y, cv=2, n_jobs=2)
    np.testing.assert_allclose(scores, result["test_score"])          # the same seeded fits, in workers
    search = GridSearchCV(MetaNeighborsClassifier(random_state=0, max_epochs=5), {"width": [16, 32]}, cv=2,
                          n_jobs=2, error_score="raise").fit(x, y)
    assert search.best_params_["width"] in (16, 32) and search.best_estimator_.n_threads_ >= 1


@pytest.mark.parametrize("estimator", [MetaNeighborsRegressor, MetaNeighborsClassifier])
def test_loss_curves_follow_the_first_members_epochs(estimator):
    x, y = _regression(120)
    model = estimator(random_state=0, max_epochs=40, n_estimators=2).fit(x, y if estimator is MetaNeighborsRegressor
                                                                          else (y > np.median(y)).astype(int))
    assert len(model.loss_curve_) == model.n_iter_ and len(model.validation_loss_curve_) == model.n_iter_ + 1
    assert np.all(np.isfinite(model.loss_curve_)) and model.loss_curve_[-1] < model.loss_curve_[0]
    assert model.validation_loss_curve_[model.best_epoch_] == model.best_validation_loss_
    assert model.best_validation_loss_ == min(model.validation_loss_curve_)


def test_warm_start_continues_from_the_fitted_model():
    x, y = _regression(120)
    model = MetaNeighborsRegressor(random_state=0, max_epochs=3, warm_start=True).fit(x, y)
    module, scaler, best = model.module_, model.y_scaler_, model.best_validation_loss_
    first = model.predict(x)
    model.fit(x, y)                                   # the same data: continue training
    assert model.module_ is module and model.y_scaler_ is scaler
    assert model.fit_result_.history[0]["validation_loss"] == pytest.approx(best, rel=1e-5)   # where it stopped
    assert not np.allclose(model.predict(x), first)
    cold = MetaNeighborsRegressor(random_state=0, max_epochs=3).fit(x, y)
    assert not np.allclose(cold.predict(x), model.predict(x))
    with pytest.warns(UserWarning, match="this fit's number of features differs"):
        model.fit(x[:, :2], y)                        # another shape: a new model
    assert model.module_ is not module and model.n_features_in_ == 2


def test_an_ensemble_averages_members_trained_on_their_own_seeds_and_splits():
    x, y = _regression(160)
    model = MetaNeighborsRegressor(random_state=0, max_epochs=20, n_estimators=3).fit(x, y)
    assert len(model.modules_) == 3 and len(model.fit_results_) == 3 and model.module_ is model.modules_[0]
    first, second = (torch.cat([p.detach().flatten() for p in m.parameters()]) for m in model.modules_[:2])
    assert not torch.equal(first, second)                              # different initialisations
    modules, members = model.modules_, []
    for module in modules:                                             # each member's prediction alone
        model.modules_ = [module]
        members.append(model.predict(x))
    model.modules_ = modules
    np.testing.assert_allclose(model.predict(x), np.mean(members, axis=0), rtol=1e-10)
    assert not np.allclose(members[0], members[1])
    single = MetaNeighborsRegressor(random_state=0, max_epochs=20, n_estimators=1).fit(x, y)
    np.testing.assert_array_equal(single.predict(x), members[0])      # member 0 is the one-model fit

    xb, yb = make_blobs(n_samples=150, centers=3, cluster_std=3.0, random_state=0)
    clf = MetaNeighborsClassifier(random_state=0, max_epochs=20, n_estimators=3).fit(xb, yb)
    modules, probabilities = clf.modules_, []
    for module in modules:
        clf.modules_ = [module]
        probabilities.append(clf.predict_proba(xb))
    clf.modules_ = modules
    ensemble = clf.predict_proba(xb)
    np.testing.assert_allclose(ensemble, np.mean(probabilities, axis=0), rtol=1e-10)   # mean of probabilities
    np.testing.assert_array_equal(clf.classes_[clf.decision_function(xb).argmax(1)], clf.predict(xb))


def test_bad_n_estimators_fails_at_fit():
    x, y = _regression(20)
    for bad in (0, 2.5, "three"):
        with pytest.raises(ValueError, match=_must_be("n_estimators", r"an int in the range \[1, inf\)", f"{bad!r}")):
            MetaNeighborsRegressor(n_estimators=bad).fit(x, y)


@pytest.mark.parametrize("change", [dict(temperature=0.5), dict(step_size_init=0.7), dict(dictionary_init="data")])
def test_warm_start_rebuilds_when_a_setting_of_the_members_changes(change):
    x, y = _regression(120)
    model = MetaNeighborsRegressor(random_state=0, max_epochs=3, warm_start=True).fit(x, y)
    module = model.module_
    model.set_params(max_epochs=4).fit(x, y)                          # a training setting: continue
    assert model.module_ is module
    with pytest.warns(UserWarning, match=f"this fit's {next(iter(change))} differs"):
        model.set_params(**change).fit(x, y)                          # a setting the members were built with
    assert model.module_ is not module
    cold = MetaNeighborsRegressor(random_state=0, max_epochs=4, **change).fit(x, y)
    np.testing.assert_array_equal(model.predict(x), cold.predict(x))   # the model the new settings build


def test_a_warm_fit_that_builds_afresh_says_what_changed():
    x, y = _regression(120)
    model = MetaNeighborsRegressor(random_state=0, max_epochs=3, warm_start=True).fit(x, y)
    with pytest.warns(UserWarning, match="warm_start=True, but this fit's entries differs from the fitted "
                                         "model's: the members are built afresh"):
        model.fit(x[:60], y[:60])                          # entries "auto": one per training row on this table
    with pytest.warns(UserWarning, match="this fit's number of features, entries differ from"):
        model.fit(np.hstack([x, x])[:60 + 1], y[:61])


def test_a_diverging_fit_stops_with_an_error_or_warns_that_nothing_was_learned():
    """A NaN or inf loss stops the fit, naming learning_rate (scikit-learn's MLPs raise too); finite
    losses that only grow keep the model as built, with a ConvergenceWarning saying so."""
    from sklearn.datasets import load_diabetes
    from sklearn.exceptions import ConvergenceWarning
    x, y = load_diabetes(return_X_y=True)
    with pytest.raises(FloatingPointError, match=r"MetaNeighborsRegressor\(learning_rate=1000.0\), member 1: "
                                                 r"training diverged: the loss is not finite in epoch 1"):
        MetaNeighborsRegressor(random_state=0, learning_rate=1e3, max_epochs=5, n_estimators=1).fit(x, y)
    with pytest.warns(ConvergenceWarning, match="training diverged: every epoch's validation loss is more than 10 "
                                                "times that of the model as built.*lower learning_rate") as caught:
        model = MetaNeighborsRegressor(random_state=0, learning_rate=1.0, max_epochs=5, n_estimators=1).fit(x, y)
    assert model.best_epoch_ == 0 and not any("max_epochs" in str(w.message) for w in caught)


def test_warm_start_rebuilds_when_the_ensemble_size_changes():
    x, y = _regression(120)
    model = MetaNeighborsRegressor(random_state=0, max_epochs=3, warm_start=True, n_estimators=2).fit(x, y)
    modules = list(model.modules_)
    model.fit(x, y)
    assert model.modules_ == modules                                   # same members, trained further
    with pytest.warns(UserWarning, match="this fit's n_estimators differs"):
        model.set_params(n_estimators=3).fit(x, y)
    assert len(model.modules_) == 3 and all(m is not old for m, old in zip(model.modules_, modules))


def test_auto_temperature_scales_with_the_attended_width():
    from nslviz.estimators import default_temperature
    assert default_temperature(128, "cosine", "feature") == 0.05
    assert default_temperature(32, "cosine", "feature") == pytest.approx(0.1)           # 0.05·√(128/32)
    assert default_temperature(100, "cosine", "input") == pytest.approx(0.1)            # the paper's T
    assert default_temperature(128, "dot", "feature") == 1.0
    x, y = _regression(60)
    narrow = MetaNeighborsRegressor(width=32, max_epochs=2, n_estimators=1, random_state=0).fit(x, y)
    assert narrow.temperature_ == pytest.approx(0.1)
    assert narrow.module_.head.attention.temperature == pytest.approx(0.1, rel=1e-6)     # the model's T


@pytest.mark.parametrize("space", ["feature", "input"])
def test_data_started_dictionary_holds_training_rows(space):
    """dictionary_init="data": before training, every entry is a fitting row: its key the row's features
    (its direction, for the cosine similarity), its value the row's label."""
    import torch.nn.functional as F

    xb, yb = make_blobs(n_samples=150, centers=3, cluster_std=3.0, random_state=0)
    clf = MetaNeighborsClassifier(random_state=0, max_epochs=1, n_estimators=1, space=space,
                                  dictionary_init="data").fit(xb, yb)
    inputs = torch.as_tensor(clf.x_scaler_.transform(xb), dtype=torch.float32)
    labels = torch.as_tensor(yb)
    model = clf._build(2, 3, "cross_entropy", inputs, labels, seed=5)
    keys, values = model.dictionary.keys.detach(), model.dictionary.values.detach()
    features = inputs if space == "input" else model.trunk(inputs).detach()
    match = F.normalize(keys, dim=1) @ F.normalize(features, dim=1).T             # (S, rows) cosine
    best = match.max(dim=1)
    assert len(keys) == clf.entries_ and torch.allclose(best.values, torch.ones(len(keys)), atol=1e-5)
    assert len(set(best.indices.tolist())) == len(keys)                           # S distinct rows
    assert torch.equal(values.argmax(1), labels[best.indices])                    # their labels
    assert values.max(1).values.min() == pytest.approx(0.9, abs=1e-5)
    random = clf.set_params(dictionary_init="random")._build(2, 3, "cross_entropy", inputs, labels, seed=5)
    assert random.dictionary.values.max() < 0.5                                  # random values: near uniform

    x, y = _regression(120)
    reg = MetaNeighborsRegressor(random_state=0, max_epochs=1, n_estimators=1, space=space,
                                 dictionary_init="data").fit(x, y)
    targets = torch.as_tensor(reg.y_scaler_.transform(y[:, None]), dtype=torch.float32)
    model = reg._build(3, 1, "mse", torch.as_tensor(reg.x_scaler_.transform(x), dtype=torch.float32), targets, seed=5)
    values = model.dictionary.values.detach()[:, 0]
    assert set(values.tolist()) <= set(targets[:, 0].tolist())                    # standardised targets of rows


def test_verbose_shows_one_progress_line_per_member(capsys):
    """Members train side by side in threads: each has its own bar, named, on its own line."""
    X, y = make_blobs(n_samples=60, centers=2, random_state=0)
    MetaNeighborsClassifier(n_estimators=2, max_epochs=3, verbose=True, random_state=0).fit(X, y)
    err = capsys.readouterr().err
    assert "MetaNeighborsClassifier member 1" in err and "MetaNeighborsClassifier member 2" in err


def test_where_no_stratified_split_exists_every_class_stays_among_the_fitting_rows():
    """Two rows of two classes, or a class of one row: a random early-stopping split left a class out of
    the fitting rows, and the fitted model barely told the classes apart (probabilities 0.51 / 0.49)."""
    from nslviz.estimators import _split_keeping_every_class
    labels = np.array([0, 1, 1, 2, 2, 2, 3])
    for seed in range(20):
        fit, stop = _split_keeping_every_class(labels, 2, seed)
        assert set(labels[fit]) == {0, 1, 2, 3} and len(stop) == 2 and not set(fit) & set(stop)
    assert [list(part) for part in _split_keeping_every_class(np.array([0, 1]), 1, 0)] in ([[0, 1], [0]], [[0, 1], [1]])
    X, y = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array(["a", "b"])
    proba = MetaNeighborsClassifier(random_state=0).fit(X, y).predict_proba(X)
    assert proba[0, 0] > 0.6 and proba[1, 1] > 0.6


def test_weight_decay_reaches_the_trunk_and_last_layer_but_not_the_dictionary_or_step_sizes(monkeypatch):
    """weight_decay decays µ_θ's and f_φ's weights only: the feature-space dictionary (keys, values) and the
    learned step sizes are in AdamW's group with decay 0 (official MN "memory" scope; the temperature is fixed here)."""
    import nslviz.training.tabular as tabular
    groups = []
    adamw = tabular._adamw
    monkeypatch.setattr(tabular, "_adamw", lambda given, lr: groups.append(given) or adamw(given, lr))
    xb, yb = make_blobs(n_samples=40, centers=2, random_state=0)
    x, y = _regression(40)
    for estimator, values in ((MetaNeighborsClassifier, "value_logits"), (MetaNeighborsRegressor, "regression_values")):
        groups.clear()
        model = estimator(width=8, entries=6, weight_decay=0.1, max_epochs=1, n_estimators=1, random_state=0)
        model.fit(*((xb, yb) if estimator is MetaNeighborsClassifier else (x, y)))
        assert isinstance(model.module_, MetaNeighborhoodsFeatureMLP) and len(groups) == 1
        by_name = {g["name"]: g for g in groups[0]}
        assert [(g["name"], g["weight_decay"]) for g in groups[0]] == [("decay", 0.1), ("no_decay", 0.0)]
        names = {id(p): name for name, p in model.module_.named_parameters()}
        decayed = sorted(names[id(p)] for p in by_name["decay"]["params"])
        kept = sorted(names[id(p)] for p in by_name["no_decay"]["params"])
        assert decayed == ["head.network.0.bias", "head.network.0.weight", "trunk.0.0.bias", "trunk.0.0.weight",
                           "trunk.0.2.bias", "trunk.0.2.weight"], estimator.__name__
        assert kept == ["head.dictionary.keys", f"head.dictionary.{values}", "head.inner_step_sizes.0__bias",
                        "head.inner_step_sizes.0__weight"], estimator.__name__


def test_a_fit_is_called_diverged_only_when_every_epoch_is_ten_times_worse_than_the_start():
    from types import SimpleNamespace

    from nslviz.estimators import _diverged

    def result(best_epoch, *losses):
        return SimpleNamespace(best_epoch=best_epoch, history=[{"validation_loss": v} for v in losses])
    assert _diverged(result(0, 1.0, 11.0, 10.5))
    assert not _diverged(result(0, 1.0, 1.5, 2.0))          # worse than a good start, not diverged
    assert not _diverged(result(0, 1.0, 11.0, 9.0))         # one epoch under 10 times the start
    assert not _diverged(result(1, 1.0, 0.5, 20.0))         # it learned before it blew up
    assert not _diverged(result(0, 1.0))                    # no epoch trained


def test_a_tenth_of_the_rows_rounded_stops_early():
    """validation_fraction 0.1 of 15 rows rounds to 2 early-stopping rows: 13 fitting rows, which set
    batch_size="auto" and entries="auto"."""
    rng = np.random.RandomState(0)
    x, y = rng.randn(15, 2), rng.randn(15)
    model = MetaNeighborsRegressor(n_estimators=1, max_epochs=1, random_state=0).fit(x, y)
    assert model.batch_size_ == 13 and model.entries_ == 13
