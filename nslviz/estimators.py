"""scikit-learn estimators for Meta-Neighborhoods on tables (MN sec. 4.3, Appendix B).

    from nslviz.estimators import MetaNeighborsRegressor
    model = MetaNeighborsRegressor(random_state=0).fit(X_train, y_train)
    model.predict(X_test); model.score(X_test, y_test)
    cross_val_score(MetaNeighborsRegressor(), X, y, cv=5)
    make_pipeline(SimpleImputer(), MetaNeighborsRegressor())
    GridSearchCV(MetaNeighborsRegressor(), {"temperature": [0.1, 0.3]})

Two models, chosen with `space`:
  space="feature" (default)  `nslviz.feature_space.MetaNeighborhoodsFeatureMLP`: an MLP trunk (`layers - 1`
                     ReLU layers of `width` units) and a linear last layer finetuned per input on a
                     dictionary of `entries` induced neighbors in the trunk's feature space, in closed
                     form (MN eq. (1)-(3), the split of the paper's image models);
  space="input"      `nslviz.regression.MetaNeighborhoodsMLP`: the whole MLP finetuned per input on a
                     dictionary in input space (MN sec. 4.3, Appendix B).
Both are trained with `nslviz.training.tabular.fit_tabular`: AdamW, mini-batches, early stopping on a
held-out `validation_fraction` of the training rows with `patience` epochs, best weights restored
(for classes the split is stratified; where it cannot be, every class keeps a row among the fitting rows).

`n_estimators` = K (3 by default) trains K such models (members), member k with the k-th seed drawn
from `random_state` and its own split into fitting and early-stopping rows, and averages them:
    ŷ(x) = 1/K Σ_k ŷ_k(x)                       (regression, standardised units)
    p(c | x) = 1/K Σ_k softmax(f_k(x))_c         (classification; decision_function = log p)
Member 0 is the model that n_estimators=1 fits. The work grows K-fold (the members of a small fit train
at once: Speed, below); K = 3 and learning_rate 1e-2 were chosen together on validation splits, within
5x the fit time of scikit-learn's default MLP.

The trunk is two hidden layers of 128 units for the regressor and of 256 for the classifier (wider was
level or better on every classification table's validation splits, and worse on a regression table's).

Inputs are standardised inside `fit` (and targets, for the regressor); predictions are returned in
the original units. Everything is seeded by `random_state` (an int gives the same model every time,
also when several fits run at once in threads; None draws a seed), and `fit` leaves torch's global
random state as it found it. Training runs on `device` ("cpu" by default: these tables are small, and CPU
results are bit-for-bit reproducible).

Defaults that depend on the data (resolved in `fit`, stored in `entries_`, `batch_size_`,
`temperature_`, `step_size_init_`):
  entries="auto"     space="feature": S = min(128, training rows); space="input": S = 1000 (App. B) when
                     fit gets 1000 rows or more, else one entry per training row (`default_entries`).
                     Entries cost time and memory (`regression.mlp_memory`): fit refuses, before
                     allocating, an S whose estimate exceeds the memory available.
  batch_size="auto"  min(200, training rows), as scikit-learn's MLPs.
  temperature="auto" cosine similarity (`default_temperature`): space="input": T = 1/√d, d the number
                     of inputs: the paper's T = 0.1 at d = 100; broader attention on low-dimensional
                     inputs, where T = 0.1 overfits within a few epochs (a 3-feature sine table: R² 0.45
                     with T = 0.1, 0.94 with 1/√3). space="feature": T = 0.05·√(128/width), 0.05 at
                     width 128 (chosen on validation splits against 1/√128 ≈ 0.088 and 0.2; the
                     regressor's default width) and 0.035 at 256 (the classifier's), scaled with
                     1/√width as the spread of cosine similarities (below).
  step_size_init="auto"  initial inner step |α|: 0.2 in feature space (chosen on validation splits
                     against the official MN code's 0.05 for its last-layer finetuning, and 0.5), 0.01
                     in input space (chosen on diabetes).

How the estimators compare with scikit-learn's MLP and kNN on eight public tables: docs/estimators.md
(benchmarks/bench_estimators.py); how the defaults were chosen: docs/estimators-selection.md.

Differences from the MN Table 2 experiment (`nslviz.experiments.regression_table.cross_validate_regression`, which
follows Appendix B): above all, the default space="feature" (an MLP trunk with the dictionary in its
feature space, and only the last layer finetuned per input, as the paper's image models do) where
Appendix B keeps the dictionary in input space and finetunes the whole network (space="input", the
paper's regression model); then S = min(128, rows) entries instead of 1000, an initial step |α| of 0.2,
and a trunk of 128 units (256 for the classifier); an average of 3 models; learning rate 1e-2 instead
of 1e-3; temperature "auto" instead of a T searched on validation in every fit; `tol` = 1e-4 and `max_epochs` = 200 as in scikit-learn's MLPs
(a stop on separable classes, whose cross-entropy creeps down for ever); 10% of the rows held out for
early stopping; several targets allowed (y of shape (n, k)); the classifier trains on labels smoothed
by `label_smoothing` = 0.1 (without it, its members are certain of every fitting row within about ten
epochs and early stopping ends them after 4 to 12 on digits).

Speed: each epoch of each member costs O(rows x S x width). `fit` runs on one torch intra-op thread
when a training step is small (`fit_threads`; torch's setting is restored afterwards), so a small fit
does not slow down with more threads, and n_jobs > 1 in GridSearchCV or cross_val_score runs one
thread per job. The members of such a fit train at once, one per intra-op thread torch had
(`parallel_members`: 2 on a 2-core CPU, 1 inside a joblib worker); they are seeded one by one, so the
fitted model is the same as when they train one after the other.

warm_start=True: a second `fit` continues from the fitted model (and keeps its scalers) when the
data has the same number of features and the same classes and every setting the members are built
with is the same (space, layers, width, entries, similarity, temperature, step_size_init,
dictionary_init, device, n_estimators); otherwise the model is built afresh, with a warning naming
what changed. entries="auto" and temperature="auto" follow the data (entries: one per training row,
up to 128 in the feature space), so on a small table another number of rows builds afresh. The
training settings (learning_rate, max_epochs, patience, ...) may change between warm fits.

A loss that turns NaN or infinite stops `fit` with a FloatingPointError naming learning_rate; a fit
whose every epoch ends with a validation loss more than ten times that of the model as built (a
learning rate too large, the losses still finite) warns with a ConvergenceWarning, as the fitted
model is then the untrained one.

scikit-learn's `check_estimator` passes in full for both estimators; the project skips no check
(tests/test_estimators.py runs it with `parametrize_with_checks`; scikit-learn itself skips its
array-API checks unless SCIPY_ARRAY_API=1 is set). The estimators declare, through
`__sklearn_tags__`, that they do not accept NaN (use an imputer in a pipeline) and that the
regressor supports multi-output targets.
"""
from __future__ import annotations

