"""kNN as multi-task learning (MN sec. 2.3): MN's inner loop with a constant / linear estimator on each
query's neighborhood reproduces scikit-learn's kNN and local linear regression."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from nslviz.analysis import knn
from nslviz.analysis.knn import (ConstantModel, finetune_on_neighborhoods, knn_by_finetuning, knn_class_probabilities,
                                 linear_finetuning_path, local_linear_regression, nearest_neighbors,
                                 neighborhood_attention)
from nslviz.experiments.knn import KnnToyConfig, derivation_checks, derivation_data, posterior_checks, run_knn_toy

X, Y, LABELS, QUERIES = derivation_data(n_train=300, n_query=80)


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: see tests/conftest.py


@pytest.mark.parametrize("k", [1, 4, 17, 60])
def test_one_inner_step_of_a_constant_is_knn_regression(k):
    expected = KNeighborsRegressor(n_neighbors=k).fit(X, Y).predict(QUERIES)
    np.testing.assert_allclose(knn_by_finetuning(X, Y, QUERIES, k), expected, rtol=0, atol=1e-12)
    two = np.column_stack([Y, np.cos(Y)])                  # several targets: alpha = C/2
    np.testing.assert_allclose(knn_by_finetuning(X, two, QUERIES, k),
                               KNeighborsRegressor(n_neighbors=k).fit(X, two).predict(QUERIES), atol=1e-12)


def test_the_step_size_matters_and_the_start_does_not():
    """From any constant, α = 1/2 lands on the neighbors' mean; another α does not."""
    model = ConstantModel(1)
    with torch.no_grad():
        model.value.fill_(7.0)
    expected = KNeighborsRegressor(n_neighbors=5).fit(X, Y).predict(QUERIES)
    landed = finetune_on_neighborhoods(model, X, Y, QUERIES, 5, step_size=0.5)[:, 0].numpy()
    np.testing.assert_allclose(landed, expected, atol=1e-12)
    short = finetune_on_neighborhoods(model, X, Y, QUERIES, 5, step_size=0.25)[:, 0].numpy()
    np.testing.assert_allclose(short, (7.0 + expected) / 2, atol=1e-12)     # halfway there


@pytest.mark.parametrize("k", [1, 5, 12])
def test_class_frequencies_are_knn_probabilities(k):
    classifier = KNeighborsClassifier(n_neighbors=k).fit(X, LABELS)
    probabilities = knn_class_probabilities(X, LABELS, QUERIES, k)
    np.testing.assert_allclose(probabilities, classifier.predict_proba(QUERIES), atol=1e-12)
    np.testing.assert_array_equal(classifier.classes_[probabilities.argmax(1)], classifier.predict(QUERIES))


@pytest.mark.parametrize("k", [3, 10, 40])
def test_local_linear_regression_matches_per_query_least_squares(k):
    index = nearest_neighbors(X, QUERIES, k).numpy()
    reference = np.array([LinearRegression().fit(X[i], Y[i]).predict(q[None])[0] for i, q in zip(index, QUERIES)])
    np.testing.assert_allclose(local_linear_regression(X, Y, QUERIES, k), reference, atol=1e-9)


