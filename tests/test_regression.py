"""MN regression (nslviz.regression), the tabular training loop and the MN Table 2 experiment."""
import dataclasses

import numpy as np
import pytest
import torch

from nslviz import FunctionalMetaNeighborhoods
from nslviz.datasets.tabular import TabularData, load_tabular
from nslviz.regression import MLP, MetaNeighborhoodsMLP, values_in_target_range
from nslviz.experiments.regression_table import RegressionCVConfig, cross_validate_regression
from nslviz.training.tabular import build_meta_neighborhoods_mlp, build_mlp, default_entries, fit_tabular, predict_tabular
from nslviz.viz import regression as regression_viz


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: see tests/conftest.py


# ---------------------------------------------------------------------------------------------- random draws

def test_seeded_blocks_in_two_threads_take_turns():
    """A second thread's seeded block waits until the first thread's is over: the first draws all its
    numbers from its own seed, and the caller's global state comes back as it was."""
    import threading
    import time
    from nslviz.training.tabular import seeded
    inside, draws = threading.Event(), {}

    def first():
        with seeded(1):
            head = torch.rand(4)
            inside.set()
            time.sleep(0.3)                                   # the second thread would seed here ...
            draws[1] = torch.cat([head, torch.rand(4)])       # ... and this would be its numbers

    def second():
        inside.wait()
        with seeded(2):
            draws[2] = torch.rand(4)
            time.sleep(0.6)
    torch.manual_seed(5)
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torch.equal(draws[1], torch.rand(8, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(draws[2], torch.rand(4, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(torch.rand(2), torch.rand(2, generator=torch.Generator().manual_seed(5)))


def test_entry_dropout_draws_from_the_fits_own_stream_not_the_global_generator():
    """A fit with entry dropout gives the same model while another thread reseeds and draws from the
    global generator all along, and leaves that generator as it found it."""
    import threading
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(96, 3)), dtype=torch.float32)
    y = x[:, :1] ** 2

    models = [build_meta_neighborhoods_mlp(3, 1, 1, 8, targets=y, entries=16, seed=0, entry_dropout=0.5)
              for _ in range(2)]                              # built first: initialisation draws from it

    def fitted(model):
        fit_tabular(model, x, y, x[:32], y[:32], max_epochs=4, patience=10, seed=3)
        assert all(m.generator is None for m in model.modules() if hasattr(m, "generator"))
        return model.state_dict()
    torch.manual_seed(5)
    alone = fitted(models[0])
    assert torch.equal(torch.rand(2), torch.rand(2, generator=torch.Generator().manual_seed(5)))
    stop = threading.Event()

    def interfere():
        while not stop.is_set():
            torch.manual_seed(123)
            torch.rand(64)
    thread = threading.Thread(target=interfere)
    thread.start()
    try:
        beside = fitted(models[1])
    finally:
        stop.set()
        thread.join()
    assert all(torch.equal(alone[k], beside[k]) for k in alone)


# ---------------------------------------------------------------------------------------------- the model

@pytest.mark.parametrize("loss,outputs,first_order,layers", [
    ("mse", 2, False, 3), ("cross_entropy", 3, False, 1), ("mse", 1, True, 1), ("cross_entropy", 2, True, 3)])
def test_closed_form_matches_torch_func(loss, outputs, first_order, layers):
    """The closed-form per-input finetuning equals FunctionalMetaNeighborhoods (vmap(grad)) on the
    same MLP, dictionary and step sizes: outputs and the gradient of every parameter and the input."""
    torch.manual_seed(0)
    model = MetaNeighborhoodsMLP(4, outputs, layers=layers, width=5, entries=7, loss=loss, temperature=0.5,
                                 key_init_std=1.0, first_order=first_order).double()
    with torch.no_grad():
        for step in model.inner_step_sizes.values():
            step.uniform_(0.1, 0.5)
    reference = FunctionalMetaNeighborhoods(model.network, 4, outputs, entries=7, loss=loss, temperature=0.5,
                                            values=model.dictionary.value_kind, first_order=first_order).double()
    reference.dictionary, reference.inner_step_sizes = model.dictionary, model.inner_step_sizes
    inputs = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    fast, slow = model(inputs), reference(inputs)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    probe = torch.randn_like(fast)
    wrt = [inputs, *model.parameters()]
    for name, a, b in zip(["inputs"] + [n for n, _ in model.named_parameters()],
                          torch.autograd.grad((fast * probe).sum(), wrt, retain_graph=True),
                          torch.autograd.grad((slow * probe).sum(), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m: f"gradient of {name}: {m}")
    # second order reaches the dictionary and the step sizes
    grads = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad((fast * probe).sum(),
                                                                                  list(model.parameters()))))
    assert grads["dictionary.keys"].abs().sum() > 0 and grads["inner_step_sizes.0__weight"].abs() > 0


def test_mlp_shape_and_tiny_step_is_the_vanilla_network():
    mlp = MLP(3, 2, layers=4, width=8)
    assert [m.out_features for m in mlp.linears] == [8, 8, 8, 2] and len(list(mlp)) == 7
    model = MetaNeighborhoodsMLP(3, 2, layers=2, width=8, entries=10, step_size_init=1e-9)
    x = torch.randn(5, 3)
    torch.testing.assert_close(model(x), model.network(x), rtol=1e-5, atol=1e-6)
    details = model(x, return_details=True)
    assert details["attention"].shape == (5, 10) and torch.allclose(details["attention"].sum(1), torch.ones(5))
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 3\), got \(5, 4\)"):
        model(torch.randn(5, 4))
    with pytest.raises(ValueError, match="layers must be >= 1, got 0"):
        MLP(3, 1, layers=0)
    with pytest.raises(ValueError, match="binary_cross_entropy"):
        MetaNeighborhoodsMLP(3, 1, loss="binary_cross_entropy")


