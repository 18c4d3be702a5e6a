"""Learned-neighbor analysis (MN sec. 4.2, Fig. 5/6, App. A.8/A.9): retrieval, purity, kNN
sub-category accuracy, embeddings, figures, the coarse digits loader and the `neighbors` command."""
import base64
import io
import json
import sys
import types

import numpy as np
import PIL.Image
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from nslviz.analysis import neighbors as nb
from nslviz.experiments import neighbors as neighbor_runs
from nslviz.datasets.images import DIGIT_COARSE_GROUPS, ImageSplit, load_image_dataset
from nslviz.models.classifier import build_image_model
from nslviz.viz import neighbors as nbviz


def _brute_force_top_k(queries, references, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    r = references / np.linalg.norm(references, axis=1, keepdims=True)
    similarity = q @ r.T
    index = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarity, index, axis=1), index


def _clusters(rng, n, centres, spread=0.8):
    labels = rng.integers(0, len(centres), size=n)
    return centres[labels] + spread * rng.normal(size=centres[labels].shape), labels


# ---------------------------------------------------------------- nearest neighbors and kNN


def test_cosine_top_k_returns_the_true_nearest_neighbors_in_chunks():
    rng = np.random.default_rng(0)
    queries, references = rng.normal(size=(37, 8)), rng.normal(size=(200, 8)) * rng.uniform(0.1, 5, size=(200, 1))
    similarity, index = nb.cosine_top_k(queries, references, 7, chunk_size=5)
    expected_similarity, expected_index = _brute_force_top_k(queries, references, 7)
    assert index.shape == (37, 7) and np.array_equal(index.numpy(), expected_index)
    assert np.allclose(similarity.numpy(), expected_similarity, atol=1e-12)
    with pytest.raises(ValueError, match="k must be <= the number of references \\(200\\), got 201"):
        nb.cosine_top_k(queries, references, 201)
    with pytest.raises(ValueError, match="queries have 8 dimensions but references have 3"):
        nb.cosine_top_k(queries, references[:, :3], 2)


@pytest.mark.parametrize("k", [1, 5, 6])
def test_knn_sub_category_accuracy_equals_scikit_learn_cosine_knn(k):
    rng = np.random.default_rng(k)
    centres = rng.normal(size=(7, 6))
    train, train_fine = _clusters(rng, 300, centres)
    test, test_fine = _clusters(rng, 120, centres)
    sklearn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train, train_fine)
    predicted = nb.knn_predict(train, train_fine, test, k, chunk_size=16)
    assert np.array_equal(predicted.numpy(), sklearn.predict(test))          # including vote ties (k = 6)
    accuracy = nb.subcategory_accuracy(train, train_fine, test, test_fine, k)
    assert accuracy == pytest.approx(sklearn.score(test, test_fine), abs=1e-12)
    assert 0.3 < accuracy < 1.0                                             # clustered, not trivially separable
    torch_accuracy = nb.subcategory_accuracy(torch.tensor(train), torch.tensor(train_fine),
                                             torch.tensor(test), torch.tensor(test_fine), k)
    assert torch_accuracy == accuracy
    with pytest.raises(ValueError, match="expected test_fine as 120 integer labels"):
        nb.subcategory_accuracy(train, train_fine, test, test_fine[:5], k)


def test_purity_and_sub_category_consistency_of_a_known_retrieval():
    retrieval = nb.Retrieval(query_ids=np.array([4, 9, 2]), query_class=np.array([1, 0, 2]),
                             index=np.arange(15).reshape(3, 5), similarity=np.ones((3, 5)),
                             retrieved_labels=np.array([[1, 1, 1, 1, 1], [0, 2, 0, 1, 1], [2, 2, 2, 2, 0]]),
                             retrieved_fine=np.array([[3, 3, 3, 4, 5], [7, 7, 8, 8, 8], [6, 6, 6, 6, 6]]))
    assert np.allclose(retrieval.purity, [1.0, 0.4, 0.8])
    assert np.allclose(retrieval.fine_consistency, [0.6, 0.6, 1.0])
    assert np.allclose(retrieval.label_consistency, [1.0, 0.4, 0.8])           # 0 0 / 1 1: two-way tie
    summary = retrieval.summary()
    assert summary["purity"] == pytest.approx(2.2 / 3) and summary["k"] == 5
    assert summary["all_correct"] == pytest.approx(1 / 3)                      # 0.8 is not all five right
    from nslviz.viz.neighbors import retrieval_table
    row = retrieval_table(nb.EntryRetrieval(retrieval)).iloc[0]                  # percentages, every column
    assert (row["purity %"], row["all k correct %"], row["same label %"], row["same sub-category %"]) == (
        pytest.approx(73.33), pytest.approx(33.33), pytest.approx(73.33), pytest.approx(73.33))