def test_gradient_steps_of_a_linear_model_converge_to_local_linear_regression():
    target = local_linear_regression(X, Y, QUERIES, 40)
    path = linear_finetuning_path(X, Y, QUERIES, 40, steps=(1, 30, 300))
    errors = [np.abs(path[n] - target).max() for n in (1, 30, 300)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05


def _posterior_mean_by_quadrature(values: np.ndarray, prior: float, prior_variance: float) -> np.ndarray:
    """E[C] for each row of neighbor values (Q, k): prior N(prior, τ²), likelihood Π_j N(y_j; C, 1)^(1/k),
    integrated on a fine grid of C in float64: a reference that uses no closed form."""
    grid = np.linspace(-12.0, 12.0, 200_001)                                    # (G,) values of C
    log_density = (-(grid - prior) ** 2 / (2 * prior_variance)
                   - ((grid[None, :, None] - values[:, None, :]) ** 2).mean(-1) / 2)   # (Q, G)
    weights = np.exp(log_density - log_density.max(1, keepdims=True))
    return (weights * grid).sum(1) / weights.sum(1)


@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.4])
def test_one_step_from_a_prior_is_the_gaussian_posterior_mean(alpha):
    """MN sec. 2.1: the constant stepped once from C₀ is E[C | neighbors] under N(C₀, τ²) with
    τ²/σ² = 2α/(1 - 2α), against a posterior integrated numerically (σ = 1)."""
    k, prior = 5, 0.7
    step = knn.step_from_prior(X, Y, QUERIES[:12], k, prior, alpha)
    values = Y[nearest_neighbors(X, QUERIES[:12], k).numpy()]                   # (Q, k)
    ratio = knn.prior_to_noise_ratio(alpha)
    assert ratio == pytest.approx(2 * alpha / (1 - 2 * alpha))
    np.testing.assert_allclose(step, _posterior_mean_by_quadrature(values, prior, ratio), atol=1e-9)
    np.testing.assert_allclose(knn.gaussian_posterior_mean(X, Y, QUERIES[:12], k, prior, ratio), step, atol=1e-13)
    np.testing.assert_allclose(step, (1 - 2 * alpha) * prior + 2 * alpha * values.mean(1), atol=1e-13)


def test_the_posterior_reading_at_its_ends_and_with_several_outputs():
    """α = 0 keeps the prior, α = C/2 is a flat prior (kNN); with C outputs the data's weight is 2α/C."""
    assert knn.prior_to_noise_ratio(0.0) == 0.0 and knn.prior_to_noise_ratio(0.5) == float("inf")
    np.testing.assert_array_equal(knn.step_from_prior(X, Y, QUERIES, 3, -1.5, 0.0), -1.5)
    np.testing.assert_allclose(knn.gaussian_posterior_mean(X, Y, QUERIES, 3, -1.5, float("inf")),
                               knn_by_finetuning(X, Y, QUERIES, 3), atol=1e-13)
    two = np.column_stack([Y, np.cos(Y)])
    ratio = knn.prior_to_noise_ratio(0.5, outputs=2)                             # λ = 1/2: τ² = σ²
    assert ratio == pytest.approx(1.0)
    np.testing.assert_allclose(knn.step_from_prior(X, two, QUERIES, 4, 0.3, 0.5),
                               (0.3 + knn_by_finetuning(X, two, QUERIES, 4)) / 2, atol=1e-13)
    np.testing.assert_allclose(knn.gaussian_posterior_mean(X, two, QUERIES, 4, 0.3, ratio),
                               knn.step_from_prior(X, two, QUERIES, 4, 0.3, 0.5), atol=1e-13)
    with pytest.raises(ValueError, match=r"step_size must be in \[0, 0.5\] \(C/2 for C = 1 outputs\) to be a "
                                         r"posterior mean, got 0.6: a larger step overshoots"):
        knn.prior_to_noise_ratio(0.6)
    with pytest.raises(ValueError, match=r"step_size must be in \[0, 1\]"):
        knn.prior_to_noise_ratio(-0.1, outputs=2)
    with pytest.raises(ValueError, match="prior must be a finite number .* got nan"):
        knn.step_from_prior(X, Y, QUERIES, 3, float("nan"), 0.1)
    with pytest.raises(ValueError, match="prior must be a finite number .* got '0'"):
        knn.gaussian_posterior_mean(X, Y, QUERIES, 3, "0", 1.0)
    with pytest.raises(ValueError, match=r"prior_to_noise \(τ²/σ²\) must be >= 0, got -1"):
        knn.gaussian_posterior_mean(X, Y, QUERIES, 3, 0.0, -1)