import copy
import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from ._memory import TooLargeForMemory
from ._threads import torch_threads
from .feature_space import MetaNeighborhoodsFeatureMLP
from .neighborhoods import starting_examples
from .regression import values_in_target_range
from .similarity import SIMILARITIES
from .training.config import DICTIONARY_INITS
from .training.distributed import resolve_device
from .training.tabular import (build_meta_neighborhoods_mlp, default_entries, fit_tabular, predict_tabular,
                               seeded)

SPACES = ("feature", "input")
DEFAULT_BATCH_SIZE = 200      # as scikit-learn's MLPs: min(200, rows)
FEATURE_ENTRIES = 128         # S for space="feature", entries="auto" (at most one per training row)
DEFAULT_STEP_SIZE_INIT = {"feature": 0.2, "input": 0.01}
FEATURE_TEMPERATURE, FEATURE_WIDTH = 0.05, 128    # temperature="auto", space="feature": T at width 128
LABEL_SMOOTHING = 0.1         # the classifier's ε (docs/estimators-selection.md, round 8)
CLASSIFIER_WIDTH = 256        # the classifier's hidden width (docs/estimators-selection.md, rounds 16 and 17); the regressor's is 128
# multiply-adds of one training step below which one intra-op thread is fastest (fit_threads)
ONE_THREAD_WORK = 5e7
# what a warm fit compares with the fitted model's, in the order of `_fit`'s signature
WARM_SIGNATURE = ("space", "number of features", "number of outputs", "loss", "layers", "width", "entries",
                  "similarity", "temperature", "step_size_init", "dictionary_init", "device", "n_estimators",
                  "classes")
