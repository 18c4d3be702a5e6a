"""Bad input to the MN heads gives a ValueError that says what was expected."""
import pytest
import torch
import torch.nn as nn

from nslviz import FunctionalMetaNeighborhoods, InducedDictionary, MetaNeighborhoodsHead


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0), r"temperature T must be > 0, got 0"),
    (dict(temperature=-0.5), r"temperature T must be > 0"),
    (dict(entries=0), r"entries S must be >= 1, got 0"),
    (dict(inner_steps=0), r"inner_steps must be >= 1, got 0"),
    (dict(similarity="manhattan"), r"unknown similarity 'manhattan'; expected one of 'cosine', 'neg_sq_euclidean'"),
    (dict(classifier="mlp"), r"unknown classifier 'mlp'"),
    (dict(step_size="full"), r"unknown step_size 'full'; expected one of 'scalar', 'diagonal'"),
    (dict(values="random"), r"unknown values 'random'"),
    (dict(inner_steps=1.5), r"inner_steps must be an integer"),
    (dict(values="regression"), r"values='regression' \(real-valued targets\) needs loss='mse', got loss='cross_entropy'"),
])
def test_bad_head_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MetaNeighborhoodsHead(8, 3, **{"entries": 10, **kwargs})


def test_soft_values_need_two_outputs():
    with pytest.raises(ValueError, match="values='soft' needs num_outputs >= 2"):
        MetaNeighborhoodsHead(8, 1, entries=10, values="soft")


@pytest.mark.parametrize("head", [MetaNeighborhoodsHead(8, 3, entries=10),
                                  MetaNeighborhoodsHead(8, 3, entries=10, classifier="dot", inner_steps=2),
                                  FunctionalMetaNeighborhoods(nn.Linear(8, 3), 8, 3, entries=10)])
@pytest.mark.parametrize("training", [True, False])
def test_an_empty_batch_gives_an_empty_output_forward_and_back(head, training):
    """As nn.Linear, NSConv2d and IFiLM do (the last chunk of a chunked evaluation can be empty)."""
    features = torch.randn(0, 8, requires_grad=True)
    logits = head.train(training)(features)
    assert logits.shape == (0, 3)
    logits.sum().backward()
    assert features.grad.shape == (0, 8)
    assert all(p.grad is None or not p.grad.any() for p in head.parameters())
    details = head(features, return_details=True)
    assert details["logits" if "logits" in details else "outputs"].shape == (0, 3)
    assert details["attention"].shape == (0, 10)


def test_wrong_feature_width_names_expected_shape():
    head = MetaNeighborhoodsHead(8, 3, entries=10)
    with pytest.raises(ValueError, match=r"expected features of shape \(batch, 8\), got \(4, 5\)"):
        head(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"expected features of shape \(batch, 8\), got \(8,\)"):
        head(torch.randn(8))


def test_functional_rejects_buffers_and_bad_inputs():
    with pytest.raises(ValueError, match="without buffers"):
        FunctionalMetaNeighborhoods(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), 3, 4, entries=5)
    module = FunctionalMetaNeighborhoods(nn.Linear(3, 1), 3, 1, entries=5)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 3\)"):
        module(torch.randn(2, 4))


def test_dictionary_values():
    soft = InducedDictionary(12, 4, 3, "soft")
    torch.testing.assert_close(soft.values.sum(1), torch.ones(12))
    fixed = InducedDictionary(12, 4, 3, "fixed")
    assert fixed.values.argmax(1).tolist() == [0] * 4 + [1] * 4 + [2] * 4      # contiguous class blocks
    assert not any(p is fixed.fixed_values for p in fixed.parameters())        # fixed values are not trained
    binary = InducedDictionary(10, 2, 1, "fixed")
    assert binary.values[:, 0].tolist() == [0.0] * 5 + [1.0] * 5
    with pytest.raises(ValueError, match=r"expected initial_keys of shape \(12, 4\), got \(3, 4\)"):
        InducedDictionary(12, 4, 3, initial_keys=torch.zeros(3, 4))