def test_posterior_checks_table():
    rows = posterior_checks(step_sizes=(0.0, 0.1, 0.5), k=4, seed=1)
    assert [row["step size α"] for row in rows] == [0.0, 0.1, 0.5]
    assert [row["prior to noise τ²/σ²"] for row in rows] == [0.0, pytest.approx(0.25), float("inf")]
    assert [row["weight on the neighbors λ"] for row in rows] == [0.0, pytest.approx(0.2), pytest.approx(1.0)]
    assert all(row["one step vs posterior mean: max |Δ|"] < 1e-13 for row in rows)


def test_neighborhoods_and_errors():
    attention = neighborhood_attention(X, QUERIES, 6)
    assert attention.shape == (80, 300) and torch.allclose(attention.sum(1), torch.ones(80, dtype=torch.float64))
    assert ((attention > 0).sum(1) == 6).all()
    ties = nearest_neighbors(np.zeros((4, 1)), np.zeros((1, 1)), 2)
    assert ties.tolist() == [[0, 1]]                                             # ties: lower index first
    with pytest.raises(ValueError, match="k must be <= the number of training points \\(300\\), got 301"):
        nearest_neighbors(X, QUERIES, 301)
    with pytest.raises(ValueError, match="needs k >= 3 neighbors, got k=2"):
        local_linear_regression(X, Y, QUERIES, 2)


def test_derivation_checks_table():
    rows = derivation_checks(neighbors=(1, 5), seed=1)
    assert [row["k"] for row in rows] == [1, 5]
    for row in rows:
        assert row["kNN regression: max |Δ|"] < 1e-12 and row["kNN class probabilities: max |Δ|"] < 1e-12
        assert row["majority vote agrees"] == 1.0
    assert rows[1]["local linear: max |Δ|"] < 1e-9 and "local linear: max |Δ|" not in rows[0]


def test_toy_runs_every_fit(monkeypatch):
    import nslviz.experiments.knn as knn_experiment
    fits, fit = [], knn_experiment.fit_tabular

    def recorded(model, x_fit, y_fit, x_val, y_val, **options):
        fits.append((x_fit[:, 0].tolist(), x_val[:, 0].tolist()))
        return fit(model, x_fit, y_fit, x_val, y_val, **options)

    monkeypatch.setattr(knn_experiment, "fit_tabular", recorded)
    config = KnnToyConfig(points=60, test_points=100, grid=50, neighbors=(1, 5), temperatures=(0.1, 1.0),
                          entries=8, width=8, max_epochs=5, patience=2)
    result = run_knn_toy(config)
    assert len(fits) == 3                                  # the MLP, then MN at each T: early stopping on held-out rows
    for fitted, validation in fits:
        assert len(validation) == 12 and not set(fitted) & set(validation) and len(fitted) == 48
    assert set(result.knn) == {1, 5} and set(result.local_linear) == {5} and set(result.mn) == {0.1, 1.0}
    assert result.knn[1].shape == (50,) and result.mlp.shape == (50,) and result.mn_keys[0.1].shape == (8,)
    s = result.summary()
    assert s["knn_mse"][1] > s["knn_mse"][5] > 0                # 1-NN chases the noise
    assert np.isfinite(s["mlp_mse"]) and all(np.isfinite(v) for v in s["mn_mse"].values())
    # the constant stepped from the prior (the samples' mean): the prior itself at α = 0, 1-NN at α = 1/2
    assert result.prior == pytest.approx(result.y_train.mean()) and set(result.from_prior) == set(config.step_sizes)
    np.testing.assert_allclose(result.from_prior[0.0], result.prior, atol=1e-12)
    np.testing.assert_allclose(result.from_prior[0.5], result.knn[1], atol=1e-12)
    assert s["from_prior_mse"][0.5] == s["knn_mse"][1] and s["prior_neighbors"] == 1