DIVERGED_FACTOR = 10    # a fit whose every epoch ends this many times worse than its start has diverged


def _diverged(result) -> bool:
    """Whether training only made the model worse, by DIVERGED_FACTOR at least at every epoch: the best
    model is then the one as built (epoch 0). A short fit that has not yet beaten a good start (a
    dictionary started at the data's examples) is not called diverged."""
    losses = [row["validation_loss"] for row in result.history]
    return result.best_epoch == 0 and len(losses) > 1 and min(losses[1:]) > DIVERGED_FACTOR * losses[0]


def fit_threads(rows: int, features: int, width: int, entries: int) -> int:
    """Intra-op threads for a fit: 1 when a training step is small (then threads only add
    synchronisation, and an oversubscribed CPU slows them further), else torch's current setting."""
    work = min(rows, DEFAULT_BATCH_SIZE) * (features + entries + 2 * width) * width
    return 1 if work < ONE_THREAD_WORK else torch.get_num_threads()


def parallel_members(members: int, threads: int, device: torch.device) -> int:
    """Members trained at once: each small fit (`threads` = 1) on the CPU takes one of torch's intra-op
    threads, up to their number (1 inside a joblib worker of n_jobs > 1, so nothing is oversubscribed).
    Every member's fit is seeded on its own, so the models are the same in any order."""
    if threads != 1 or device.type != "cpu":
        return 1
    return max(1, min(members, torch.get_num_threads()))


def default_temperature(features: int, similarity: str = "cosine", space: str = "input") -> float:
    """temperature="auto" for cosine similarity: T = 1/√d in input space. The cosine similarity of two
    random directions in d dimensions spreads by about 1/√d, so T ∝ 1/√d makes the attention equally
    sharp in any dimension; 1/√d is the paper's T = 0.1 (App. B) at d = 100 (its Table 2 sets have d = 80
    to 384). In feature space T = 0.05·√(128/d): sharper, 0.05 at width d = 128 (the regressor's default;
    0.035 at the classifier's 256), chosen on
    validation splits (docs/estimators-selection.md, round 3). 1.0 for the other similarities."""
    if similarity != "cosine":
        return 1.0
    if space == "feature":
        return FEATURE_TEMPERATURE * float(np.sqrt(FEATURE_WIDTH / features))
    return 1.0 / float(np.sqrt(features))