def test_spread_over_classes_goes_round_robin_and_is_seeded():
    classes = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3])
    picked = nb.spread_over_classes(classes, 6, seed=3)
    assert sorted(classes[picked[:4]]) == [0, 1, 2, 3] and sorted(classes[picked[4:]]) == [0, 1]
    assert len(set(picked.tolist())) == 6
    assert np.array_equal(picked, nb.spread_over_classes(classes, 6, seed=3))
    assert not all(np.array_equal(picked, nb.spread_over_classes(classes, 6, seed=s)) for s in range(4, 8))


# ---------------------------------------------------------------- retrieval on a model


def _tiny_mn(classes=3, entries=12, method="mn"):
    torch.manual_seed(0)
    model = build_image_model(method, "convnet4", classes, in_channels=1, image_size=16, entries=entries)
    if method == "mn":
        with torch.no_grad():                                               # give the entries distinct classes
            model.head.dictionary.value_logits.normal_()
    return model.eval()


def _random_split(n, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=generator)
    images = torch.randint(0, 256, (n, 1, 16, 16), generator=generator, dtype=torch.uint8)
    return ImageSplit(images, labels, {"fine_labels": labels * 2 + torch.randint(0, 2, (n,), generator=generator),
                                       "coarse_labels": labels})


def test_retrieve_for_entries_finds_each_entry_s_nearest_images_and_the_baseline():
    model, test, train = _tiny_mn(), _random_split(40, seed=1), _random_split(30, seed=2)
    features = nb.extract_features(model, test, batch_size=16)
    with torch.no_grad():
        details = model(test.images.float() / 255, return_details=True)
    assert torch.allclose(features.features, details["features"], atol=1e-5)
    assert torch.allclose(features.attention, details["attention"], atol=1e-6)
    assert torch.equal(features.fine_labels, test.extra["fine_labels"])

    result = nb.retrieve_for_entries(model, test, k=4, train_split=train, baseline_size=8, seed=5)
    keys = model.head.dictionary.keys.detach().double().numpy()
    _, expected = _brute_force_top_k(keys, features.features.double().numpy(), 4)
    entries = result.entries
    assert np.array_equal(entries.index, expected)
    classes = model.head.dictionary.values.argmax(1).numpy()
    assert np.array_equal(entries.query_class, classes) and len(set(classes.tolist())) > 1
    assert np.array_equal(entries.retrieved_labels, test.labels.numpy()[expected])
    assert np.allclose(entries.purity, (test.labels.numpy()[expected] == classes[:, None]).mean(1))
    baseline = result.baseline
    assert len(baseline.query_ids) == 8 == len(set(baseline.query_ids.tolist()))
    assert np.array_equal(baseline.query_class, train.labels.numpy()[baseline.query_ids])
    train_features = nb.extract_features(model, train).features.double().numpy()[baseline.query_ids]
    assert np.array_equal(baseline.index, _brute_force_top_k(train_features, features.features.double().numpy(), 4)[1])
    null = result.random_directions
    assert null.index.shape == (8, 4) and np.allclose(null.purity, null.label_consistency)  # class = modal label
    counts = np.stack([np.bincount(row, minlength=3) for row in null.retrieved_labels])
    assert np.array_equal(null.query_class, counts.argmax(1))
    again = nb.retrieve_for_entries(model, features, k=4, train_split=train, baseline_size=8, seed=5)
    assert np.array_equal(again.baseline.query_ids, baseline.query_ids)   # seeded; SplitFeatures reused
    assert np.array_equal(again.random_directions.index, null.index)
    with pytest.raises(ValueError, match="no dictionary.*'vanilla'.*mn or mn_ifilm"):
        nb.retrieve_for_entries(_tiny_mn(method="vanilla"), test)


