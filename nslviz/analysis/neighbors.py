"""What the learned neighbors are, MN sec. 4.2 "Analysis of Learned Neighbors", Fig. 5/6, App. A.8/A.9.

The dictionary entries (k_j, v_j) live in the backbone's feature space z = µ_θ(x), where MN compares
them to inputs by cosine similarity (eq. 5). Three questions, one function each:

* **Where are they?** (Fig. 5) `embed(keys, features)`: a 2-D map (t-SNE, UMAP or PCA) of the keys
  k_j together with training features z_i. The class of an entry is argmax_c v_j[c].
* **What do they look like?** (Fig. 9/10, App. A.8) `retrieve_for_entries(model, split)`: each
  entry's k nearest test images by cosine similarity (k = 5 in the paper), the entry's class and
  the retrieval *purity* (share of the k images of the entry's class), next to two baselines: the
  same retrieval from randomly chosen *training* images as queries (a real data point of known
  class: what an entry would do if it were a copy of training data), and from random directions
  (a null model: in a feature space that clusters by class, even a random query retrieves
  consistent images, so consistency alone does not make an entry meaningful).
* **Do they keep sub-categories?** (Fig. 6, App. A.9) train on coarse labels only (CIFAR-100's 20
  superclasses; `digits` grouped into 5 pairs of look-alike digits in quick mode), then classify
  the test images on the *fine* labels with a k-nearest-neighbor classifier over the training set
  ("induction accuracy"): `subcategory_accuracy(...)`, `subcategory_report(train, test)` for two
  splits' features. As in A.9, the vanilla model's kNN uses the features z_i and MN's uses the
  attention vector ω_i = [ω(z_i, k_1), ..., ω(z_i, k_S)] (the kNN on MN's features is reported too).

`nslviz.experiments.neighbors.analyze_neighbors(run_dir, vanilla_run_dir=...)` runs all of it on trained
runs: it is what notebook 05 and `python -m nslviz neighbors` call.

The official code released none of this analysis (docs/official-code.md §A.1); choices the paper does
not state are ours: cosine similarity everywhere (the similarity MN uses; also for the kNN on
attention vectors, and for retrieving an entry's nearest images, which the paper does "using k_j");
the training set as the kNN's reference set; k = 5 for the kNN classifier (the paper gives no k; 5
is its retrieval k and scikit-learn's default); majority vote with ties to the smallest label (as scikit-learn's
KNeighborsClassifier); features and keys L2-normalised (and reduced to 50 dimensions by PCA when
wider) before t-SNE/UMAP, since only their directions matter to a cosine similarity.
Everything is vectorised: similarities are matrix products in chunks of queries, a vote compares the
k labels of each query pairwise (k × k, whatever the number of classes); the only Python loops are
over batches of images and chunks of queries.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_finite, check_positive
from .._modes import eval_mode
from ..datasets.images import ImageSplit
from ..datasets.images.streamed import FileSplit
from ..training.data import batch_stream
from ..training.distributed import resolve_device

DEFAULT_K = 5
EMBEDDINGS = ("tsne", "umap", "pca")
REPRESENTATIONS = ("paper", "features", "attention")


# ----------------------------------------------------------------------------------------------
# features


@dataclass
class SplitFeatures:
    """What a trained model sees of a split: features z = µ_θ(x) (N, d), for MN the attention
    ω(z, k_j) over all S entries (N, S), and the split's labels (and fine labels when it has them)."""
    features: torch.Tensor
    labels: torch.Tensor
    attention: torch.Tensor | None = None
    fine_labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def representation(self, name: str) -> torch.Tensor:
        """"features" (z) or "attention" (ω, MN models only)."""
        check_choice("representation", name, ("features", "attention"))
        if name == "attention" and self.attention is None:
            raise ValueError("representation 'attention' needs a Meta-Neighborhoods model (method mn or mn_ifilm); "
                             "this model has no dictionary, use 'features'")
        return self.features if name == "features" else self.attention