def test_dictionary_starts_at_given_examples():
    torch.manual_seed(0)
    labels = torch.arange(12) % 3                                        # three clusters of four examples
    features = 3 * (torch.eye(8)[labels] + 0.2 * torch.randn(12, 8))
    head = MetaNeighborhoodsHead(8, 3, entries=12)
    head.initialize_from_examples(features, labels, confidence=0.8)
    keys = head.dictionary.keys
    # cosine similarity: the direction of each feature, at the norm of the Gaussian init (0.05 · √d)
    torch.testing.assert_close(torch.nn.functional.normalize(keys, dim=-1), torch.nn.functional.normalize(features, dim=-1))
    torch.testing.assert_close(keys.norm(dim=1), torch.full((12,), 0.05 * 8 ** 0.5))
    values = head.dictionary.values
    assert values.argmax(1).tolist() == labels.tolist()
    torch.testing.assert_close(values.max(1).values, torch.full((12,), 0.8))
    fixed = MetaNeighborhoodsHead(8, 3, entries=12, values="fixed")
    fixed.initialize_from_examples(features, labels)
    assert fixed.dictionary.values.tolist() == torch.nn.functional.one_hot(labels, 3).float().tolist()
    # the entries now act like soft nearest neighbours: a query attends to its own cluster, and
    # finetuning on them raises the logit of the cluster's class more than any other
    fixed.eval()
    details = fixed(features, return_details=True)
    assert (details["attention"].argmax(1) == torch.arange(12)).all()
    same_class = (labels[:, None] == labels[None, :]).float()
    assert ((details["attention"] * same_class).sum(1) > 0.75).all()
    moved = details["logits"] - details["base_logits"]
    assert (moved.argmax(1) == labels).all()
    euclidean = MetaNeighborhoodsHead(8, 3, entries=12, similarity="neg_sq_euclidean")
    euclidean.initialize_from_examples(features, labels)
    torch.testing.assert_close(euclidean.dictionary.keys, features)      # distances need the raw features
    regression = InducedDictionary(4, 2, 1, "regression")
    regression.set_entries(torch.ones(4, 2), torch.tensor([0.5, 1.0, 1.5, 2.0]))
    assert regression.values[:, 0].tolist() == [0.5, 1.0, 1.5, 2.0]



def test_examples_keep_their_length_where_f_phi_reads_it():
    """Only a cosine attention with a cosine classifier sees nothing but the keys' directions. With the
    dot classifier, or an MLP's f_φ, an entry started at z_j must give f_φ(k_j) = f_φ(z_j): a key
    shrunk to the Gaussian init's norm would leave f_φ(k_j) near f_φ(0), an entry that teaches nothing."""
    from nslviz.regression import MetaNeighborhoodsMLP
    torch.manual_seed(1)
    features, labels = 5 * torch.randn(12, 8), torch.arange(12) % 3
    dot = MetaNeighborhoodsHead(8, 3, entries=12, classifier="dot")
    dot.initialize_from_examples(features, labels)
    torch.testing.assert_close(dot.dictionary.keys, features)
    mlp = MetaNeighborhoodsMLP(8, 1, layers=2, entries=12)                  # cosine attention, f_φ an MLP
    mlp.initialize_from_examples(features, torch.randn(12))
    torch.testing.assert_close(mlp.dictionary.keys, features)
    torch.testing.assert_close(mlp.network(mlp.dictionary.keys), mlp.network(features))


@pytest.mark.parametrize("features,labels,kwargs,match", [
    (torch.randn(11, 8), torch.zeros(11, dtype=torch.long), {}, r"the dictionary has S = 12 entries, so it starts at exactly 12 examples; got 11"),
    (torch.randn(12, 5), torch.zeros(12, dtype=torch.long), {}, r"expected features of shape \(batch, 8\), got \(12, 5\)"),
    (torch.full((12, 8), float("nan")), torch.zeros(12, dtype=torch.long), {}, r"features contains 96 NaN"),
    (torch.randn(12, 8), torch.full((12,), 3), {}, r"class labels must lie in \[0, 2\], got \[3, 3\]"),
    (torch.randn(12, 8), torch.zeros(12), {}, r"expected integer class labels of shape \(12,\), got torch.float32"),
    (torch.randn(12, 8), torch.zeros(12, dtype=torch.long), {"confidence": 0.2},
     r"confidence must lie in \(1/C, 1\) = \(0.333, 1\), got 0.2"),
])
def test_dictionary_from_bad_examples(features, labels, kwargs, match):
    head = MetaNeighborhoodsHead(8, 3, entries=12)
    with pytest.raises(ValueError, match=match):
        head.initialize_from_examples(features, labels, **kwargs)


