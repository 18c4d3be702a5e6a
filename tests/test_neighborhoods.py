"""The batched inner loops equal the per-example autograd reference (values and every gradient)."""
import itertools

import pytest
import torch
import torch.nn as nn

from nslviz import FunctionalMetaNeighborhoods, MetaNeighborhoodsHead
from reference import reference_functional, reference_head

TOL = dict(rtol=1e-5, atol=1e-5)


def _compare(module, inputs, fast_forward, reference_forward):
    """Same outputs, and the same gradients for every parameter and for the inputs."""
    inputs = inputs.clone().requires_grad_(True)
    probe = torch.randn_like(fast_forward(module, inputs))
    fast = fast_forward(module, inputs)
    fast_grads = torch.autograd.grad((fast * probe).sum(), [inputs, *module.parameters()], allow_unused=True)
    ref = reference_forward(module, inputs)
    ref_grads = torch.autograd.grad((ref * probe).sum(), [inputs, *module.parameters()], allow_unused=True)
    torch.testing.assert_close(fast, ref, **TOL)
    names = ["inputs"] + [n for n, _ in module.named_parameters()]
    for name, a, b in zip(names, fast_grads, ref_grads):
        if a is None or b is None:
            assert a is None and b is None or (a if a is not None else b).abs().max() == 0, name
            continue
        torch.testing.assert_close(a, b, **TOL, msg=lambda m: f"gradient of {name}: {m}")
    return fast_grads, names


HEAD_CASES = list(itertools.product([1, 3], ["scalar", "diagonal"], ["cosine", "neg_sq_euclidean"]))


@pytest.mark.parametrize("steps,step_size,similarity", HEAD_CASES)
@pytest.mark.parametrize("classifier", ["cosine", "dot"])
def test_head_matches_reference(steps, step_size, similarity, classifier):
    torch.manual_seed(0)
    head = MetaNeighborhoodsHead(6, 4, entries=9, similarity=similarity, temperature=0.5,
                                 classifier=classifier, inner_steps=steps, step_size=step_size,
                                 step_size_init=0.3, key_init_std=1.0).double()
    with torch.no_grad():                                # make the values non-trivial
        head.dictionary.value_logits.normal_(0, 0.2)
        head.inner_step_size.uniform_(0.1, 0.5)
    grads, names = _compare(head, torch.randn(5, 6, dtype=torch.float64),
                            lambda m, x: m(x), reference_head)
    # second order: the meta-gradient reaches the dictionary, the step size and the features
    for must in ["inputs", "dictionary.keys", "dictionary.value_logits", "inner_step_size", "weight"]:
        assert grads[names.index(must)].abs().sum() > 0, must


@pytest.mark.parametrize("loss,values", [("binary_cross_entropy", "fixed"), ("mse", "regression")])
def test_head_other_losses_match_reference(loss, values):
    torch.manual_seed(1)
    outputs = 1 if loss == "binary_cross_entropy" else 3
    head = MetaNeighborhoodsHead(2, outputs, entries=10, similarity="neg_sq_euclidean", temperature=0.1,
                                 classifier="dot", values=values, loss=loss, inner_steps=2,
                                 step_size_init=1.0, key_init_std=1.0).double()
    _compare(head, torch.randn(7, 2, dtype=torch.float64), lambda m, x: m(x), reference_head)


@pytest.mark.parametrize("classifier", ["cosine", "dot"])
def test_first_order_matches_reference_and_keeps_dictionary_gradients(classifier):
    torch.manual_seed(2)
    head = MetaNeighborhoodsHead(5, 3, entries=8, classifier=classifier, inner_steps=2,
                                 first_order=True, step_size_init=0.5, key_init_std=1.0).double()
    grads, names = _compare(head, torch.randn(4, 5, dtype=torch.float64), lambda m, x: m(x), reference_head)
    assert grads[names.index("dictionary.keys")].abs().sum() > 0


def _mlp():
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))