def test_values_in_target_range_and_builders_are_seeded():
    targets = torch.tensor([[-2.0, 0.0], [1.0, 5.0], [0.5, 1.0]])
    values = values_in_target_range(500, targets, torch.Generator().manual_seed(0))
    assert values.shape == (500, 2)
    assert values[:, 0].min() >= -2 and values[:, 0].max() <= 1 and values[:, 1].min() >= 0 and values[:, 1].max() <= 5
    assert values[:, 0].min() < -1.9 and values[:, 0].max() > 0.9 and values[:, 1].min() < 0.1 and values[:, 1].max() > 4.9
    state = torch.get_rng_state()
    a = build_meta_neighborhoods_mlp(3, 1, 2, 8, targets=targets[:, :1], entries=20, seed=3)
    b = build_meta_neighborhoods_mlp(3, 1, 2, 8, targets=targets[:, :1], entries=20, seed=3)
    assert torch.equal(torch.get_rng_state(), state)                     # the caller's RNG is untouched
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    # MN and the vanilla MLP built with the same seed start from the same network
    for p, q in zip(build_mlp(3, 1, 2, 8, seed=3).parameters(), a.network.parameters()):
        assert torch.equal(p, q)
    assert a.dictionary.values.min() >= -2 and a.dictionary.values.max() <= 1
    # the dictionary and step sizes are not decayed, the network is
    excluded = {id(p) for p in a.no_weight_decay_parameters()}
    assert id(a.dictionary.keys) in excluded and not any(id(p) in excluded for p in a.network.parameters())
    assert all(id(p) in excluded for p in (a.dictionary.regression_values, *a.inner_step_sizes.parameters()))


def test_default_entries():
    assert default_entries(21_263, 13_600) == 1000 and default_entries(442, 282) == 282


# ---------------------------------------------------------------------------------------------- the loop