def _check_model(model) -> None:
    if not (hasattr(model, "backbone") and hasattr(model, "head")):
        raise ValueError(f"expected an nslviz ImageClassifier (backbone + head, e.g. from load_run), "
                         f"got {type(model).__name__}")


@torch.no_grad()
def extract_features(model, split: ImageSplit | FileSplit, *, batch_size: int = 500,
                     device: str | torch.device = "cpu", attention: bool | None = None) -> SplitFeatures:
    """Features of every image of `split` (in memory, or read from files: ImageNet-2012's central
    crops) in batches, in eval mode, without gradients, in float32. attention: also the attention
    over the dictionary (default: when the model is MN). The tensors stay on `device` (the kNN and
    retrieval run there too); the model is moved to `device` and keeps its training mode."""
    _check_model(model)
    if not isinstance(split, (ImageSplit, FileSplit)):
        raise ValueError(f"expected an ImageSplit or FileSplit (e.g. data.test), got {type(split).__name__}")
    check_positive("batch_size", batch_size, integer=True, minimum=1)
    is_mn = bool(getattr(model, "is_meta_neighborhoods", False))
    attention = is_mn if attention is None else bool(attention)
    if attention and not is_mn:
        raise ValueError(f"attention=True needs a Meta-Neighborhoods model, got method {getattr(model, 'method', '?')!r}")
    device = resolve_device(device)            # "auto": CUDA when present; a device not here is named
    features, weights = [], []
    with eval_mode(model.to(device)):
        for images, _ in batch_stream(split, batch_size, shuffle=False, device=device).epoch(0):
            z = model.backbone(images).float()                                         # (B, d)
            features.append(z)
            if attention:
                weights.append(model.head.attention(z, model.head.dictionary.keys))     # (B, S)
    fine = split.extra.get("fine_labels")
    return SplitFeatures(torch.cat(features), split.labels.to(device),
                         torch.cat(weights) if attention else None,
                         None if fine is None else fine.to(device))


def _as_features(model, split, device, batch_size) -> SplitFeatures:
    if isinstance(split, SplitFeatures):
        return split
    return extract_features(model, split, batch_size=batch_size, device=device)


def entry_classes(model) -> torch.Tensor:
    """Class of every dictionary entry, argmax_c v_j[c] (MN Fig. 5 and A.8): (S,)."""
    if not getattr(model, "is_meta_neighborhoods", False):
        raise ValueError(f"the model has no dictionary of learned neighbors (method {getattr(model, 'method', '?')!r}); "
                         "expected a Meta-Neighborhoods run (method mn or mn_ifilm)")
    with torch.no_grad():
        return model.head.dictionary.values.argmax(dim=1)


# ----------------------------------------------------------------------------------------------
# nearest neighbors by cosine similarity


def _as_matrix(name: str, values) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if tensor.dim() != 2 or not tensor.is_floating_point():
        raise ValueError(f"expected {name} as a float matrix (rows, dims), got {tensor.dtype} {tuple(tensor.shape)}")
    check_finite(name, tensor)
    return tensor


def _as_labels(name: str, values, rows: int) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if tensor.shape != (rows,) or tensor.is_floating_point():
        raise ValueError(f"expected {name} as {rows} integer labels, got {tensor.dtype} {tuple(tensor.shape)}")
    if rows and int(tensor.min()) < 0:
        raise ValueError(f"{name} must be labels >= 0, got {int(tensor.min())}")
    return tensor.long()


def _modal_share(labels: np.ndarray) -> np.ndarray:
    """(Q,) share of each row of (Q, k) labels held by its most common label."""
    same = labels[:, :, None] == labels[:, None, :]                                   # (Q, k, k)
    return same.sum(axis=2).max(axis=1) / labels.shape[1]


def _modal_label(labels: torch.Tensor) -> torch.Tensor:
    """(Q,) most common label of each row of (Q, k) labels (the kNN vote), ties to the smallest
    (argmax returns the first maximum)."""
    counts = (labels[:, :, None] == labels[:, None, :]).sum(dim=2)                   # (Q, k) votes of each label
    winners = counts == counts.max(dim=1, keepdim=True).values                      # (Q, k)
    # (k, k) per row rather than one-hot over the classes: labels need not be small or dense
    return torch.where(winners, labels, labels.max() + 1 if labels.numel() else 0).min(dim=1).values