def _split_keeping_every_class(labels: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fitting rows, early-stopping rows) where a stratified split is impossible: one row of every class
    stays among the fitting rows, and up to `n_val` of the others stop early (with no other row, as
    on two rows of two classes, the early-stopping row is a fitting row too)."""
    order = np.random.RandomState(seed).permutation(len(labels))
    _, first = np.unique(labels[order], return_index=True)
    spare = np.ones(len(labels), dtype=bool)
    spare[order[first]] = False                                  # one row of each class: fitting
    others = order[spare[order]]
    if len(others) == 0:
        return np.arange(len(labels)), np.sort(order[:1])
    stop = np.sort(others[:n_val])
    return np.setdiff1d(np.arange(len(labels)), stop), stop


class _MetaNeighborsBase(BaseEstimator):
    """Parameters shared by the regressor and the classifier (see their docstrings)."""

    def __init__(self, space="feature", layers=3, width=128, entries="auto", temperature="auto",
                 step_size_init="auto", similarity="cosine", dictionary_init="random", learning_rate=1e-2,
                 batch_size="auto", weight_decay=0.0, max_epochs=200, patience=10, tol=1e-4,
                 validation_fraction=0.1, n_estimators=3, warm_start=False, random_state=None, device="cpu",
                 verbose=False):
        self.space = space
        self.layers = layers
        self.width = width
        self.entries = entries
        self.temperature = temperature
        self.step_size_init = step_size_init
        self.similarity = similarity
        self.dictionary_init = dictionary_init
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.n_estimators = n_estimators
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- validation of the hyper-parameters (at fit time, as scikit-learn does) --------------------
    # scikit-learn's declarative constraints, checked by `_fit_context` around `fit` (a private
    # scikit-learn API, hence its pin in constraints.txt)
    _parameter_constraints: dict = {
        "space": [StrOptions(set(SPACES))],
        "layers": [Interval(Integral, 1, None, closed="left")],          # >= 2 for space="feature": _check_params
        "width": [Interval(Integral, 1, None, closed="left")],
        "entries": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "temperature": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "step_size_init": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "similarity": [StrOptions(set(SIMILARITIES))],
        "dictionary_init": [StrOptions(set(DICTIONARY_INITS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        # early stopping needs validation rows, and fitting needs the others
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "device": [str, torch.device],                                   # the name is checked by resolve_device
        "verbose": ["verbose"],
    }

    def _check_params(self) -> None:
        """What the constraints cannot say: a bool is not a count (scikit-learn's Interval(Integral) takes
        True as 1), and space="feature" needs a trunk before the finetuned last layer."""
        for name in ("layers", "width", "entries", "batch_size", "max_epochs", "patience", "n_estimators"):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise ValueError(f"{type(self).__name__}: {name} must be an integer >= 1"
                                 f"{' or auto' if name in ('entries', 'batch_size') else ''}, got {value!r}")
        if self.space == "feature" and self.layers < 2:
            raise ValueError(f"{type(self).__name__}: layers must be an integer >= 2, got {self.layers!r} "
                             f"(space='feature' is a trunk of layers - 1 layers and a finetuned last layer)")

    # -- the shared fit --------------------------------------------------------------------------

    def _check_enough_samples(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples (one to fit, one to validate for "
                             f"early stopping and to build the dictionary), got n_samples={n}")

    def _fit(self, x: np.ndarray, targets: np.ndarray, output_dim: int, loss: str, split_labels=None,
             label_smoothing: float = 0.0):
        """Resolve the data-dependent defaults, then build and train `n_estimators` members, each on its
        own seeded split into fitting and early-stopping rows. targets: (n, k) floats in their units for
        "mse" (standardised here), class indices (n,) for "cross_entropy"."""
        n = x.shape[0]
        name = type(self).__name__
        self._check_enough_samples(n)
        rng = check_random_state(self.random_state)
        n_val = min(n - 1, max(1, int(round(self.validation_fraction * n))))
        seeds, splits = [], []
        for _ in range(self.n_estimators):      # member k: the k-th seed and split (member 0 = one model)
            seeds.append(int(rng.randint(np.iinfo(np.int32).max)))
            splits.append(self._split(n, n_val, seeds[-1], rng, split_labels))
        rows = n - n_val
        if self.entries == "auto":
            self.entries_ = default_entries(n, rows) if self.space == "input" else min(FEATURE_ENTRIES, rows)
        else:
            self.entries_ = int(self.entries)
        self.batch_size_ = min(DEFAULT_BATCH_SIZE, rows) if self.batch_size == "auto" else int(self.batch_size)
        attended_width = x.shape[1] if self.space == "input" else self.width
        self.temperature_ = default_temperature(attended_width, self.similarity, self.space) \
            if self.temperature == "auto" else float(self.temperature)
        self.step_size_init_ = DEFAULT_STEP_SIZE_INIT[self.space] if self.step_size_init == "auto" \
            else float(self.step_size_init)

        device = resolve_device(self.device)
        # warm_start: keep the members (and the scalers they were trained with) when their shape still fits
        # and every setting the members were built with (a changed temperature or device builds afresh)
        signature = (self.space, x.shape[1], output_dim, loss, self.layers, self.width, self.entries_,
                     self.similarity, self.temperature_, self.step_size_init_, self.dictionary_init, str(device),
                     self.n_estimators, tuple(getattr(self, "classes_", ())))
        previous = getattr(self, "_signature", None)
        warm = self.warm_start and previous == signature
        if self.warm_start and previous is not None and not warm:
            changed = [what for what, old, new in zip(WARM_SIGNATURE, previous, signature) if old != new]
            warnings.warn(f"{name}: warm_start=True, but this fit's {', '.join(changed)} "
                          f"{'differs' if len(changed) == 1 else 'differ'} from the fitted model's: the members are "
                          f"built afresh", UserWarning)
        if not warm:
            self.x_scaler_ = StandardScaler().fit(x)
            if loss == "mse":
                self.y_scaler_ = StandardScaler().fit(targets)
        if loss == "mse":
            targets = self._standardized(self.y_scaler_, targets, "y", np.float32)
        targets = torch.as_tensor(targets, dtype=torch.float32 if loss == "mse" else torch.int64, device=device)
        inputs = torch.as_tensor(self._standardized(self.x_scaler_, x, "X", np.float32), dtype=torch.float32,
                                 device=device)
        indices = [(torch.as_tensor(fit_index, device=device), torch.as_tensor(val_index, device=device))
                   for fit_index, val_index in splits]
        if not warm:            # built in order: member k's initialisation is seeded by the k-th seed
            self.modules_ = [self._build(x.shape[1], output_dim, loss, inputs[fit_index], targets[fit_index], seed)
                             for seed, (fit_index, _) in zip(seeds, indices)]
        self.n_threads_ = fit_threads(rows, x.shape[1], self.width, self.entries_)
        self.n_parallel_members_ = parallel_members(self.n_estimators, self.n_threads_, device)

        def train(member: int):
            (fit_index, val_index), module = indices[member], self.modules_[member]
            try:
                result = fit_tabular(module, inputs[fit_index], targets[fit_index], inputs[val_index],
                                     targets[val_index], loss=loss, lr=self.learning_rate,
                                     batch_size=self.batch_size_, weight_decay=self.weight_decay,
                                     max_epochs=self.max_epochs, patience=self.patience, tol=self.tol,
                                     seed=seeds[member], label_smoothing=label_smoothing, progress=bool(self.verbose),
                                     desc=f"{name} member {member + 1}", position=member)
            except FloatingPointError as error:               # a NaN or inf loss: no model to keep
                raise FloatingPointError(f"{name}(learning_rate={self.learning_rate!r}), member {member + 1}: "
                                         f"{error}") from None
            module.eval()
            return result

        pool = ThreadPoolExecutor(self.n_parallel_members_)
        try:
            with torch_threads(self.n_threads_):
                self.fit_results_ = list(pool.map(train, range(self.n_estimators)))
        finally:        # an error or Ctrl-C in one member returns at once; the members not started never start
            pool.shutdown(wait=False, cancel_futures=True)
        diverged = sum(_diverged(result) for result in self.fit_results_)
        if diverged and not warm:
            which = "" if self.n_estimators == 1 else f" ({diverged} of {self.n_estimators} members)"
            warnings.warn(f"{name}: training diverged{which}: every epoch's validation loss is more than "
                          f"{DIVERGED_FACTOR} times that of the model as built, so the fitted model is the untrained "
                          f"one; lower learning_rate (now {self.learning_rate:g})", ConvergenceWarning)
        unconverged = sum(not (result.stopped_early or _diverged(result)) for result in self.fit_results_)
        if unconverged:
            which = "" if self.n_estimators == 1 else f" ({unconverged} of {self.n_estimators} members)"
            warnings.warn(f"{name}: max_epochs={self.max_epochs} reached before the validation loss stopped "
                          f"improving{which}; raise max_epochs (or tol) for a converged model", ConvergenceWarning)
        self._signature = signature
        self.module_ = self.modules_[0]
        self.fit_result_ = self.fit_results_[0]
        self.n_iter_ = self.fit_result_.epochs
        self.best_epoch_ = self.fit_result_.best_epoch
        self.best_validation_loss_ = self.fit_result_.best_validation_loss
        history = self.fit_result_.history              # epoch 0 (the weights as built) has no training loss
        self.loss_curve_ = [row["train_loss"] for row in history if "train_loss" in row]
        self.validation_loss_curve_ = [row["validation_loss"] for row in history]
        return self

    @staticmethod
    def _split(n: int, n_val: int, seed: int, rng, split_labels=None) -> tuple[np.ndarray, np.ndarray]:
        """(fitting rows, early-stopping rows) of one member; stratified for classes when possible."""
        if split_labels is not None:
            from sklearn.model_selection import train_test_split
            try:                            # keep every class on the training side when possible
                return tuple(train_test_split(np.arange(n), test_size=n_val, random_state=seed,
                                              stratify=split_labels))
            except ValueError:              # a class of one row, or fewer early-stopping rows than classes
                return _split_keeping_every_class(np.asarray(split_labels), n_val, seed)
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _build(self, features: int, output_dim: int, loss: str, fit_inputs: torch.Tensor,
               fit_targets: torch.Tensor, seed: int):
        """The untrained model, initialised under `seed`, in float32 (whatever torch's default dtype:
        the fit's data are float32) on the device of `fit_inputs`. dictionary_init="data": its entries
        start at `entries_` fitting rows drawn under `seed` (with replacement only when there are fewer
        rows than entries)."""
        try:
            return self._initialized_model(features, output_dim, loss, fit_inputs, fit_targets, seed)
        except TooLargeForMemory as error:
            raise TooLargeForMemory(f"{type(self).__name__} with entries={self.entries_}, layers={self.layers} and "
                                    f"width={self.width} does not fit: {error}") from None

    def _initialized_model(self, features: int, output_dim: int, loss: str, fit_inputs: torch.Tensor,
                           fit_targets: torch.Tensor, seed: int):
        if self.space == "input":
            model = build_meta_neighborhoods_mlp(
                features, output_dim, self.layers, self.width,
                targets=fit_targets.cpu() if loss == "mse" else None, entries=self.entries_,
                temperature=self.temperature_, seed=seed, loss=loss, similarity=self.similarity,
                step_size_init=self.step_size_init_)
        else:
            with seeded(seed):
                model = MetaNeighborhoodsFeatureMLP(features, output_dim, self.layers, self.width, self.entries_,
                                                    temperature=self.temperature_, similarity=self.similarity,
                                                    loss=loss, step_size_init=self.step_size_init_)
                if loss == "mse":           # values U(min y, max y) of the standardised targets (MN App. B)
                    with torch.no_grad():
                        model.dictionary.regression_values.copy_(
                            values_in_target_range(self.entries_, fit_targets.cpu()))
        model = model.to(fit_inputs.device, torch.float32)
        if self.dictionary_init == "data":
            index = starting_examples(fit_inputs.shape[0], self.entries_, torch.Generator().manual_seed(seed))
            index = index.to(fit_inputs.device)
            model.initialize_from_examples(fit_inputs[index], fit_targets[index])
        return model

    def _outputs(self, X) -> np.ndarray:
        """The members' combined outputs for X in float64: the mean prediction (standardised units) for
        regression; for classes the log of the mean of the members' probabilities,
        log (1/K Σ_k softmax(logits_k)), which is the log-softmax of the logits when K = 1."""
        check_is_fitted(self, "module_")
        x = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        device = next(self.module_.parameters()).device
        inputs = torch.as_tensor(self._standardized(self.x_scaler_, x, "X", np.float64), dtype=torch.float64,
                                 device=device)
        # Predictions in float64, from float64 copies of the float32-trained members: a row's output must
        # not depend on the other rows of X. In float32, matrix products of different row counts round
        # differently on some CPUs (AVX-512: 2e-7 relative), above scikit-learn's 1e-7 for float64.
        outputs = torch.stack([predict_tabular(copy.deepcopy(module).double(), inputs)
                               for module in self.modules_])                              # (K, n, C)
        if isinstance(self, ClassifierMixin):
            outputs = torch.logsumexp(torch.log_softmax(outputs, dim=-1), dim=0) - float(np.log(len(outputs)))
        else:
            outputs = outputs.mean(dim=0)
        return outputs.cpu().numpy()

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
    """Meta-Neighborhoods regression (MN eq. (1)-(3); sec. 4.3, Appendix B) as a scikit-learn regressor.

    space="feature" (default): an MLP trunk maps the standardised inputs to features z; its linear last
    layer is finetuned, for every input, by one gradient step on `entries` learned induced neighbors
    (keys in feature space, values initialised uniformly in the range of the standardised targets),
    weighted by a softmax over their `similarity` (cosine) with z at temperature `temperature`:
        φ_i = φ - α ∇_φ Σ_j ω(z_i, k_j) L(f_φ(k_j), v_j),   ŷ_i = f_{φ_i}(z_i)        MN eq. (1)-(3)
    space="input": the dictionary lives in input space and the whole MLP is finetuned (MN Table 2).
    The network, the dictionary and the inner step sizes are learned through that step.

    Parameters
    ----------
    space : {"feature", "input"}, default="feature"   where the dictionary lives (see above).
    layers : int, default=3          Linear layers in all (3 = two hidden layers; >= 2 for "feature").
    width : int, default=128         units of every hidden layer (the feature width in "feature"); the
                                     classifier's default is 256 (docs/estimators-selection.md, rounds 16 and 17).
    entries : int or "auto"          S, the dictionary size; "auto": min(128, training rows) in
                                     "feature"; in "input" 1000 from 1000 rows on, else one per row.
    temperature : float or "auto"    T of the attention softmax; "auto": 0.05·√(128/width) in "feature"
                                     (0.05 at width 128, 0.035 at the classifier's 256), 1/√d in "input"
                                     (0.1 at d = 100, App. B); 1.0 for the other similarities.
    step_size_init : float or "auto" initial inner step size |α| (learned); "auto": 0.2 "feature",
                                     0.01 "input".
    similarity : {"cosine", "neg_sq_euclidean", "dot"}, default="cosine".
    dictionary_init : {"random", "data"}, default="random"   "random": keys N(0, 0.01²) and the values
                                     above; "data": every entry starts at a fitting row (key: its
                                     features under the initial trunk, or its inputs in "input";
                                     value: its label or target). Not the default: higher on 2 tables'
                                     validation splits, lower on 6 (docs/estimators-selection.md, round 19).
    learning_rate : float, default=1e-2   AdamW learning rate (10x Appendix B's 1e-3: with three
                                     members, more accurate on validation splits than 3e-3 and 5e-3,
                                     and fewer epochs; docs/estimators-selection.md, rounds 1 and 2).
    batch_size : int or "auto"       "auto" = min(200, training rows), as scikit-learn's MLPs.
    weight_decay : float, default=0  decoupled weight decay on the network weights (not the dictionary).
    max_epochs : int, default=200    upper bound on epochs, as scikit-learn's MLPs (max_iter=200); early
                                     stopping ends training sooner. A ConvergenceWarning says when the
                                     bound was reached.
    patience : int, default=10       epochs without a better validation loss before stopping (App. B).
    tol : float, default=1e-4        a validation loss must drop by more than tol to count as better
                                     (as scikit-learn's MLPs; needed on separable classes).
    validation_fraction : float, default=0.1  rows held out for early stopping (at least one).
    n_estimators : int, default=3    K, models trained on their own seeds and early-stopping splits and
                                     averaged (mean prediction; mean class probabilities). 3 was chosen
                                     on validation splits against 1, 4 and 5 (docs/estimators-selection.md).
    warm_start : bool, default=False  continue from the fitted model on the next fit (same features,
                                     classes and model settings, else a warning; see the module docstring).
    random_state : int, RandomState or None   seeds the split, the initialisation and the batches.
    device : str, default="cpu"      "cpu", "cuda", "cuda:N" or "auto".
    verbose : bool, default=False    a progress bar over epochs for each member, on a line of its own.

    The defaults were chosen on validation splits of the training folds of benchmarks/bench_estimators.py
    (never its test folds); the evidence is in docs/estimators-selection.md, the comparison with
    scikit-learn's MLP and kNN in docs/estimators.md.

    Attributes
    ----------
    module_ : MetaNeighborhoodsFeatureMLP or MetaNeighborhoodsMLP   the trained model (standardised data);
                                     with n_estimators > 1 the first member.
    modules_ : list of the K trained members.   fit_results_ : their TabularFitResults.
    n_features_in_, feature_names_in_ : as in every scikit-learn estimator.
    entries_, batch_size_, temperature_, step_size_init_ : the values used.
    n_threads_ : torch intra-op threads each member's fit ran on.
    n_parallel_members_ : members trained at once (Python threads; `parallel_members`).
    n_iter_ : epochs run.   best_epoch_, best_validation_loss_ : the epoch kept and its loss.
    fit_result_ : TabularFitResult with the per-epoch history.   (These four: of the first member.)
    loss_curve_ : the first member's training loss in the last fit, epoch by epoch (the classifier's
                  against its smoothed labels; the regressor's on standardised targets). Unlike scikit-learn's
                  MLPs, a warm-started fit starts the curves again.   validation_loss_curve_ : its
                  early-stopping loss (plain cross-entropy, or squared error on standardised targets) from
                  epoch 0, the weights the fit started from; index best_epoch_ is the epoch kept.
    x_scaler_, y_scaler_ : the StandardScalers fitted on the training data.

    Parameter checks (scikit-learn's `_parameter_constraints`, at fit; the constructor only stores
    them): a value of the wrong type or out of range raises a ValueError naming the parameter and
    the range. Input checks (scikit-learn's): NaN/inf, sparse, complex or 1-D X, X with a different
    number of features at predict time, and fewer than 2 rows each raise a ValueError (TypeError for
    sparse input) saying what was expected. The project skips no check of `check_estimator`.
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        self._check_params()
        x, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32])
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        targets = y.reshape(y.shape[0], -1)
        return self._fit(x, targets, targets.shape[1], "mse")

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
    entries. `predict_proba` is the mean over the members of the softmax of each finetuned network's
    outputs, p(c | x) = 1/K Σ_k softmax(f_k(x))_c (rows sum to 1); `decision_function` is its log,
    log p(c | x), as scikit-learn expects it: (n, n_classes), or for two classes the (n,) margin
    log p_1 - log p_0 (positive means `classes_[1]`); with one member, log p is the log-softmax of the
    logits and the margin is logit_1 - logit_0. Parameters and
    attributes as for MetaNeighborsRegressor, plus `classes_`, a wider default trunk and one parameter
    of its own:

    width : int, default=256         units of every hidden layer: on the validation splits of the five
                                     classification tables, 256 was level with 128 or above it on every
                                     one (the regressor's 128 was above 256 on diabetes, and 256 took over
                                     5x the default MLP's fit time on sine; docs/estimators-selection.md, rounds 16 and 17).

    label_smoothing : float in [0, 1), default=0.1   ε: the training loss is the cross-entropy
                                     against (1 - ε) one-hot + ε/C, which keeps the members from growing
                                     certain of the fitting rows within a few epochs (early stopping then
                                     comes later); early stopping watches the plain cross-entropy. Chosen
                                     on validation splits against 0 and other values (docs/estimators-selection.md, round 8).
    Binary problems use two outputs.
    """

    _parameter_constraints: dict = {**_MetaNeighborsBase._parameter_constraints,
                                    "label_smoothing": [Interval(Real, 0, 1, closed="left")]}

    def __init__(self, space="feature", layers=3, width=CLASSIFIER_WIDTH, entries="auto", temperature="auto",
                 step_size_init="auto", similarity="cosine", dictionary_init="random", learning_rate=1e-2,
                 batch_size="auto", weight_decay=0.0, max_epochs=200, patience=10, tol=1e-4,
                 validation_fraction=0.1, n_estimators=3, warm_start=False, random_state=None, device="cpu",
                 verbose=False, label_smoothing=LABEL_SMOOTHING):
        super().__init__(space=space, layers=layers, width=width, entries=entries, temperature=temperature,
                         step_size_init=step_size_init, similarity=similarity, dictionary_init=dictionary_init,
                         learning_rate=learning_rate, batch_size=batch_size, weight_decay=weight_decay,
                         max_epochs=max_epochs, patience=patience, tol=tol, validation_fraction=validation_fraction,
                         n_estimators=n_estimators, warm_start=warm_start, random_state=random_state, device=device,
                         verbose=verbose)
        self.label_smoothing = label_smoothing

    @_fit_context(prefer_skip_nested_validation=True)
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
        return self._fit(x, labels, len(self.classes_), "cross_entropy", split_labels=labels,
                         label_smoothing=self.label_smoothing)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, n_classes), columns in the order of `classes_`."""
        logits = self._outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        """log of `predict_proba` (n, n_classes), without its underflow to log 0."""
        logits = self._outputs(X)
        return logits - logsumexp(logits, axis=1, keepdims=True)

    def decision_function(self, X) -> np.ndarray:
        """log p(c | x), the log of the members' mean class probabilities, (n, n_classes); for two classes
        the margin log p_1 - log p_0 (n,)."""
        logits = self._outputs(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "module_")
        return self.classes_[np.argmax(self._outputs(X), axis=1)]