def _toy_regression(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 4 - 2
    y = (torch.sin(2 * x[:, :1]) + 0.5 * x[:, 1:]) + 0.1 * torch.randn(n, 1, generator=g)
    return x[:180], y[:180], x[180:], y[180:]


def test_fit_tabular_learns_stops_early_and_restores_the_best_weights():
    x, y, xv, yv = _toy_regression()
    model = build_mlp(2, 1, 2, 32, seed=0)
    before = float(torch.nn.functional.mse_loss(predict_tabular(model, xv), yv))
    result = fit_tabular(model, x, y, xv, yv, lr=1e-2, batch_size=32, max_epochs=150, patience=5, seed=0)
    after = float(torch.nn.functional.mse_loss(predict_tabular(model, xv), yv))
    assert after < 0.5 * before
    assert after == pytest.approx(result.best_validation_loss, rel=1e-6)        # best weights restored
    losses = [row["validation_loss"] for row in result.history]
    assert result.best_validation_loss == pytest.approx(min(losses))
    assert result.stopped_early and result.epochs == result.history[-1]["epoch"]
    assert result.epochs - result.best_epoch >= 5 or result.epochs == 150
    assert result.steps == result.epochs * 6                                      # 180 rows / batch 32


def test_fit_tabular_is_seeded_and_tol_ends_creeping_losses():
    x, y, xv, yv = _toy_regression()
    runs = []
    for _ in range(2):
        model = build_meta_neighborhoods_mlp(2, 1, 2, 16, targets=y, entries=30, seed=1)
        fit_tabular(model, x, y, xv, yv, max_epochs=15, seed=4)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    # separable classes: cross-entropy creeps down for ever; tol turns that into a stop
    labels = (x[:, 0] > 0).long()
    def creeping(tol):
        return fit_tabular(build_mlp(2, 2, 2, 16, seed=0), x, labels, xv, (xv[:, 0] > 0).long(),
                           loss="cross_entropy", lr=1e-2, max_epochs=300, patience=5, tol=tol, seed=0)
    with_tol, without, huge = creeping(1e-2), creeping(0.0), creeping(1e9)
    assert with_tol.stopped_early and with_tol.epochs < without.epochs          # the small gains no longer count
    assert huge.stopped_early and huge.epochs == 5                             # no gain counts: patience, then stop


def test_patience_running_out_at_the_last_epoch_is_a_stop():
    x, y, xv, yv = _toy_regression()
    result = fit_tabular(build_mlp(2, 1, 2, 16, seed=0), x, y, xv, yv, lr=1e-12, max_epochs=5, patience=5, seed=0)
    assert result.epochs == 5 and result.stopped_early                # no improvement by tol in 5 epochs
    result = fit_tabular(build_mlp(2, 1, 2, 16, seed=0), x, y, xv, yv, lr=1e-12, max_epochs=5, patience=6, seed=0)
    assert result.epochs == 5 and not result.stopped_early            # max_epochs came first


def test_fit_tabular_keeps_a_warm_start_that_training_does_not_improve():
    x, y, xv, yv = _toy_regression()
    model = build_mlp(2, 1, 2, 16, seed=0)
    fit_tabular(model, x, y, xv, yv, lr=1e-2, max_epochs=100, patience=10, seed=0)
    trained = [p.detach().clone() for p in model.parameters()]
    result = fit_tabular(model, x, y, xv, yv, lr=1.0, max_epochs=3, patience=1, seed=0)   # a destructive lr
    assert result.best_epoch == 0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), trained))


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=0), "lr must be > 0"), (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(patience=1.5), "patience must be an integer"), (dict(loss="hinge"), "unknown loss 'hinge'"),
    (dict(tol=-1), "tol must be >= 0"),
    (dict(label_smoothing=1.0), r"label_smoothing must be a number with 0 <= label_smoothing < 1, got 1\.0"),
    (dict(label_smoothing=0.1), "label_smoothing applies to loss='cross_entropy', got label_smoothing=0.1 with "
                                "loss='mse'"),
])
def test_fit_tabular_rejects_bad_settings(kwargs, match):
    x, y, xv, yv = _toy_regression()
    with pytest.raises(ValueError, match=match):
        fit_tabular(build_mlp(2, 1, 1, 4), x, y, xv, yv, **kwargs)
    with pytest.raises(ValueError, match="as many y_train as x_train rows"):
        fit_tabular(build_mlp(2, 1, 1, 4), x, y[:-1])


def test_label_smoothing_smooths_the_training_loss_and_early_stopping_watches_the_plain_one():
    """ε keeps the training cross-entropy above the entropy of its targets (1 - ε) one-hot + ε/C, which a
    plain fit of separable classes goes below; the validation loss is the plain cross-entropy."""
    x, _, xv, _ = _toy_regression()
    labels, val_labels = (x[:, 0] > 0).long(), (xv[:, 0] > 0).long()
    eps = 0.3
    target = torch.tensor([1 - eps / 2, eps / 2])
    floor = float(-(target * target.log()).sum())                       # entropy of the smoothed target, C = 2
    final = {}
    for smoothing in (0.0, eps):
        model = build_mlp(2, 2, 2, 16, seed=0)
        result = fit_tabular(model, x, labels, xv, val_labels, loss="cross_entropy", lr=3e-2, max_epochs=60,
                             patience=60, seed=0, label_smoothing=smoothing)
        final[smoothing] = result.history[-1]["train_loss"]
        plain = float(torch.nn.functional.cross_entropy(predict_tabular(model, xv), val_labels))
        assert plain == pytest.approx(result.best_validation_loss, rel=1e-6)
    assert final[0.0] < 0.5 * floor and floor - 1e-6 <= final[eps] < 1.2 * floor