def cosine_top_k(queries, references, k: int, *, chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The k references most similar to every query by cosine similarity, most similar first:
    (similarities (Q, k), indices (Q, k)). Queries are processed `chunk_size` at a time, so the
    (Q, N) similarity matrix is never held whole."""
    return _top_k(_as_matrix("queries", queries), _as_matrix("references", references), k, chunk_size)


# the public functions check their matrices once (_as_matrix: a NaN scan); these take checked ones

def _top_k(queries: torch.Tensor, references: torch.Tensor, k: int, chunk_size: int):
    check_positive("k", k, integer=True, minimum=1)
    check_positive("chunk_size", chunk_size, integer=True, minimum=1)
    if queries.shape[1] != references.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions but references have {references.shape[1]}")
    if k > references.shape[0]:
        raise ValueError(f"k must be <= the number of references ({references.shape[0]}), got {k}")
    dtype = torch.promote_types(queries.dtype, references.dtype)
    references = F.normalize(references.to(dtype), dim=1)                          # (N, d)
    queries = F.normalize(queries.to(device=references.device, dtype=dtype), dim=1)  # (Q, d)
    parts = [(chunk @ references.T).topk(k, dim=1) for chunk in queries.split(chunk_size)]   # (q, N) each
    return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


def knn_predict(reference, reference_labels, queries, k: int = DEFAULT_K, *, chunk_size: int = 1024) -> torch.Tensor:
    """k-nearest-neighbor classification with cosine similarity: the majority label among each
    query's k most similar references, ties to the smallest label (as scikit-learn's
    KNeighborsClassifier(metric="cosine")). Returns (Q,) labels on the references' device."""
    return _vote(_as_matrix("reference", reference), reference_labels, _as_matrix("queries", queries), k, chunk_size)


def _vote(reference: torch.Tensor, reference_labels, queries: torch.Tensor, k: int, chunk_size: int) -> torch.Tensor:
    labels = _as_labels("reference_labels", reference_labels, reference.shape[0]).to(reference.device)
    _, index = _top_k(queries, reference, k, chunk_size)                            # (Q, k)
    return _modal_label(labels[index])


def subcategory_accuracy(train_features, train_fine, test_features, test_fine, k: int = DEFAULT_K, *,
                         chunk_size: int = 1024) -> float:
    """Induction accuracy (MN App. A.9): the share of test points whose fine label is the majority
    fine label of their k nearest training points (cosine similarity). The features may be the
    backbone's z (vanilla) or MN's attention vectors; numpy arrays or tensors."""
    train_features = _as_matrix("train_features", train_features)
    test_features = _as_matrix("test_features", test_features)
    test_fine = _as_labels("test_fine", test_fine, test_features.shape[0])
    if len(test_fine) == 0:
        raise ValueError("test_features is empty; expected at least one test point")
    predicted = _vote(train_features, train_fine, test_features, k, chunk_size)
    return float((predicted.cpu() == test_fine.cpu()).double().mean())


# ----------------------------------------------------------------------------------------------
# retrieval: each entry's nearest images (A.8), each test image's nearest training images (Fig. 6)