@pytest.mark.parametrize("steps,step_size,similarity",
                         [(1, "scalar", "cosine"), (3, "scalar", "neg_sq_euclidean"),
                          (1, "diagonal", "neg_sq_euclidean"), (3, "diagonal", "cosine")])
def test_functional_path_matches_reference(steps, step_size, similarity):
    torch.manual_seed(3)
    module = FunctionalMetaNeighborhoods(_mlp(), 3, 2, entries=7, similarity=similarity, temperature=0.5,
                                         inner_steps=steps, step_size=step_size, step_size_init=0.2).double()
    grads, names = _compare(module, torch.randn(5, 3, dtype=torch.float64), lambda m, x: m(x),
                            reference_functional)
    for must in ["inputs", "dictionary.keys", "dictionary.regression_values", "model.0.weight"]:
        assert grads[names.index(must)].abs().sum() > 0, must


def test_functional_first_order_matches_reference():
    torch.manual_seed(4)
    module = FunctionalMetaNeighborhoods(_mlp(), 3, 2, entries=6, inner_steps=2, first_order=True).double()
    _compare(module, torch.randn(4, 3, dtype=torch.float64), lambda m, x: m(x), reference_functional)


def test_functional_matches_head_for_a_linear_model():
    """Two independent implementations agree where both apply (a dot classifier is a Linear)."""
    torch.manual_seed(5)
    head = MetaNeighborhoodsHead(4, 3, entries=6, classifier="dot", values="regression", loss="mse",
                                 similarity="neg_sq_euclidean", temperature=0.7, inner_steps=2,
                                 step_size_init=0.3, key_init_std=1.0).double()
    linear = nn.Linear(4, 3).double()
    module = FunctionalMetaNeighborhoods(linear, 4, 3, entries=6, similarity="neg_sq_euclidean",
                                         temperature=0.7, inner_steps=2, step_size_init=0.3).double()
    with torch.no_grad():
        linear.weight.copy_(head.weight)
        linear.bias.copy_(head.bias)
        module.dictionary.keys.copy_(head.dictionary.keys)
        module.dictionary.regression_values.copy_(head.dictionary.regression_values)
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(head(x), module(x), **TOL)


def test_a_negative_step_size_acts_as_its_magnitude_in_every_module():
    """α is learned freely and used as |α| (a step against the gradient): flipping its sign changes nothing."""
    from nslviz.regression import MLP, MetaNeighborhoodsMLP

    torch.manual_seed(0)
    x = torch.randn(6, 4)
    modules = [MetaNeighborhoodsHead(4, 3, entries=7, entry_dropout=0.0), MetaNeighborhoodsMLP(4, 2, entries=7),
               FunctionalMetaNeighborhoods(MLP(4, 2), 4, 2, entries=7)]
    for module in modules:
        module.eval()
        steps = [p for n, p in module.named_parameters() if "step_size" in n]
        with torch.no_grad():
            for p in steps:
                p.fill_(0.3)
            positive = module(x)
            for p in steps:
                p.fill_(-0.3)
            assert torch.allclose(module(x), positive), type(module).__name__
            for p in steps:
                p.fill_(0.0)
            assert not torch.allclose(module(x), positive)          # the step does act


def test_entry_dropout_keeps_the_stated_share_of_entries():
    from nslviz.similarity import entry_dropout_mask

    generator = torch.Generator().manual_seed(0)
    for rate, kept in ((0.2, 8), (0.5, 5), (0.8, 2), (0.9, 1), (0.0, 10)):
        mask = entry_dropout_mask(4, 10, rate, generator=generator)
        assert mask.sum(1).tolist() == [kept] * 4, rate
    assert entry_dropout_mask(1, 100, 0.9).sum() == 10                  # (1 − 0.9)·100 is 9.99… in floats