def _with_nan(t):
    t = t.clone()
    t[0, 0] = float("nan")
    return t


@pytest.mark.parametrize("data,match", [
    # load_tabular's y is (N,): F.mse_loss would broadcast (B, 1) against (B,) and train on a wrong loss
    (lambda x, y, xv, yv: (x, y[:, 0], xv, yv), r"targets of shape \(\d+, 1\) .* got \(\d+,\); reshape"),
    (lambda x, y, xv, yv: (_with_nan(x), y, xv, yv), "x_train contains 1 NaN"),
    (lambda x, y, xv, yv: (x, y, xv, _with_nan(yv)), "y_val contains 1 NaN"),
    (lambda x, y, xv, yv: (x.numpy(), y, xv, yv), "x_train as a float torch.Tensor .* got ndarray"),
    (lambda x, y, xv, yv: (x.double(), y, xv, yv), "x_train are torch.float64 but the layer's parameters are torch.float32"),
    (lambda x, y, xv, yv: (x, y, xv[:5], yv), "as many y_val as x_val rows"),
    (lambda x, y, xv, yv: (torch.cat([x, x], 1), y, xv, yv), "the model takes 2 features but x_train has 4"),
])
def test_fit_tabular_names_bad_data(data, match):
    x, y, xv, yv = data(*_toy_regression())
    with pytest.raises(ValueError, match=match):
        fit_tabular(build_mlp(2, 1, 1, 4), x, y, xv, yv, max_epochs=1)


def test_fit_tabular_wants_class_indices_for_cross_entropy():
    with pytest.raises(ValueError, match="int64 tensor \\(N,\\) of class indices"):
        fit_tabular(build_mlp(2, 2, 1, 4), *_toy_regression()[:2], loss="cross_entropy", max_epochs=1)


# ---------------------------------------------------------------------------------------------- MN Table 2

SMALL = dict(folds=2, neighbors=(3, 10), layers=(2,), widths=(16,), temperatures=(0.3,), max_epochs=10)


def test_cross_validation_runs_reports_and_tests():
    result = cross_validate_regression(RegressionCVConfig(**SMALL))
    s = result.summary()
    for key in ("knn_mse", "mlp_mse", "mn_mse", "folds", "seconds", "mn_vs_mlp_pvalue", "chosen"):
        assert key in s
    assert s["dataset"] == "diabetes" and s["n"] == 442 and s["d"] == 10 and s["folds"] == 2
    assert len(result.folds) == 2 and result.mn_mse.shape == (2,)
    for row in result.folds:
        assert row["k"] in (3, 10) and (row["layers"], row["width"]) == (2, 16) and row["temperature"] == 0.3
        assert row["train_rows"] + row["validation_rows"] + row["test_rows"] == 442
        assert 0.2 < row["knn_mse"] < 1.5 and 0.2 < row["mn_mse"] < 1.5    # standardised target: variance 1
    assert np.isfinite(result.ttests["mn_vs_mlp"]["statistic"])