@dataclass
class Retrieval:
    """The k nearest images of each query, most similar first. Queries are dictionary entries, or
    real images (the baseline, the sub-category retrieval of Fig. 6). `query_class` is the class a
    retrieved image must have to count as correct (argmax v_j for an entry, the label for an image)."""
    query_ids: np.ndarray                    # (Q,) entry index j, or row of the query split
    query_class: np.ndarray                  # (Q,)
    index: np.ndarray                        # (Q, k) rows of the searched split
    similarity: np.ndarray                   # (Q, k) cosine similarity
    retrieved_labels: np.ndarray             # (Q, k) labels of the retrieved images
    retrieved_fine: np.ndarray | None = None  # (Q, k) their fine labels, when the split has them

    @property
    def k(self) -> int:
        return int(self.index.shape[1])

    @property
    def correct(self) -> np.ndarray:
        """(Q, k) bool: retrieved image of the query's class."""
        return self.retrieved_labels == self.query_class[:, None]

    @property
    def purity(self) -> np.ndarray:
        """(Q,) share of the k retrieved images of the query's class."""
        return self.correct.mean(axis=1)

    @property
    def label_consistency(self) -> np.ndarray:
        """(Q,) share of the k retrieved images that carry their most common label, whatever the
        query's class: purity under the best possible class for the query."""
        return _modal_share(self.retrieved_labels)

    @property
    def fine_consistency(self) -> np.ndarray | None:
        """(Q,) share of the k retrieved images that carry their most common fine label: 1 when all
        k show the same sub-category (A.8: "represent a specific sub-category concept")."""
        return None if self.retrieved_fine is None else _modal_share(self.retrieved_fine)

    def summary(self) -> dict:
        result = {"queries": int(len(self.query_ids)), "k": self.k, "purity": float(self.purity.mean()),
                  "all_correct": float((self.purity == 1).mean()),
                  "label_consistency": float(self.label_consistency.mean()),
                  "mean_similarity": float(self.similarity.mean())}
        if self.retrieved_fine is not None:
            result["fine_consistency"] = float(self.fine_consistency.mean())
        return result


@dataclass
class EntryRetrieval:
    """Retrieval of MN App. A.8 for every dictionary entry, for random training images (baseline)
    and for random directions (null model; their "class" is the most common label they retrieve)."""
    entries: Retrieval
    baseline: Retrieval | None = None
    random_directions: Retrieval | None = None

    def summary(self) -> dict:
        return {name: None if value is None else value.summary()
                for name, value in (("entries", self.entries), ("baseline", self.baseline),
                                    ("random_directions", self.random_directions))}


def _retrieve(queries: torch.Tensor, query_ids, query_class, searched: SplitFeatures, representation: str,
              k: int, chunk_size: int) -> Retrieval:
    """query_class None: the most common label among the retrieved images."""
    similarity, index = cosine_top_k(queries, searched.representation(representation), k, chunk_size=chunk_size)
    if query_class is None:
        query_class = _modal_label(searched.labels[index]).cpu().numpy()
    fine = None if searched.fine_labels is None else searched.fine_labels[index].cpu().numpy()
    return Retrieval(np.asarray(query_ids), np.asarray(query_class), index.cpu().numpy(),
                     similarity.float().cpu().numpy(), searched.labels[index].cpu().numpy(), fine)


def random_rows(size: int, count: int | None, seed: int) -> np.ndarray:
    """`count` distinct rows of range(size) drawn with `seed` (all of them, in order, when count is
    None or >= size)."""
    if count is None or count >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, count, replace=False))


def retrieve_for_entries(model, split, k: int = DEFAULT_K, *, train_split=None, baseline_size: int | None = None,
                         random_directions: bool = True, seed: int = 0, batch_size: int = 500,
                         device: str | torch.device = "cpu", chunk_size: int = 1024) -> EntryRetrieval:
    """For every dictionary entry j: its k nearest images of `split` (the test set in the paper) by
    cosine similarity between the key k_j and their features, the entry's class argmax v_j, and the
    retrieval purity. With `train_split`, the same for `baseline_size` (default S) random training
    images as queries, each of its own label; with `random_directions`, for as many isotropic
    Gaussian directions (seeded). `split` / `train_split`: ImageSplit, or the SplitFeatures of
    `extract_features` to reuse them."""
    classes = entry_classes(model)
    searched = _as_features(model, split, device, batch_size)
    keys = model.head.dictionary.keys.detach().to(searched.features.device)           # (S, d)
    result = EntryRetrieval(_retrieve(keys, np.arange(len(keys)), classes.cpu().numpy(), searched, "features",
                                      k, chunk_size))
    if train_split is not None:
        train = _as_features(model, train_split, device, batch_size)
        rows = random_rows(len(train), baseline_size or len(keys), seed)
        rows_t = torch.as_tensor(rows, device=train.features.device)
        result.baseline = _retrieve(train.features[rows_t], rows, train.labels[rows_t].cpu().numpy(), searched,
                                    "features", k, chunk_size)
    if random_directions:
        count = baseline_size or len(keys)
        directions = torch.randn(count, keys.shape[1], generator=torch.Generator().manual_seed(seed),
                                 dtype=torch.float64).to(keys)                       # (count, d)
        result.random_directions = _retrieve(directions, np.arange(count), None, searched, "features", k, chunk_size)
    return result