def test_a_little_trust_in_the_prior_beats_one_neighbor_and_not_five():
    """Notebook 02's step 4 (default toy, both modes: no training involved): with one neighbor the test MSE
    is lowest at α = 0.45, below 1-NN's; with five, α = 1/2 (kNN) is lowest."""
    mse = {}
    for k, best in ((1, 0.45), (5, 0.5)):
        config = KnnToyConfig(prior_neighbors=k, neighbors=(1,), temperatures=(0.1,), max_epochs=1).quick()
        mse[k] = run_knn_toy(config).test_mse["from_prior"]
        assert min(mse[k], key=mse[k].get) == best, mse[k]
    quoted = {(1, 0.0): 0.60, (1, 0.45): 0.170, (1, 0.5): 0.180, (5, 0.45): 0.113, (5, 0.5): 0.110}   # notebook 02
    assert {key: round(mse[key[0]][key[1]], 2 if key[1] == 0 else 3) for key in quoted} == quoted


def test_the_toy_refuses_a_k_beyond_its_points_and_empty_grids():
    with pytest.raises(ValueError, match="neighbors k=300 is more than the 60 points of the toy"):
        KnnToyConfig(points=60, neighbors=(5, 300))
    with pytest.raises(ValueError, match="prior_neighbors k=61 is more than the 60 points of the toy"):
        KnnToyConfig(points=60, neighbors=(5,), prior_neighbors=61)
    with pytest.raises(ValueError, match=r"step_size must be in \[0, 0.5\].*got 0.7"):
        KnnToyConfig(step_sizes=(0.5, 0.7))
    for name in ("neighbors", "temperatures", "step_sizes"):
        with pytest.raises(ValueError, match=f"{name} must hold at least one value, got none"):
            KnnToyConfig(**{name: ()})


def test_bad_inputs_name_the_argument_and_zero_steps_is_the_start():
    import torch.nn as nn

    rng = np.random.default_rng(0)
    x, y, q = rng.normal(size=(30, 3)), rng.normal(size=30), rng.normal(size=(5, 3))
    with pytest.raises(ValueError, match=r"y_train with one row per training point \(30\), got shape \(20, 1\)"):
        knn.knn_by_finetuning(x, y[:20], q, 3)
    with pytest.raises(ValueError, match="same number of features, got 3 and 2"):
        knn.local_linear_regression(x, y, q[:, :2], 5)
    holes = y.copy()
    holes[0] = np.nan
    with pytest.raises(ValueError, match="y_train contains 1 NaN"):
        knn.local_linear_regression(x, holes, q, 5)
    with pytest.raises(ValueError, match="steps must be >= 0, got -1"):
        knn.finetune_on_neighborhoods(nn.Linear(3, 1).double(), x, y, q, 3, steps=-1)
    path = knn.linear_finetuning_path(x, y, q, 5, steps=(0, 10))
    assert np.all(path[0] == 0)                                   # step 0: the zero-initialised line
    assert set(knn.linear_finetuning_path(x, y, q, 5, steps=10)) == {10}


def test_class_probabilities_need_every_label_once_in_classes():
    """A `classes` list missing a label, or naming one twice, gave rows that were not probabilities."""
    x, labels, query = np.array([[0.0], [1.0], [2.0]]), np.array([0, 1, 2]), np.array([[1.5]])
    np.testing.assert_allclose(knn_class_probabilities(x, labels, query, 2, classes=[0, 1, 2]).sum(1), 1.0)
    with pytest.raises(ValueError, match=r"classes must list every label once; got \[0, 1\], without the labels \[2\]"):
        knn_class_probabilities(x, labels, query, 2, classes=[0, 1])
    with pytest.raises(ValueError, match="with repeats"):
        knn_class_probabilities(x, labels, query, 2, classes=[0, 0, 1, 2])


def test_neighbors_at_equal_distance_are_taken_in_index_order():
    """40 training points at distance 1 from the query (the four unit vectors, ten times each): the k
    nearest are the first k indices, as the docstring promises, not an arbitrary choice among the ties."""
    x_train = np.tile([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], (10, 1))
    assert nearest_neighbors(x_train, np.zeros((2, 2)), 7).tolist() == [list(range(7))] * 2