def test_every_mlp_size_of_the_grid_is_kept_with_its_test_error_and_the_chosen_one_is_among_them():
    """For the capacity figure (MN sec. 4.3): every size searched, its weights, validation loss and test
    MSE; the MLP the fold reports is the grid's size with the lowest validation loss."""
    result = cross_validate_regression(RegressionCVConfig(**{**SMALL, "layers": (2, 3), "widths": (8, 16)}))
    for row in result.folds:
        grid = row["mlp_grid"]
        assert [(g["layers"], g["width"]) for g in grid] == [(2, 8), (2, 16), (3, 8), (3, 16)]
        assert [g["parameters"] for g in grid] == [10 * 8 + 8 + 8 + 1, 10 * 16 + 16 + 16 + 1,
                                                   10 * 8 + 8 + 8 * 8 + 8 + 8 + 1, 10 * 16 + 16 + 16 * 16 + 16 + 16 + 1]
        chosen = min(grid, key=lambda g: g["validation_loss"])
        assert (chosen["layers"], chosen["width"]) == (row["layers"], row["width"])
        assert chosen["test_mse"] == row["mlp_mse"] and chosen["validation_loss"] == row["mlp_validation_loss"]
    fig = regression_viz.capacity_figure(result)
    assert list(fig.data[0].x) == [97, 169, 193, 465]                          # in order of size
    assert fig.data[0].y[1] == pytest.approx(np.mean([row["mlp_grid"][2]["test_mse"] for row in result.folds]))
    assert [trace.y[0] for trace in fig.data[1:]] == pytest.approx([result.mlp_mse.mean(), result.mn_mse.mean()])
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_knn_k_is_the_one_with_the_lowest_validation_mse():
    """kNN's k is the argmin over `neighbors` of the validation MSE, recomputed here on each fold's own
    split (the fold's fit rows, standardised with its training rows), and its validation MSE is kept."""
    from sklearn.model_selection import KFold, train_test_split
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.preprocessing import StandardScaler

    data = load_tabular("diabetes", max_rows=150)
    config = RegressionCVConfig(**{**SMALL, "neighbors": (1, 3, 10, 40), "max_epochs": 1})
    result = cross_validate_regression(config, data=data)
    x, y = data.x, data.y.reshape(data.n, -1)
    for fold, (train_index, _) in enumerate(KFold(2, shuffle=True, random_state=config.seed).split(x)):
        fit_index, val_index = train_test_split(train_index, test_size=config.validation_fraction,
                                                random_state=config.seed + fold)
        x_scaler, y_scaler = StandardScaler().fit(x[train_index]), StandardScaler().fit(y[train_index])
        scores = {}
        for k in config.neighbors:
            knn = KNeighborsRegressor(n_neighbors=k).fit(x_scaler.transform(x[fit_index]), y_scaler.transform(y[fit_index]))
            scores[k] = float(np.mean((knn.predict(x_scaler.transform(x[val_index])) - y_scaler.transform(y[val_index])) ** 2))
        best = min(scores, key=scores.get)
        assert sorted(scores.values())[1] > 1.01 * scores[best], f"fold {fold}: no clear best k {scores}"
        row = result.folds[fold]
        assert row["k"] == best, f"fold {fold}: chose k={row['k']}, validation MSE per k {scores}"
        assert row["knn_validation_mse"] == pytest.approx(scores[best], rel=1e-4)


def test_test_folds_never_influence_the_choices():
    """Scrambling the targets of the test rows changes no choice and no validation loss."""
    base = load_tabular("diabetes", max_rows=150)
    config = RegressionCVConfig(**{**SMALL, "layers": (1, 2), "temperatures": (0.1, 1.0), "max_epochs": 15})
    first = cross_validate_regression(config, data=base)
    from sklearn.model_selection import KFold
    _, test_index = next(iter(KFold(2, shuffle=True, random_state=0).split(base.x)))
    y = base.y.copy()
    y[test_index] = np.random.default_rng(1).normal(size=len(test_index)) * 5
    second = cross_validate_regression(config, data=dataclasses.replace(base, y=y))
    row_a, row_b = first.folds[0], second.folds[0]
    for key in ("k", "layers", "width", "temperature", "knn_validation_mse", "mlp_validation_loss",
                "mn_validation_loss"):
        assert row_a[key] == pytest.approx(row_b[key], rel=1e-6), key
    assert row_a["mn_mse"] != pytest.approx(row_b["mn_mse"])              # ... while the test MSE moves