def test_the_head_computes_in_its_own_precision_under_autocast():
    """bf16 autocast around the head alone (not only inside ImageClassifier): the same float32 numbers."""
    torch.manual_seed(0)
    head = MetaNeighborhoodsHead(16, 5, entries=20).eval()
    features = torch.randn(4, 16)
    plain = head(features, return_details=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = head(features.bfloat16(), return_details=True)
    for name in ("logits", "attention", "base_logits"):
        assert mixed[name].dtype == torch.float32
        assert torch.allclose(mixed[name], head(features.bfloat16().float(), return_details=True)[name], atol=1e-6)
    assert torch.equal(head(features), plain["logits"])


def test_a_dictionary_started_at_every_example_holds_each_one_once():
    """S = the number of rows is the estimators' default on a small table: each row once, in a seeded
    order; fewer entries: distinct rows; more: drawn with replacement."""
    from nslviz.neighborhoods import starting_examples
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(starting_examples(7, 7, generator).sort().values, torch.arange(7))
    fewer = starting_examples(10, 4, generator)
    assert len(set(fewer.tolist())) == 4 and fewer.max() < 10
    more = starting_examples(3, 8, generator)
    assert more.shape == (8,) and set(more.tolist()) <= {0, 1, 2}


def test_dictionary_sums_counts_a_hand_made_batch():
    """Three inputs, two entries, two classes, every number worked out by hand."""
    from nslviz.neighborhoods import DICTIONARY_SUMS, dictionary_sums
    attention = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]])             # (B, S)
    values = torch.tensor([[1.0, 0.0], [0.0, 1.0]])                               # entry 0 says class 0, entry 1 class 1
    details = {"logits": torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0]]),      # after finetuning: 0, 1, 1
               "base_logits": torch.tensor([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]]),  # before: 0, 0, 0
               "attention": attention}
    labels = torch.tensor([0, 1, 0])
    sums = dict(zip(DICTIONARY_SUMS, dictionary_sums(details, values, labels).tolist()))
    half = torch.tensor(0.5).log().item()
    quarter, three_quarters = torch.tensor(0.25).log().item(), torch.tensor(0.75).log().item()
    assert sums == pytest.approx({
        "acc": 2, "acc_before_finetune": 2,                     # right: inputs 0 and 1 after, 0 and 2 before
        "attended_value_acc": 1,                                # attended values: class 0, a tie (argmax 0), class 1
        "attention_entropy": -2 * 0.5 * half - 0.25 * quarter - 0.75 * three_quarters,
        "attention_top_weight": 1 + 0.5 + 0.75, "changed_predictions": 2}, rel=1e-6)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "mse"])
def test_the_closed_form_entry_gradient_is_autograds_for_values_of_any_sum(loss):
    # given fixed_values need not be distributions: cross-entropy's gradient is softmax · Σv − v
    from nslviz.neighborhoods import entry_loss, entry_loss_logit_gradient
    torch.manual_seed(0)
    logits = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    values = torch.rand(7, 4, dtype=torch.float64) * 2                  # rows summing to 0..8, not 1
    expected, = torch.autograd.grad(entry_loss(logits, values, loss).sum(), logits)
    torch.testing.assert_close(entry_loss_logit_gradient(logits.detach(), values, loss), expected)


def test_the_dot_classifiers_diagonal_step_has_one_more_alpha_for_the_bias():
    """step_size="diagonal" with the dot classifier: α (d + 1,), the last for the bias. With every
    weight α at 0 the finetuned weights are the shared ones and only the bias moves."""
    torch.manual_seed(0)
    head = MetaNeighborhoodsHead(4, 3, entries=6, classifier="dot", step_size="diagonal")
    assert head.inner_step_size.shape == (5,)
    with torch.no_grad():
        head.inner_step_size[:4] = 0.0
        head.inner_step_size[4] = 0.5
    details = head(torch.randn(2, 4), return_details=True)
    torch.testing.assert_close(details["weight"], head.weight.expand(2, 3, 4))
    assert (details["bias"] - head.bias).abs().min() > 0
