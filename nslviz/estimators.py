"""scikit-learn estimators for Meta-Neighborhoods on tables (MN sec. 4.3, Appendix B).

    from nslviz.estimators import MetaNeighborsRegressor
    model = MetaNeighborsRegressor(random_state=0).fit(X_train, y_train)
    model.predict(X_test); model.score(X_test, y_test)
    cross_val_score(MetaNeighborsRegressor(), X, y, cv=5)
    make_pipeline(SimpleImputer(), MetaNeighborsRegressor())
    GridSearchCV(MetaNeighborsRegressor(), {"temperature": [0.1, 0.3]})

Both estimators wrap `nslviz.regression.MetaNeighborhoodsMLP` (an MLP f_φ finetuned per input on an
induced dictionary in input space) and train it with `nslviz.training.tabular.fit_tabular`, the same
loop the MN Table 2 experiment uses: AdamW, mini-batches, early stopping on a held-out
`validation_fraction` of the training rows with `patience` epochs, best weights restored.

Inputs are standardised inside `fit` (and targets, for the regressor); predictions are returned in
the original units. Everything is seeded by `random_state` (an int gives the same model every time;
None draws a seed). Training runs on `device` ("cpu" by default: these tables are small, and CPU
results are bit-for-bit reproducible).

Defaults that depend on the data (resolved in `fit`, stored in `entries_`, `batch_size_`, `temperature_`):
  entries="auto"     S = 1000 (App. B) when fit gets 1000 rows or more, else one entry per training
                     row (`default_entries`). Entries cost time and memory: about 4·S·(d + k) floats
                     for the dictionary, 3·S·(d + hidden units) for the network on the entries and
                     (2 + 2·layers)·batch·S for the attention (`regression.mlp_memory`); fit refuses,
                     before allocating, an S whose estimate exceeds the memory available.
  batch_size="auto"  min(128, max(16, rows // 4)): the paper's 128 on tables of 512 rows and more;
                     smaller tables still get at least 4 steps per epoch, so that `patience`
                     (counted in epochs) is not a handful of optimiser steps.
  temperature="auto" T = 1/√d for cosine similarity (`default_temperature`): the paper's T = 0.1 at
                     d = 100; broader attention on low-dimensional tables, where T = 0.1 overfits within
                     a few epochs (a 3-feature sine table: R² 0.45 with T = 0.1, 0.94 with 1/√3).

Differences from the MN Table 2 experiment (`nslviz.training.tabular.cross_validate_regression`, which
follows Appendix B): temperature "auto" instead of a T searched on validation; `tol` = 1e-4 and
`max_epochs` = 200 as in scikit-learn's MLPs (a stop on separable classes, whose cross-entropy creeps
down for ever); 10% of the rows held out for early stopping; several targets allowed (y of shape (n, k)).

Speed: each epoch costs O(rows x S x width). For many small fits (grid searches, cross-validation) on
a CPU, `torch.set_num_threads(1)` is usually fastest, and much faster when the CPU is shared.

scikit-learn's `check_estimator` passes in full for both estimators; no check is skipped
(tests/test_estimators.py runs it with `parametrize_with_checks`). The estimators declare, through
`__sklearn_tags__`, that they do not accept NaN (use an imputer in a pipeline) and that the
regressor supports multi-output targets.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from ._checks import is_integer, is_number
from .similarity import SIMILARITIES
from .training.distributed import resolve_device
from .training.tabular import build_meta_neighborhoods_mlp, default_entries, fit_tabular, predict_tabular

DEFAULT_BATCH_SIZE = 128      # MN Appendix B


def default_temperature(features: int, similarity: str = "cosine") -> float:
    """temperature="auto": T = 1/√d for cosine similarity. The cosine similarity of two random directions
    in d dimensions spreads by about 1/√d, so T = 1/√d makes the attention equally sharp in any
    dimension; it is the paper's T = 0.1 (App. B) at d = 100 (its Table 2 sets have d = 80 to 384).
    1.0 for the other similarities."""
    return 1.0 / float(np.sqrt(features)) if similarity == "cosine" else 1.0


class _MetaNeighborsBase(BaseEstimator):
    """Parameters shared by the regressor and the classifier (see their docstrings)."""

    def __init__(self, layers=2, width=64, entries="auto", temperature="auto", step_size_init=0.01,
                 similarity="cosine", learning_rate=1e-3, batch_size="auto", weight_decay=0.0,
                 max_epochs=200, patience=10, tol=1e-4, validation_fraction=0.1, random_state=None,
                 device="cpu", verbose=False):
        self.layers = layers
        self.width = width
        self.entries = entries
        self.temperature = temperature
        self.step_size_init = step_size_init
        self.similarity = similarity
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- validation of the hyper-parameters (at fit time, as scikit-learn does) --------------------

    def _check_params(self) -> None:
        def integer(name, minimum, auto=False):
            value = getattr(self, name)
            if auto and isinstance(value, str) and value == "auto":
                return
            if not is_integer(value) or value < minimum:
                expected = f"an integer >= {minimum}" + (" or 'auto'" if auto else "")
                raise ValueError(f"{type(self).__name__}: {name} must be {expected}, got {value!r}")

        def positive(name, allow_zero=False, auto=False):
            value = getattr(self, name)
            ok = is_number(value) and np.isfinite(value) and \
                (value >= 0 if allow_zero else value > 0)
            if not ok:
                bound = (">= 0" if allow_zero else "> 0") + (" or 'auto'" if auto else "")
                raise ValueError(f"{type(self).__name__}: {name} must be a finite number {bound}, got {value!r}")

        integer("layers", 1)
        integer("width", 1)
        integer("entries", 1, auto=True)
        integer("batch_size", 1, auto=True)
        integer("max_epochs", 1)
        integer("patience", 1)
        if not (isinstance(self.temperature, str) and self.temperature == "auto"):
            positive("temperature", auto=True)
        positive("step_size_init")
        positive("learning_rate")
        positive("weight_decay", allow_zero=True)
        positive("tol", allow_zero=True)
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"{type(self).__name__}: unknown similarity {self.similarity!r}; expected one of "
                             f"{', '.join(map(repr, SIMILARITIES))}")
        fraction = self.validation_fraction
        if not (is_number(fraction) and 0 < fraction < 1):
            raise ValueError(f"{type(self).__name__}: validation_fraction must be a number with 0 < "
                             f"validation_fraction < 1 (early stopping needs validation rows), got {fraction!r}")

    # -- the shared fit --------------------------------------------------------------------------

    def _check_enough_samples(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples (one to fit, one to validate for "
                             f"early stopping and to build the dictionary), got n_samples={n}")

    def _fit(self, x: np.ndarray, targets: np.ndarray, output_dim: int, loss: str, split_labels=None):
        """Split off validation rows, resolve the data-dependent defaults, build and train the model.
        targets: standardised (n, k) floats for "mse", class indices (n,) for "cross_entropy"."""
        n = x.shape[0]
        name = type(self).__name__
        self._check_enough_samples(n)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        n_val = min(n - 1, max(1, int(round(self.validation_fraction * n))))
        if split_labels is not None:
            from sklearn.model_selection import train_test_split
            try:                            # keep every class on the training side when possible
                fit_index, val_index = train_test_split(np.arange(n), test_size=n_val, random_state=seed,
                                                        stratify=split_labels)
            except ValueError:
                fit_index, val_index = train_test_split(np.arange(n), test_size=n_val, random_state=seed)
        else:
            order = rng.permutation(n)
            fit_index, val_index = np.sort(order[n_val:]), np.sort(order[:n_val])
        rows = len(fit_index)
        self.entries_ = default_entries(n, rows) if self.entries == "auto" else int(self.entries)
        self.batch_size_ = min(DEFAULT_BATCH_SIZE, max(16, rows // 4)) if self.batch_size == "auto" \
            else int(self.batch_size)
        self.temperature_ = default_temperature(x.shape[1], self.similarity) if self.temperature == "auto" \
            else float(self.temperature)

        device = resolve_device(self.device)
        self.x_scaler_ = StandardScaler().fit(x)
        inputs = torch.as_tensor(self._standardized(self.x_scaler_, x, "X", np.float32), dtype=torch.float32,
                                 device=device)
        target_dtype = torch.float32 if loss == "mse" else torch.int64
        targets = torch.as_tensor(targets, dtype=target_dtype, device=device)
        fit_index_t = torch.as_tensor(fit_index, device=device)
        val_index_t = torch.as_tensor(val_index, device=device)
        self.module_ = build_meta_neighborhoods_mlp(
            x.shape[1], output_dim, self.layers, self.width,
            targets=targets[fit_index_t].cpu() if loss == "mse" else None, entries=self.entries_,
            temperature=self.temperature_, seed=seed, loss=loss, similarity=self.similarity,
            step_size_init=self.step_size_init).to(device)
        self.fit_result_ = fit_tabular(self.module_, inputs[fit_index_t], targets[fit_index_t],
                                       inputs[val_index_t], targets[val_index_t], loss=loss,
                                       lr=self.learning_rate, batch_size=self.batch_size_,
                                       weight_decay=self.weight_decay, max_epochs=self.max_epochs,
                                       patience=self.patience, tol=self.tol, seed=seed, progress=bool(self.verbose),
                                       desc=name)
        if not self.fit_result_.stopped_early:
            warnings.warn(f"{name}: max_epochs={self.max_epochs} reached before the validation loss stopped "
                          f"improving; raise max_epochs (or tol) for a converged model", ConvergenceWarning)
        self.n_iter_ = self.fit_result_.epochs
        self.best_epoch_ = self.fit_result_.best_epoch
        self.best_validation_loss_ = self.fit_result_.best_validation_loss
        self.module_.eval()
        return self

    def _outputs(self, X) -> np.ndarray:
        check_is_fitted(self, "module_")
        x = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        device = next(self.module_.parameters()).device
        # Predictions in float64, from a float64 copy of the float32-trained model: a row's output must
        # not depend on the other rows of X. In float32, matrix products of different row counts round
        # differently on some CPUs (AVX-512: 2e-7 relative), above scikit-learn's 1e-7 for float64.
        model = copy.deepcopy(self.module_).double()
        inputs = torch.as_tensor(self._standardized(self.x_scaler_, x, "X", np.float64), dtype=torch.float64,
                                 device=device)
        return predict_tabular(model, inputs).cpu().numpy()

    def _standardized(self, scaler: StandardScaler, values: np.ndarray, name: str, dtype) -> np.ndarray:
        """scaler.transform(values), refused when it overflows: finite but huge values (1e308) make the
        variance, or the standardised values in the model's `dtype`, infinite."""
        standardized = scaler.transform(values)
        if not (np.isfinite(standardized).all() and np.abs(standardized).max(initial=0) <= np.finfo(dtype).max):
            raise ValueError(f"{type(self).__name__}: standardising {name} overflowed: its values reach "
                             f"{np.abs(values).max():.3g}, and their variance or their distance from the mean in "
                             f"standard deviations is not a finite {np.dtype(dtype).name}; rescale {name} (divide it "
                             f"by a power of ten) before fit and predict")
        return standardized

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