def test_subcategory_retrieval_scores_on_the_fine_labels():
    """MN Fig. 6: each query's class is its *fine* label and the retrieved training images carry theirs,
    so purity counts same-sub-category neighbors (not the coarse labels the model was trained on);
    the neighbors are the brute-force cosine top k."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(6, 5))
    (train_x, train_fine), (test_x, test_fine) = _clusters(rng, 120, centres, 1.2), _clusters(rng, 40, centres, 1.2)

    def split(x, fine):                                                      # coarse = fine // 2
        return nb.SplitFeatures(torch.tensor(x), torch.tensor(fine // 2), None, torch.tensor(fine))

    rows = np.arange(0, 40, 3)
    retrieval = nb.subcategory_retrieval(split(train_x, train_fine), split(test_x, test_fine), rows, k=5)
    _, index = _brute_force_top_k(test_x[rows], train_x, 5)
    assert np.array_equal(retrieval.index, index)
    assert np.array_equal(retrieval.query_class, test_fine[rows]), "the queries' class is not their fine label"
    assert np.array_equal(retrieval.retrieved_labels, train_fine[index]), "the retrieved labels are not fine labels"
    fine = (train_fine[index] == test_fine[rows][:, None]).mean(1)
    coarse = (train_fine[index] // 2 == test_fine[rows][:, None] // 2).mean(1)
    assert fine.mean() < coarse.mean() - 0.05                               # the two scores differ on this data
    assert np.allclose(retrieval.purity, fine), f"purity {retrieval.purity.mean():.3f}, fine {fine.mean():.3f}"


def test_subcategory_report_uses_attention_for_mn_and_features_for_vanilla():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 5))
    (train_x, train_fine), (test_x, test_fine) = _clusters(rng, 200, centres), _clusters(rng, 80, centres)
    attention_train, attention_test = rng.random((200, 9)), rng.random((80, 9))

    def split(x, fine, attention):
        return nb.SplitFeatures(torch.tensor(x), torch.tensor(fine // 2), torch.tensor(attention), torch.tensor(fine))

    report = nb.subcategory_report(split(train_x, train_fine, attention_train),
                                   split(test_x, test_fine, attention_test), 3)
    assert report["representation"] == "attention" and set(report["by_representation"]) == {"features", "attention"}
    assert report["fine_acc"] == nb.subcategory_accuracy(attention_train, train_fine, attention_test, test_fine, 3)
    assert report["by_representation"]["features"]["coarse_acc"] == nb.subcategory_accuracy(
        train_x, train_fine // 2, test_x, test_fine // 2, 3)
    assert (report["fine_classes"], report["coarse_classes"]) == (6, 3)
    vanilla = nb.SplitFeatures(torch.tensor(train_x), torch.tensor(train_fine // 2), None, torch.tensor(train_fine))
    vanilla_test = nb.SplitFeatures(torch.tensor(test_x), torch.tensor(test_fine // 2), None, torch.tensor(test_fine))
    assert nb.subcategory_report(vanilla, vanilla_test, 3)["representation"] == "features"
    with pytest.raises(ValueError, match="'attention' needs a Meta-Neighborhoods model"):
        nb.subcategory_report(vanilla, vanilla_test, 3, representation="attention")


# ---------------------------------------------------------------- embeddings


def test_embed_shapes_determinism_and_errors():
    rng = np.random.default_rng(0)
    keys, features = rng.normal(size=(10, 60)), rng.normal(size=(50, 60))
    key_xy, data_xy = nb.embed(keys, features, "tsne", seed=1, max_iter=500)
    assert key_xy.shape == (10, 2) and data_xy.shape == (50, 2) and np.isfinite(data_xy).all()
    assert np.ptp(data_xy, axis=0).min() > 5        # optimised past the early exaggeration (it stays near ±1)
    again = nb.embed(keys, features, "tsne", seed=1, max_iter=500)
    assert np.array_equal(again[0], key_xy) and np.array_equal(again[1], data_xy)
    pca = nb.embed(keys, features, "pca")
    assert pca[0].shape == (10, 2) and np.array_equal(nb.embed(keys, features, "pca")[1], pca[1])
    with pytest.raises(ValueError, match="unknown embedding method 'mds'"):
        nb.embed(keys, features, "mds")
    with pytest.raises(ValueError, match="keys have 60 dimensions but features have 3"):
        nb.embed(keys, features[:, :3])
    with pytest.raises(ValueError, match="max_iter must be >= 500"):
        nb.embed(keys, features, "tsne", max_iter=250)                # no iteration after the exaggeration


def test_umap_is_imported_lazily_and_seeded(monkeypatch):
    calls = {}

    class FakeUMAP:
        def __init__(self, **options):
            calls.update(options)

        def fit_transform(self, points):
            calls["points"] = points
            return np.arange(2 * len(points), dtype=float).reshape(-1, 2)

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    key_xy, data_xy = nb.embed(np.ones((3, 4)) + np.eye(3, 4), np.eye(5, 4) + 0.1, "umap", seed=7)
    assert calls["random_state"] == 7 and calls["n_components"] == 2
    assert np.allclose(np.linalg.norm(calls["points"], axis=1), 1)        # cosine geometry
    assert np.array_equal(key_xy, [[0, 1], [2, 3], [4, 5]]) and data_xy.shape == (5, 2)


# ---------------------------------------------------------------- figures


def _has_labels(fig):
    return bool(fig.layout.title.text) and bool(fig.layout.xaxis.title.text) and bool(fig.layout.yaxis.title.text)


def test_figures_have_titles_axis_labels_and_the_paper_markers():
    rng = np.random.default_rng(0)
    neighbor_map = nb.NeighborMap(rng.normal(size=(6, 2)), rng.normal(size=(20, 2)), np.array([0, 1, 2, 0, 1, 2]),
                                  rng.integers(0, 3, 20), np.arange(6), np.arange(20), ["a", "b", "c"], "tsne")
    scatter = nbviz.neighbor_scatter(neighbor_map)
    assert _has_labels(scatter) and scatter.layout.xaxis.title.text == "t-SNE 1"
    symbols = {trace.marker.symbol for trace in scatter.data}
    assert symbols == {"cross", "circle-open"} and len(scatter.data) == 6
    assert sum(len(t.x) for t in scatter.data if t.marker.symbol == "cross") == 6
    ten = nb.NeighborMap(rng.normal(size=(10, 2)), rng.normal(size=(40, 2)), np.arange(10), np.arange(40) % 10,
                         np.arange(10), np.arange(40), list("0123456789"), "tsne")
    assert scatter.layout.height == 560 and nbviz.neighbor_scatter(ten).layout.height >= 140 + 21 * 22   # every
    # legend entry of ten classes (20 traces and two group titles) is shown, none scrolled away

    retrieval = nb.Retrieval(np.array([3, 5]), np.array([0, 1]), np.array([[0, 1, 2], [3, 4, 0]]), np.ones((2, 3)),
                             np.array([[0, 0, 1], [1, 0, 0]]), np.array([[0, 0, 2], [3, 1, 0]]))
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8).numpy()
    grid = nbviz.entry_retrieval_grid(retrieval, images, [5, 3], ["zero", "one"], fine_names=list("abcd"))
    assert _has_labels(grid) and grid.data[0].type == "image" and grid.data[0].source.startswith("data:image/png")
    assert list(grid.layout.yaxis.ticktext) == ["entry #5 “one”", "entry #3 “zero”"]

    mosaic = nbviz.image_mosaic(images[:4].reshape(2, 2, 1, 8, 8), np.array([[nbviz.GREEN, nbviz.RED]] * 2, np.uint8),
                                scale=2, border=2, gap=3)
    assert mosaic.shape == (2 * 23, 2 * 23, 3)
    assert tuple(mosaic[0, 0]) == nbviz.GREEN and tuple(mosaic[0, 23]) == nbviz.RED and tuple(mosaic[22, 0]) == (255,) * 3
    assert np.array_equal(mosaic[2:18:2, 2:18:2, 0], images[0, 0])           # the image, enlarged 2x

    fig6 = nbviz.subcategory_retrieval_grid(retrieval, images, images, list("abcd"), title="Fig. 6")
    assert _has_labels(fig6) and list(fig6.layout.xaxis.ticktext) == ["query", "1", "2", "3"]
    # the axes span the picture exactly (the hover markers widened the autorange: a white band between
    # the column numbers and the first row), and the title stands above the axis title on top
    height, width = np.asarray(PIL.Image.open(io.BytesIO(base64.b64decode(fig6.data[0].source.split(",")[1])))).shape[:2]
    assert list(fig6.layout.xaxis.range) == [-0.5, width - 0.5] and list(fig6.layout.yaxis.range) == [height - 0.5, -0.5]
    assert fig6.layout.title.yref == "container" and fig6.layout.title.yanchor == "top"

    results = {"vanilla": {"coarse_acc": 0.8, "fine_acc": 0.6, "representation": "features"},
               "mn": {"coarse_acc": 0.81, "fine_acc": 0.65, "representation": "attention"}}
    bars = nbviz.subcategory_bars(results)
    assert _has_labels(bars) and any(63.3 in tuple(t.y) for t in bars.data) and len(bars.data) == 4
    from nslviz.viz.training import METHOD_COLORS                          # the learning curves' colours
    assert [bars.data[n].marker.color for n in (0, 1, 2, 3)] == [METHOD_COLORS["vanilla"], METHOD_COLORS["mn"]] * 2
    table = nbviz.subcategory_table(results)
    assert table.loc["MN", "fine kNN %"] == 65.0 and table.loc["MN", "paper fine %"] == 63.3
    assert table.loc["vanilla", "paper coarse %"] == 80.30


# ---------------------------------------------------------------- coarse digits


def test_coarse_digits_group_look_alike_digits_and_keep_the_images_and_splits():
    fine = load_image_dataset("digits", image_size=16)
    coarse = load_image_dataset("digits", image_size=16, label_kind="coarse")
    assert fine.num_classes == 10 and fine.train.extra == {}                 # label_kind="fine" unchanged
    assert coarse.num_classes == 5 and coarse.class_names == ["0/6", "1/7", "2/5", "3/8", "4/9"]
    group = torch.empty(10, dtype=torch.long)
    for g, digits in enumerate(DIGIT_COARSE_GROUPS):
        group[list(digits)] = g
    for name in ("train", "val", "test"):
        a, b = getattr(fine, name), getattr(coarse, name)
        assert torch.equal(a.images, b.images) and torch.equal(b.extra["fine_labels"], a.labels)
        assert torch.equal(b.labels, group[a.labels]) and torch.equal(b.extra["coarse_labels"], b.labels)
    assert coarse.extra_names["fine_labels"][3] == "3"


# ---------------------------------------------------------------- the command on trained runs


@pytest.fixture(scope="module")
def coarse_runs(tmp_path_factory):
    from nslviz.training.config import TrainConfig
    from nslviz.training.trainer import train
    root = tmp_path_factory.mktemp("neighbors")
    options = dict(dataset="digits", label_kind="coarse", backbone="convnet4", epochs=1, train_limit=128,
                   eval_limit=64, batch_size=32, entries=20, image_size=16, device="cpu", augment="crop")
    for method in ("mn", "vanilla"):
        train(TrainConfig(method=method, **options), root / method, progress=False)
    return root


def test_cli_json_reports_retrieval_and_sub_category_accuracy(coarse_runs, capsys):
    from nslviz.__main__ import main
    assert main(["neighbors", "--run-dir", str(coarse_runs / "mn"), "--vanilla-run-dir",
                 str(coarse_runs / "vanilla"), "--k", "3", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert "entry retrieval: purity" in lines[1] and any("sub-category kNN (vanilla" in line for line in lines)
    assert summary["k"] == 3 and summary["label_kind"] == "coarse" and summary["entries"] == 20
    assert summary["retrieval"]["entries"]["queries"] == 20 and summary["retrieval"]["baseline"]["queries"] == 20
    assert summary["retrieval"]["random_directions"]["queries"] == 20
    mn, vanilla = summary["subcategory"]["mn"], summary["subcategory"]["vanilla"]
    assert mn["representation"] == "attention" and vanilla["representation"] == "features"
    assert (mn["fine_classes"], mn["coarse_classes"], mn["train_size"], mn["test_size"]) == (10, 5, 128, 64)
    direct = neighbor_runs.subcategory_discovery(coarse_runs / "mn", k=3)
    assert direct["fine_acc"] == mn["fine_acc"] and direct["coarse_acc"] == mn["coarse_acc"]
    assert summary["paper_subcategory"]["mn"]["fine"] == 63.3

    report = neighbor_runs.analyze_neighbors(coarse_runs / "mn", k=3)
    neighbor_map = report.neighbor_map("pca", max_points=40, max_entries=10)
    assert neighbor_map.key_xy.shape == (10, 2) and neighbor_map.data_xy.shape == (40, 2)
    assert np.array_equal(neighbor_map.key_class, report.entry_class[neighbor_map.key_ids])


def test_cli_on_a_vanilla_run_explains_what_it_cannot_do(coarse_runs, capsys):
    from nslviz.__main__ import main
    assert main(["neighbors", "--run-dir", str(coarse_runs / "vanilla"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["retrieval"] is None and "no dictionary" in summary["notes"][0]
    assert summary["subcategory"]["vanilla"]["representation"] == "features"
    with pytest.raises(SystemExit):
        main(["neighbors", "--run-dir", str(coarse_runs / "missing")])
    assert "is not a run directory" in capsys.readouterr().err


def test_swapped_runs_and_a_k_beyond_the_splits_are_named(coarse_runs):
    mn, vanilla = coarse_runs / "mn", coarse_runs / "vanilla"
    with pytest.raises(ValueError, match="the first run .*'vanilla', without a dictionary; expected the MN run first"):
        neighbor_runs.analyze_neighbors(vanilla, mn, k=3)
    with pytest.raises(ValueError, match="the run given as vanilla, .*'mn', with a dictionary"):
        neighbor_runs.analyze_neighbors(mn, mn, k=3)
    with pytest.raises(ValueError, match=r"k=65 is more than the 64 test images .* or the 128 training images"):
        neighbor_runs.analyze_neighbors(mn, vanilla, k=65)
    report = neighbor_runs.analyze_neighbors(mn, k=3)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):                # not the default in disguise
        report.subcategory_retrieval("mn", [0, 1], k=0)


def test_retrieval_refuses_nan_features_and_votes_on_any_integer_labels():
    from nslviz.analysis.neighbors import cosine_top_k, knn_predict

    rng = np.random.default_rng(0)
    reference, queries = rng.normal(size=(40, 4)), rng.normal(size=(6, 4))
    labels = rng.integers(0, 3, 40)
    holes = queries.copy()
    holes[2, 1] = np.nan
    with pytest.raises(ValueError, match="queries contains 1 NaN"):
        cosine_top_k(holes, reference, 3)
    sparse = knn_predict(reference, labels * 10**9, queries, 5)          # one-hot over 3e9 classes would not fit
    assert torch.equal(sparse, knn_predict(reference, labels, queries, 5) * 10**9)


def test_a_report_retrieves_sub_categories_in_each_runs_own_representation_with_k_up_to_the_test_split(coarse_runs):
    """Fig. 6 through the report: MN's run in attention space, vanilla's in feature space (A.9); k may be
    as large as the 64 test images."""
    report = neighbor_runs.analyze_neighbors(coarse_runs / "mn", coarse_runs / "vanilla", k=64)
    assert report.k == 64
    for method, space in (("mn", "attention"), ("vanilla", "features")):
        train, test = report.features[method]
        got = report.subcategory_retrieval(method, [0, 5, 9], k=4)
        expected = nb.subcategory_retrieval(train, test, [0, 5, 9], space, 4)
        assert np.array_equal(got.index, expected.index) and np.allclose(got.similarity, expected.similarity)
