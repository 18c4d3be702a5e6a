"""MN eq. (5): similarities, temperature and per-example entry dropout."""
import math

import pytest
import torch

from nslviz import NeighborAttention, entry_dropout_mask, similarity_scores
from reference import reference_attention


@pytest.mark.parametrize("similarity", ["cosine", "neg_sq_euclidean", "dot"])
def test_attention_matches_reference_and_rows_sum_to_one(similarity):
    torch.manual_seed(0)
    queries, keys = torch.randn(6, 5, dtype=torch.float64), torch.randn(11, 5, dtype=torch.float64)
    attention = NeighborAttention(similarity, temperature=0.3).double()
    weights = attention(queries, keys)
    torch.testing.assert_close(weights, reference_attention(queries, keys, similarity, 0.3))
    torch.testing.assert_close(weights.sum(1), torch.ones(6, dtype=torch.float64))


def test_neg_sq_euclidean_is_minus_squared_distance():
    x, k = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    torch.testing.assert_close(similarity_scores(x, k, "neg_sq_euclidean"), torch.tensor([[-25.0, -1.0]]))


def test_lower_temperature_is_peakier():
    torch.manual_seed(1)
    q, k = torch.randn(4, 3), torch.randn(20, 3)
    sharp = NeighborAttention("cosine", 0.05)(q, k).max(1).values
    flat = NeighborAttention("cosine", 5.0)(q, k).max(1).values
    assert (sharp > flat).all()


def test_learnable_temperature_receives_gradient_and_stays_positive():
    attention = NeighborAttention("cosine", 0.2, learn_temperature=True)
    assert math.isclose(attention.temperature, 0.2, rel_tol=1e-6)
    q, k = torch.randn(4, 3), torch.randn(7, 3)
    (attention(q, k)[:, 0]).sum().backward()
    assert attention.log_inverse_temperature.grad is not None
    assert attention.log_inverse_temperature.grad.abs() > 0


def test_entry_dropout_keeps_own_subset_per_example_in_training_only():
    torch.manual_seed(2)
    mask = entry_dropout_mask(64, 10, 0.5)
    assert (mask.sum(1) == 5).all()                                  # ⌊0.5·S⌋ per example
    assert len({tuple(row.tolist()) for row in mask}) > 1             # examples draw different subsets
    attention = NeighborAttention("cosine", 0.2, entry_dropout=0.5)
    q, k = torch.randn(64, 3), torch.randn(10, 3)
    weights = attention.train()(q, k)
    assert ((weights > 0).sum(1) == 5).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(64))        # renormalised over kept entries
    assert ((attention.eval()(q, k) > 0).sum(1) == 10).all()          # evaluation uses all entries


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0.0), "temperature T must be > 0"),
    (dict(temperature=-1.0), "temperature T must be > 0"),
    (dict(similarity="euclid"), "unknown similarity 'euclid'; expected one of"),
    (dict(entry_dropout=1.0), "entry_dropout must be"),
])
def test_bad_attention_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeighborAttention(**kwargs)


def test_a_bad_keep_mask_is_named():
    attention = NeighborAttention("cosine", 0.2)
    q, k = torch.randn(2, 4), torch.randn(6, 4)
    with pytest.raises(ValueError, match=r"keep_mask must be a bool tensor of shape \(2, 6\).*float32 of shape \(2, 6\)"):
        attention(q, k, keep_mask=torch.ones(2, 6))
    with pytest.raises(ValueError, match=r"keep_mask must be a bool tensor of shape \(2, 6\).*shape \(2, 7\)"):
        attention(q, k, keep_mask=torch.ones(2, 7, dtype=torch.bool))
    empty_row = torch.ones(2, 6, dtype=torch.bool)
    empty_row[1] = False
    with pytest.raises(ValueError, match="drops every entry for some example"):
        attention(q, k, keep_mask=empty_row)


@pytest.mark.parametrize("similarity", ["cosine", "neg_sq_euclidean", "dot"])
def test_similarity_from_given_dot_products_equals_the_direct_one(similarity):
    """MetaNeighborhoodsMLP hands its x·k products to the attention: the scores are those computed
    without them, a zero query included (cosine 0 with every key, as F.normalize gives)."""
    g = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    queries[2] = 0.0
    queries.requires_grad_(True)
    keys.requires_grad_(True)
    given = similarity_scores(queries, keys, similarity, dots=queries @ keys.T)
    direct = similarity_scores(queries, keys, similarity)
    torch.testing.assert_close(given, direct, rtol=1e-12, atol=1e-12)
    weights = torch.randn(given.shape, generator=g, dtype=torch.float64)          # the same gradients too
    for a, b in zip(torch.autograd.grad((given * weights).sum(), (queries, keys)),
                    torch.autograd.grad((direct * weights).sum(), (queries, keys))):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    queries, keys = queries.detach(), keys.detach()
    attention = NeighborAttention(similarity, 0.3)
    torch.testing.assert_close(attention(queries, keys, dots=queries @ keys.T), attention(queries, keys))
    with pytest.raises(ValueError, match=r"dots must be queries @ keys.T of shape \(6, 4\), got \(4, 6\)"):
        similarity_scores(queries, keys, similarity, dots=keys @ queries.T)


def test_entry_dropout_keeps_one_entry_where_the_kept_share_rounds_to_none():
    # 3 entries at drop rate 0.9: ⌊0.3⌋ = 0 kept would leave a row with no entry to attend to
    mask = entry_dropout_mask(5, 3, 0.9, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (5, 3)
    assert mask.sum(1).tolist() == [1] * 5


def test_a_zero_key_has_cosine_zero_from_given_dot_products_too():
    """Norms floored at 1e-12 as F.normalize: a key at 0 scores 0 with every query, not NaN."""
    g = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    keys[1] = 0.0
    given = similarity_scores(queries, keys, "cosine", dots=queries @ keys.T)
    assert given[:, 1].tolist() == [0.0, 0.0, 0.0]
    torch.testing.assert_close(given, similarity_scores(queries, keys, "cosine"), rtol=1e-12, atol=1e-12)