def test_entry_dropout_changes_training_but_not_evaluation():
    torch.manual_seed(0)
    head = MetaNeighborhoodsHead(6, 3, entries=50, entry_dropout=0.5)
    x = torch.randn(5, 6)
    head.eval()
    torch.testing.assert_close(head(x), head(x))
    head.train()
    assert not torch.allclose(head(x), head(x))


def test_mn_head_learns_more_than_base_classifier_on_xor():
    """Per-input finetuning gives a linear classifier a non-linear decision (cf. the spiral toy)."""
    torch.manual_seed(0)
    x = torch.randn(512, 2)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    head = MetaNeighborhoodsHead(2, 2, entries=16, classifier="dot", similarity="neg_sq_euclidean",
                                 temperature=0.3, step_size_init=1.0, key_init_std=1.0)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.03)
    for _ in range(300):
        loss = nn.functional.cross_entropy(head(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        details = head(x, return_details=True)
    after = (details["logits"].argmax(1) == y).float().mean()
    before = (details["base_logits"].argmax(1) == y).float().mean()
    assert after > 0.9 and before < 0.75


def test_numpy_integers_and_floats_count_as_numbers_bools_do_not():
    import numpy as np

    from nslviz._checks import check_fraction, check_positive

    check_positive("entries", np.int64(5), integer=True)
    check_fraction("dropout", np.float32(0.5))
    check_fraction("dropout", 0.0)
    check_fraction("share", 1.0, allow_one=True)
    for value, allow_one in ((-0.1, False), (-1e-9, True), (1.0, False), (1.5, True), (float("nan"), False)):
        bound = "<= 1" if allow_one else "< 1"
        with pytest.raises(ValueError, match=f"dropout must be a number with 0 <= dropout {bound}, got"):
            check_fraction("dropout", value, allow_one=allow_one)
    for make in (lambda: MetaNeighborhoodsHead(4, 3, entries=5, entry_dropout=-0.1),
                 lambda: __import__("nslviz.estimators", fromlist=["x"]).MetaNeighborsClassifier(
                     label_smoothing=-0.1).fit(np.eye(4), [0, 1, 0, 1])):
        with pytest.raises(ValueError, match="-0.1"):              # a negative share, refused by name
            make()
    for value in (True, np.float64(2.0), 2.0):
        with pytest.raises(ValueError, match="entries must be an integer"):
            check_positive("entries", value, integer=True)


def test_float64_inputs_name_the_dtype_and_autocast_is_left_alone():
    from nslviz.regression import MetaNeighborhoodsMLP

    for module, width in ((MetaNeighborhoodsMLP(3, 1), 3), (MetaNeighborhoodsHead(4, 3, entries=5), 4)):
        with pytest.raises(ValueError, match="are torch.float64 but the layer's parameters are torch.float32"):
            module(torch.randn(2, width, dtype=torch.float64))
        with torch.autocast("cpu", dtype=torch.bfloat16):              # autocast chooses the precision
            assert module(torch.randn(2, width).bfloat16()).shape[0] == 2


def test_attention_names_mismatched_widths_and_bool_temperatures():
    from nslviz.similarity import NeighborAttention, entry_dropout_mask

    with pytest.raises(ValueError, match=r"same width d, got queries \(4, 5\) and keys \(6, 3\)"):
        NeighborAttention()(torch.randn(4, 5), torch.randn(6, 3))
    with pytest.raises(ValueError, match="temperature T must be a number, got True"):
        NeighborAttention(temperature=True)
    with pytest.raises(ValueError, match="entry drop_rate must be a number with 0 <="):
        entry_dropout_mask(2, 5, 1.5)


def test_losses_values_and_output_counts_that_cannot_learn_are_refused():
    from nslviz.regression import MLP, MetaNeighborhoodsMLP

    with pytest.raises(ValueError, match="loss='cross_entropy' needs output_dim >= 2"):
        FunctionalMetaNeighborhoods(MLP(3, 1), 3, 1, values="fixed", loss="cross_entropy")
    with pytest.raises(ValueError, match="values='regression' .* needs loss='mse'"):
        MetaNeighborhoodsMLP(3, 2, loss="cross_entropy", values="regression")
    with pytest.raises(ValueError, match="the model gives 2 output\\(s\\) but the dictionary values have 1"):
        FunctionalMetaNeighborhoods(MLP(3, 2), 3, 1)(torch.randn(4, 3))


def test_switches_must_be_bools_and_dictionary_starts_must_be_finite():
    import numpy as np

    from nslviz.neighborhoods import classifier_logits
    from nslviz.regression import MetaNeighborhoodsMLP

    for make in (lambda: MetaNeighborhoodsHead(4, 3, entries=5, learn_step_size="no"),
                 lambda: MetaNeighborhoodsMLP(3, 1, first_order="yes")):
        with pytest.raises(ValueError, match="must be True or False, got '(no|yes)'"):
            make()
    with pytest.raises(ValueError, match="initial_keys contains 15 NaN"):
        InducedDictionary(5, 3, 2, initial_keys=np.full((5, 3), np.nan))
    assert InducedDictionary(5, 3, 2, initial_keys=np.ones((5, 3))).keys.dtype == torch.float32   # numpy accepted
    with pytest.raises(ValueError, match="key_init_std must be finite"):
        InducedDictionary(5, 3, 2, key_init_std=float("nan"))
    with pytest.raises(ValueError, match="unknown classifier 'euclid'"):
        classifier_logits(torch.randn(2, 3), torch.randn(4, 3), None, None, "euclid")


@pytest.mark.parametrize("options,match", [
    (dict(temperature=-1.0), "temperature T must be > 0"),
    (dict(inner_steps=0), "inner_steps must be >= 1"),
    (dict(step_size="bogus"), "step_size"),
    (dict(entry_dropout=2.0), "entry_dropout"),
    (dict(values="bogus"), "values"),
    (dict(first_order="yes"), "first_order"),
    (dict(entries=-3), "entries S must be >= 1"),
])
def test_mn_options_are_checked_for_every_method(options, match):
    """A vanilla model ignores the MN options, but a mistyped one still fails: the same config then
    builds an MN model too."""
    from nslviz.models.classifier import build_image_model
    for method in ("vanilla", "mn"):
        with pytest.raises(ValueError, match=match):
            build_image_model(method, "convnet4", 10, image_size=16, **options)


@pytest.mark.parametrize("build,match", [
    (lambda: MetaNeighborhoodsHead(4, 3, entries=5, scale_init=float("nan")), "scale_init must be finite"),
    (lambda: MetaNeighborhoodsHead(4, 3, entries=5, scale_init=-10), "scale_init must be > 0"),
    (lambda: InducedDictionary(4, 2, 3, "fixed", fixed_values=torch.full((4, 3), float("nan"))), "fixed_values contains"),
    (lambda: InducedDictionary(4, 2, 1, "regression", initial_values=torch.full((4, 1), float("inf"))), "initial_values contains"),
    (lambda: InducedDictionary(4, 2, 1, "soft"), "values='soft' needs value_dim >= 2"),
])
def test_bad_head_and_dictionary_values(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_dictionary_takes_numpy_values():
    import numpy as np
    fixed = InducedDictionary(4, 2, 2, "fixed", fixed_values=np.eye(2)[[0, 0, 1, 1]])
    assert fixed.values.argmax(1).tolist() == [0, 0, 1, 1]
    regression = InducedDictionary(4, 2, 1, "regression", initial_values=np.arange(4.0)[:, None])
    assert regression.values[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