def subcategory_retrieval(train: SplitFeatures, test: SplitFeatures, query_rows, representation: str = "features",
                          k: int = DEFAULT_K, *, chunk_size: int = 1024) -> Retrieval:
    """MN Fig. 6: for the test images at `query_rows`, their k nearest training images in
    `representation` ("features" or "attention"); correct = same *fine* label as the query."""
    if train.fine_labels is None or test.fine_labels is None:
        raise ValueError("sub-category retrieval needs fine labels (extra['fine_labels']): a cifar100 or digits "
                         "split loaded with label_kind='coarse'")
    rows = torch.as_tensor(np.asarray(query_rows), dtype=torch.long, device=test.features.device)
    fine_train = dataclasses.replace(train, labels=train.fine_labels)
    return _retrieve(test.representation(representation)[rows], rows.cpu().numpy(),
                     test.fine_labels[rows].cpu().numpy(), fine_train, representation, k, chunk_size)


def spread_over_classes(classes, count: int, seed: int = 0) -> np.ndarray:
    """`count` positions of `classes` (an array of class labels) taken round-robin over the classes,
    at random (seeded) within each class: the rows to show in a retrieval grid, not cherry-picked."""
    classes = np.asarray(classes)
    check_positive("count", count, integer=True, minimum=1)
    order = np.random.default_rng(seed).permutation(len(classes))
    shuffled = classes[order]
    by_class = np.argsort(shuffled, kind="stable")                                   # class-major, random within
    sorted_classes = shuffled[by_class]
    first = np.searchsorted(sorted_classes, sorted_classes, side="left")
    rank = np.arange(len(classes)) - first                                            # position within its class
    round_robin = by_class[np.lexsort((sorted_classes, rank))]
    return order[round_robin[:count]]


# ----------------------------------------------------------------------------------------------
# sub-category discovery (A.9)


def subcategory_report(train: SplitFeatures, test: SplitFeatures, k: int = DEFAULT_K, *,
                       representation: str = "paper", chunk_size: int = 1024) -> dict:
    """kNN accuracy on the fine labels (sub-categories, never seen in training) and on the coarse
    labels the model was trained on, for every representation the model has. representation
    "paper": MN's attention vectors when the model has them (A.9), else the features z."""
    check_choice("representation", representation, REPRESENTATIONS)
    if train.fine_labels is None or test.fine_labels is None:
        raise ValueError("sub-category discovery needs fine labels (extra['fine_labels']) in both splits")
    available = ["features"] + (["attention"] if train.attention is not None else [])
    main = ("attention" if train.attention is not None else "features") if representation == "paper" else representation
    if main not in available:
        train.representation(main)                                                    # raises the explanation
    by_representation = {}
    for name in available:                                                           # at most two
        reference, queries = train.representation(name), test.representation(name)
        by_representation[name] = {
            "fine_acc": subcategory_accuracy(reference, train.fine_labels, queries, test.fine_labels, k,
                                             chunk_size=chunk_size),
            "coarse_acc": subcategory_accuracy(reference, train.labels, queries, test.labels, k, chunk_size=chunk_size)}
    return {**by_representation[main], "representation": main, "k": k, "by_representation": by_representation,
            "fine_classes": int(torch.cat([train.fine_labels, test.fine_labels]).unique().numel()),
            "coarse_classes": int(torch.cat([train.labels, test.labels]).unique().numel()),
            "train_size": len(train), "test_size": len(test)}