def test_cv_config_validation_and_custom_tables():
    with pytest.raises(ValueError, match="unknown dataset 'boston'"):
        RegressionCVConfig(dataset="boston")
    with pytest.raises(ValueError, match="folds must be >= 2, got 1"):
        RegressionCVConfig(folds=1)
    with pytest.raises(ValueError, match="validation_fraction must be > 0"):
        RegressionCVConfig(validation_fraction=0.0)
    with pytest.raises(ValueError, match="temperatures must list at least one value"):
        RegressionCVConfig(temperatures=())
    assert RegressionCVConfig(temperatures=0.2).temperatures == (0.2,)
    with pytest.raises(ValueError, match="unknown similarity 'euclid'"):
        RegressionCVConfig(similarity="euclid")                        # before any fold is fitted
    assert RegressionCVConfig(widths="64, 128").widths == (64, 128)          # papermill's text, read as a list
    with pytest.raises(ValueError, match="widths must be a list of integers .* got 'abc'"):
        RegressionCVConfig(widths="abc")
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 2147483647, got -1"):
        RegressionCVConfig(seed=-1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    table = TabularData("two_targets", x, np.stack([x[:, 0], x[:, 1] ** 2], 1), ["a", "b", "c"], ["u", "v"])
    tiny = TabularData("tiny", x[:4], x[:4, :1], ["a", "b", "c"], ["u"])
    with pytest.raises(ValueError, match="tiny has 4 rows: 2 folds leave 2 training rows per fold and 1 to fit on"):
        cross_validate_regression(RegressionCVConfig(**SMALL), data=tiny)
    with pytest.raises(ValueError, match="tiny has 4 rows, fewer than the 5 folds asked: .* folds must be at most 4"):
        cross_validate_regression(RegressionCVConfig(**{**SMALL, "folds": 5}), data=tiny)
    # scikit-learn rounds the validation share up, so a 1 % share of 30 rows still leaves 29 to fit on
    assert cross_validate_regression(RegressionCVConfig(**{**SMALL, "validation_fraction": 0.01}), data=table).n == 60
    with pytest.raises(ValueError, match=r"no k in neighbors \(500,\) is <= the \d+ rows kNN fits on in fold 0"):
        cross_validate_regression(RegressionCVConfig(**{**SMALL, "neighbors": (500,)}), data=table)
    result = cross_validate_regression(RegressionCVConfig(**SMALL), data=table)
    assert result.dataset == "two_targets" and result.targets == 2 and result.folds[0]["entries"] == 24


def test_fit_tabular_does_not_depend_on_the_callers_random_state():
    """Seeded means seeded: a model that draws random numbers while training (entry dropout) gives the same
    numbers whatever the global generator's state before the call."""
    from nslviz.regression import MetaNeighborhoodsMLP
    from nslviz.training.tabular import fit_tabular
    x, y = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), torch.randn(64, 1)
    results = []
    for outside in (1, 2):
        torch.manual_seed(7)
        model = MetaNeighborhoodsMLP(3, 1, layers=2, width=8, entries=16, entry_dropout=0.5)
        torch.manual_seed(outside)                                        # the caller's state differs
        fit_tabular(model, x, y, max_epochs=3, seed=4)
        results.append(model.network(x))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def test_train_steps_refuses_snapshots_it_would_never_reach():
    from nslviz.training.steps import train_steps
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match=r"snapshot steps \[7\] lie outside 0..5"):
        train_steps(model, torch.randn(8, 2), torch.randn(8, 1), torch.nn.functional.mse_loss, steps=5, batch_size=4,
                    lr=1e-2, generator=torch.Generator(), snapshot_steps=[0, 5, 7], snapshot=lambda *_: None)


def test_train_steps_cosine_decays_the_rate_to_zero():
    """cosine=True: the last update is taken at a rate near 0, so a model trained one step longer
    barely moves at the end; at a constant rate the last step is as large as any."""
    from nslviz.training.steps import train_steps
    x, y = torch.randn(16, 2), torch.randn(16, 1)

    def last_move(cosine: bool) -> float:
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        before = {}
        train_steps(model, x, y, torch.nn.functional.mse_loss, steps=50, batch_size=4, lr=0.1,
                    generator=torch.Generator().manual_seed(0), cosine=cosine, snapshot_steps=[49],
                    snapshot=lambda *_: before.update(w=model.weight.detach().clone()))
        return float((model.weight.detach() - before["w"]).abs().max())

    assert last_move(cosine=True) < 1e-3 < last_move(cosine=False)


def test_the_regression_model_defaults_are_appendix_bs():
    """T = 0.1 (Appendix B) and every inner step size |α| starting at 0.01 (chosen on diabetes)."""
    model = MetaNeighborhoodsMLP(3, 1, entries=10)
    assert model.attention.temperature == pytest.approx(0.1)
    torch.testing.assert_close(torch.stack(list(model.inner_step_sizes.values())), torch.full((4,), 0.01))