class MetaNeighborsRegressor(RegressorMixin, _MetaNeighborsBase):
    """Meta-Neighborhoods regression (MN sec. 4.3, Appendix B) as a scikit-learn regressor.

    An MLP (`layers` Linear layers, `width` ReLU units) is finetuned, for every input, by one gradient
    step on `entries` learned induced neighbors (keys in the standardised input space, values
    initialised uniformly in the range of the standardised targets), weighted by a softmax over their
    `similarity` (cosine) with the input at temperature `temperature`; the network, the dictionary and
    the per-layer inner step sizes (initial |α| = `step_size_init`) are learned through that step.

    Parameters
    ----------
    layers : int, default=2          Linear layers of f_φ (2 = one hidden layer).
    width : int, default=64          units of every hidden layer.
    entries : int or "auto"          S, the dictionary size; "auto" = 1000 from 1000 rows on, else
                                     one entry per training row.
    temperature : float or "auto"    T of the attention softmax; "auto" = 1/√d (0.1 at d = 100, App. B).
    step_size_init : float, default=0.01  initial inner step size |α| (learned).
    similarity : {"cosine", "neg_sq_euclidean", "dot"}, default="cosine".
    learning_rate : float, default=1e-3   AdamW learning rate (Appendix B).
    batch_size : int or "auto"       "auto" = min(128, max(16, training rows // 4)).
    weight_decay : float, default=0  decoupled weight decay on the network weights (not the dictionary).
    max_epochs : int, default=200    upper bound on epochs, as scikit-learn's MLPs (max_iter=200); early
                                     stopping ends training sooner on real tables (diabetes: < 40
                                     epochs). A ConvergenceWarning says when the bound was reached.
    patience : int, default=10       epochs without a better validation loss before stopping (App. B).
    tol : float, default=1e-4        a validation loss must drop by more than tol to count as better
                                     (as scikit-learn's MLPs; needed on separable classes).
    validation_fraction : float, default=0.1  rows held out for early stopping (at least one).
    random_state : int, RandomState or None   seeds the split, the initialisation and the batches.
    device : str, default="cpu"      "cpu", "cuda" or "auto".
    verbose : bool, default=False    a progress bar over epochs.

    Attributes
    ----------
    module_ : MetaNeighborhoodsMLP   the trained model (on standardised data).
    n_features_in_, feature_names_in_ : as in every scikit-learn estimator.
    entries_, batch_size_, temperature_ : the values used.
    n_iter_ : epochs run.   best_epoch_, best_validation_loss_ : the epoch kept and its loss.
    fit_result_ : TabularFitResult with the per-epoch history.
    x_scaler_, y_scaler_ : the StandardScalers fitted on the training data.

    Input checks (scikit-learn's): NaN/inf, sparse, complex or 1-D X, X with a different number of
    features at predict time, and fewer than 2 rows each raise a ValueError (TypeError for sparse
    input) saying what was expected. No check of `check_estimator` is skipped.
    """

    def fit(self, X, y):
        self._check_params()
        x, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32])
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        targets = y.reshape(y.shape[0], -1)
        self.y_scaler_ = StandardScaler().fit(targets)
        return self._fit(x, self._standardized(self.y_scaler_, targets, "y", np.float32), targets.shape[1], "mse")

    def predict(self, X) -> np.ndarray:
        """Predictions in the units of y: shape (n,) for a 1-D y, (n, k) for k targets."""
        check_is_fitted(self, "module_")
        outputs = self.y_scaler_.inverse_transform(self._outputs(X))
        return outputs[:, 0] if self._y_ndim == 1 else outputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class MetaNeighborsClassifier(ClassifierMixin, _MetaNeighborsBase):
    """Meta-Neighborhoods classification on tables, as a scikit-learn classifier.

    The same model as MetaNeighborsRegressor with one output per class, trained with cross-entropy;
    the dictionary values are learned class distributions v_j = softmax(10 · V_raw_j) (as in the
    official MN code), and the inner step minimises the attention-weighted soft cross-entropy of the
    entries. `predict_proba` is the softmax of the finetuned network's outputs. Parameters and
    attributes as for MetaNeighborsRegressor, plus `classes_`. Binary problems use two outputs.
    """

    def fit(self, X, y):
        self._check_params()
        x, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        self._check_enough_samples(x.shape[0])
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in the data, but the "
                             f"data contains only one class: {self.classes_.tolist()[0]!r}")
        labels = encoder.transform(y)
        return self._fit(x, labels, len(self.classes_), "cross_entropy", split_labels=labels)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, n_classes), columns in the order of `classes_`."""
        logits = self._outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "module_")
        return self.classes_[np.argmax(self._outputs(X), axis=1)]