# ----------------------------------------------------------------------------------------------
# 2-D maps (Fig. 5)


TSNE_MIN_ITERATIONS = 500     # 250 of early exaggeration (scikit-learn's), then at least 250 that optimise the map


def umap_module():
    """umap-learn's module, or an ImportError saying how to get it (checked before a notebook trains)."""
    try:
        import umap
    except ImportError as error:
        raise ImportError("embedding method 'umap' needs umap-learn: pip install umap-learn "
                          "(or use method='tsne')") from error
    return umap


def embed(keys, features, method: str = "tsne", seed: int = 0, *, max_iter: int = 1000,
          perplexity: float = 30.0, normalize: bool = True, pca_dims: int | None = 50) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of the keys (S, d) and the data features (N, d), embedded together so they
    share one map: (keys (S, 2), features (N, 2)). method: "tsne" (scikit-learn, `max_iter` >= 500:
    its first 250 iterations are the early exaggeration phase, so fewer would return a map that was
    never optimised;
    perplexity capped at (S + N - 1) / 3), "umap" (umap-learn, imported here: its JIT compilation
    costs ~10 s on first use, and its random_state makes it single-threaded) or "pca".
    normalize: L2-normalise rows first (cosine geometry); pca_dims: reduce to this many dimensions
    by PCA first when wider (scikit-learn's advice for t-SNE). Same seed, same map (on CPU)."""
    check_choice("embedding method", method, EMBEDDINGS)
    keys = _as_matrix("keys", keys).detach().double().cpu()
    features = _as_matrix("features", features).detach().double().cpu()
    if keys.shape[1] != features.shape[1]:
        raise ValueError(f"keys have {keys.shape[1]} dimensions but features have {features.shape[1]}")
    points = torch.cat([keys, features])                                             # (S + N, d)
    if len(points) < 3:
        raise ValueError(f"need at least 3 points to embed, got {len(points)}")
    if normalize:
        points = F.normalize(points, dim=1)
    points = points.numpy()
    from sklearn.decomposition import PCA
    if method == "pca":
        coords = PCA(n_components=2, random_state=seed).fit_transform(points)
    else:
        if pca_dims is not None and points.shape[1] > pca_dims and len(points) > pca_dims:
            points = PCA(n_components=pca_dims, random_state=seed).fit_transform(points)
        if method == "tsne":
            from sklearn.manifold import TSNE
            check_positive("max_iter", max_iter, integer=True, minimum=TSNE_MIN_ITERATIONS)
            coords = TSNE(n_components=2, perplexity=min(float(perplexity), (len(points) - 1) / 3), init="pca",
                          learning_rate="auto", max_iter=max_iter, random_state=seed).fit_transform(points)
        else:
            umap = umap_module()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*n_jobs value.*")
                coords = umap.UMAP(n_components=2, n_neighbors=min(15, len(points) - 1),
                                   random_state=seed).fit_transform(points)
    coords = np.asarray(coords, dtype=np.float64)
    return coords[: len(keys)], coords[len(keys):]


@dataclass
class NeighborMap:
    """Fig. 5 data: 2-D positions of entries ("+") and training features ("o") with their classes."""
    key_xy: np.ndarray           # (S', 2)
    data_xy: np.ndarray          # (N', 2)
    key_class: np.ndarray        # (S',) argmax v_j
    data_class: np.ndarray       # (N',) labels
    key_ids: np.ndarray          # (S',) entry indices shown
    data_ids: np.ndarray         # (N',) training rows shown
    class_names: list[str]
    method: str


def load_run_features(run_dir, device: str | torch.device = "cpu", batch_size: int = 500):
    """(model, config, data, (train, test)): a run's best weights and the SplitFeatures of its
    training and test splits."""
    from ..training.rundir import load_run
    model, config, data = load_run(run_dir, device=device)           # "auto" resolves as extract_features does
    return model, config, data, (extract_features(model, data.train, batch_size=batch_size, device=device),
                                 extract_features(model, data.test, batch_size=batch_size, device=device))
