"""The layers as a user drops them into their own model: copies, dtypes, layouts, paddings and the
errors that name what was expected."""
import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

from nslviz import FunctionalMetaNeighborhoods, IFiLM, InducedDictionary, MetaNeighborhoodsHead
from nslviz._memory import TooLargeForMemory
from nslviz.estimators import MetaNeighborsClassifier, MetaNeighborsRegressor
from nslviz.neighborhoods import entry_loss_logit_gradient, inner_gradient, starting_examples
from nslviz.nsl import GlobalSimilarityAttention, NSConv2d, SphereConv2d, fold_static_nsl, make_conv, nsl_regularization
from nslviz.nsl.conv import dynamic_similarity_conv2d
from nslviz.regression import values_in_target_range
from nslviz.similarity import entry_dropout_mask


def test_a_network_with_a_dynamic_penalty_copies_after_a_training_step():
    net = nn.Sequential(NSConv2d(3, 4, mode="static_dns"), NSConv2d(4, 4, mode="dynamic_dns", l2_weight=1e-3))
    (net(torch.randn(2, 3, 6, 6)).sum() + nsl_regularization(net)).backward()
    copied = copy.deepcopy(net)                        # a best-model snapshot, an EMA, AveragedModel
    assert copied[1].regularization().item() == 0      # the penalty belonged to the original's graph
    assert net[1].regularization().item() > 0
    pickle.loads(pickle.dumps(net))
    folded = fold_static_nsl(net)
    torch.testing.assert_close(folded.eval()(torch.ones(1, 3, 6, 6)), net.eval()(torch.ones(1, 3, 6, 6)))


def test_a_step_in_eval_mode_after_a_training_step():
    """Finetuning with BatchNorm frozen (model.eval()): the eval forward's penalty is 0, not the
    previous training forward's, whose graph backward() has already freed."""
    net = nn.Sequential(NSConv2d(3, 4, mode="dynamic_dns", l2_weight=1e-3), nn.BatchNorm2d(4))
    (net(torch.randn(2, 3, 6, 6)).sum() + nsl_regularization(net)).backward()
    net.eval()
    (net(torch.randn(2, 3, 6, 6)).sum() + nsl_regularization(net)).backward()
    assert nsl_regularization(net).item() == 0


@pytest.mark.parametrize("mode", ["dynamic_dns", "dynamic_uns"])
def test_a_dynamic_layer_returns_channels_last_as_documented(mode):
    layer = NSConv2d(3, 4, mode=mode)
    x = torch.randn(2, 3, 9, 9)
    assert layer(x).is_contiguous(memory_format=torch.channels_last)      # no copy back: it costs time
    assert "channels-last" in NSConv2d.__doc__ and ".view" in NSConv2d.__doc__
    torch.testing.assert_close(layer(x).reshape(2, -1), layer(x).contiguous().view(2, -1))
    torch.testing.assert_close(layer(x.contiguous(memory_format=torch.channels_last)), layer(x))


@pytest.mark.parametrize("mode", ["static_dns", "dynamic_dns", "dynamic_uns"])
def test_a_bias_keeps_autocasts_dtype(mode):
    layer = NSConv2d(3, 4, mode=mode, bias=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(2, 3, 6, 6)).dtype == nn.Conv2d(3, 4, 3)(torch.randn(2, 3, 6, 6)).dtype


@pytest.mark.parametrize("build", [
    lambda k, padding: NSConv2d(3, 4, k, padding=padding, mode="static_uns"),
    lambda k, padding: NSConv2d(3, 4, k, padding=padding, mode="dynamic_dns"),
    lambda k, padding: make_conv("none", 3, 4, k, padding=padding),
    lambda k, padding: SphereConv2d(3, 4, k, padding=padding)])
def test_padding_same_by_default_valid_or_an_integer(build):
    x = torch.randn(1, 3, 9, 9)
    for k in (3, 5):
        assert build(k, None)(x).shape[-1] == 9 and build(k, "same")(x).shape[-1] == 9
        assert build(k, "valid")(x).shape[-1] == 9 - k + 1
        assert build(k, 1)(x).shape[-1] == 9 - k + 3


@pytest.mark.parametrize("layer", [NSConv2d, SphereConv2d])
def test_same_padding_needs_an_odd_kernel(layer):
    with pytest.raises(ValueError, match="padding 'same' keeps the map's size .*got kernel_size=4, stride=1"):
        layer(3, 4, 4, padding="same")


def test_a_one_by_one_sphere_conv_keeps_the_map_size():
    assert SphereConv2d(3, 4, 1)(torch.randn(1, 3, 5, 5)).shape == (1, 4, 5, 5)


def test_a_square_kernel_size_may_be_given_as_nn_conv2d_takes_it():
    x = torch.randn(1, 3, 6, 6)
    for layer in (SphereConv2d, NSConv2d):
        torch.manual_seed(0)
        pair = layer(3, 4, (3, 3))(x)
        torch.manual_seed(0)
        assert torch.equal(pair, layer(3, 4, 3)(x))
    with pytest.raises(ValueError, match=r"SphereConv2d's kernel_size must be one number or a pair of equal ones .*got \(3, 5\)"):
        SphereConv2d(3, 4, (3, 5))


@pytest.mark.parametrize("layer", [NSConv2d, SphereConv2d])
def test_stride_and_padding_may_be_given_as_nn_conv2d_stores_them(layer):
    """conv.stride and conv.padding of an nn.Conv2d are pairs: a layer built from them replaces the conv."""
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(1, 3, 9, 9)
    torch.manual_seed(0)
    pair = layer(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
    torch.manual_seed(0)
    assert torch.equal(pair(x), layer(3, 4, 3, 2, 1)(x)) and pair(x).shape == conv(x).shape
    with pytest.raises(ValueError, match=r"stride must be one number or a pair of equal ones .*got \(1, 2\)"):
        layer(3, 4, 3, stride=(1, 2))
    with pytest.raises(ValueError, match=r"padding must be one number or a pair of equal ones .*got \(1, 0\)"):
        layer(3, 4, 3, padding=(1, 0))


def test_strided_and_plain_paddings():
    assert NSConv2d(3, 4, 3, stride=2)(torch.randn(1, 3, 8, 8)).shape == (1, 4, 4, 4)     # default k // 2
    with pytest.raises(ValueError, match="odd kernel_size at stride 1, got kernel_size=3, stride=2"):
        NSConv2d(3, 4, 3, stride=2, padding="same")
    assert make_conv("none", 3, 4, (3, 5))(torch.randn(1, 3, 9, 9)).shape == (1, 4, 9, 9)
    assert make_conv("none", 3, 4, 3, padding=(1, 0))(torch.randn(1, 3, 9, 9)).shape == (1, 4, 9, 7)   # nn.Conv2d's


@pytest.mark.parametrize("call,match", [
    (lambda: IFiLM(8)(torch.randn(2, 8).double()), "iFiLM activations are torch.float64 but the layer computes in"),
    (lambda: SphereConv2d(3, 4)(torch.randn(1, 3, 5, 5).double()), "SphereConv2d inputs are torch.float64"),
    (lambda: SphereConv2d(3, 4)(torch.randn(1, 5, 5, 5)), r"SphereConv2d expects input \(batch, 3, height, width\)"),
    (lambda: GlobalSimilarityAttention(16)(torch.randn(1, 16, 4, 4).double()),
     "GlobalSimilarityAttention inputs are torch.float64"),
    (lambda: GlobalSimilarityAttention(16)(torch.randn(1, 8, 4, 4)),
     r"GlobalSimilarityAttention expects input \(batch, 16, height, width\)"),
    (lambda: NSConv2d(3, 4, mode="dynamic_uns", dynamic_impl="taps"), "dynamic_impl='taps' computes dynamic DNS only"),
    (lambda: NSConv2d(3, 4, bias="no"), "bias must be True or False, got 'no'"),
    (lambda: NSConv2d(3, 4, padding="full"), "padding must be None .*'same', 'valid' or an integer >= 0, got 'full'"),
    (lambda: SphereConv2d(3, 4, padding="SAME"), "padding must be None .*'same', 'valid' or an integer"),
    (lambda: FunctionalMetaNeighborhoods(lambda x: x, 3, 1),
     "model must be an nn.Module whose parameters are finetuned per input, got function"),
    (lambda: MetaNeighborhoodsHead(16, 1, entries=10), "values='fixed' with loss='binary_cross_entropy'"),
    # not a tensor, or a map smaller than the kernel: named by the layer, not torch's AttributeError or conv message
    (lambda: NSConv2d(3, 4)(np.zeros((1, 3, 8, 8), np.float32)),
     r"NSConv2d input must be a torch.Tensor \(batch, 3, height, width\), got ndarray; convert with torch.as_tensor"),
    (lambda: NSConv2d(3, 4, mode="dynamic_dns")([[1.0]]), "NSConv2d input must be a torch.Tensor .* got list"),
    (lambda: SphereConv2d(3, 4)(np.zeros((1, 3, 8, 8), np.float32)), "SphereConv2d input must be a torch.Tensor"),
    (lambda: GlobalSimilarityAttention(16)(np.zeros((1, 16, 4, 4))), "GlobalSimilarityAttention input must be a torch"),
    (lambda: IFiLM(8)(np.zeros((2, 8), np.float32)), r"iFiLM activation must be a torch.Tensor \(batch, 8, H, W\)"),
    (lambda: NSConv2d(3, 4, padding=0)(torch.randn(1, 3, 2, 5)),
     "NSConv2d with a 3x3 kernel and padding 0 needs maps of at least 3x3, got 2x5"),
    (lambda: NSConv2d(3, 4, mode="dynamic_uns", padding=0)(torch.randn(1, 3, 2, 2)), "needs maps of at least 3x3"),
    (lambda: SphereConv2d(3, 4, 5, padding=1)(torch.randn(1, 3, 2, 2)),
     "SphereConv2d with a 5x5 kernel and padding 1 needs maps of at least 3x3, got 2x2"),
    (lambda: GlobalSimilarityAttention(16).attention(np.zeros((1, 16, 4, 4))),
     "GlobalSimilarityAttention input must be a torch"),
    # the functions under the layers: a bias per filter, one value per output, a dictionary of entries
    (lambda: dynamic_similarity_conv2d(torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.ones(2, 9, 8, 8),
                                       bias=torch.ones(1), padding=1),
     r"expected a bias of shape \(4,\), one per filter of the weight, got \(1,\)"),
    (lambda: entry_loss_logit_gradient(torch.randn(4, 3), torch.rand(4, 1), "cross_entropy"),
     "the model gives 3 output.* but the dictionary values have 1"),
    (lambda: inner_gradient(torch.rand(2, 4).softmax(1), torch.randn(4, 5), torch.rand(4, 1), torch.randn(3, 5), None,
                            torch.tensor(10.0), "cosine", "cross_entropy"),
     "the model gives 3 output.* but the dictionary values have 1"),
    (lambda: starting_examples(10, -3, torch.Generator()), "entries must be >= 1, got -3"),
    (lambda: starting_examples(0, 3, torch.Generator()), "count must be >= 1, got 0"),
    (lambda: values_in_target_range(3, torch.tensor([1.0, float("nan")])), "targets contains 1 NaN or infinite"),
    (lambda: values_in_target_range(3, torch.zeros(0)), "needs at least one target, got an empty tensor"),
    # arguments that would be dropped or fail deep in torch
    (lambda: MetaNeighborhoodsHead(2, 2, entries=3, fixed_values=torch.zeros(3, 2)),
     "fixed_values is read only with values='fixed'; got values='soft'"),
    (lambda: InducedDictionary(3, 2, 2, values="fixed", initial_values=torch.zeros(3, 2)),
     "initial_values is read only with values='regression'; got values='fixed'"),
    (lambda: MetaNeighborhoodsHead(4, 3, entries=5).initialize_from_examples(
        torch.randn(5, 4), torch.arange(5) % 3, confidence="0.9"), r"confidence must lie in \(1/C, 1\).*got '0.9'"),
    (lambda: entry_dropout_mask(-1, 4, 0.5), "batch must be >= 0, got -1"),
    (lambda: entry_dropout_mask(2.5, 4, 0.5), "batch must be an integer, got 2.5"),
    (lambda: FunctionalMetaNeighborhoods(nn.Linear(3, 2), 3, 0, entries=4), "output_dim must be >= 1, got 0"),
    (lambda: FunctionalMetaNeighborhoods(nn.Linear(3, 2), 4, 2, entries=4),
     r"input_dim=4 must be the width of the model's inputs, but Linear fails on an input of shape \(1, 4\)"),
    (lambda: MetaNeighborhoodsHead(256, 1000, entries=20000)(torch.randn(4000, 256)),
     "MetaNeighborhoodsHead with 20000 entries .* on batches of 4000 needs about .* GB .*use smaller batches"),
])
def test_a_mistake_is_named_with_what_was_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_one_output_head_for_binary_labels():
    head = MetaNeighborhoodsHead(16, 1, entries=10, values="fixed")
    assert head(torch.randn(3, 16)).shape == (3, 1)


def test_ifilm_takes_half_precision_activations_outside_autocast():
    assert IFiLM(8)(torch.randn(2, 8, 3, 3).bfloat16()).dtype == torch.bfloat16


@pytest.fixture
def float64_default():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_the_heads_follow_torchs_default_dtype(float64_default):
    head = MetaNeighborhoodsHead(8, 3, entries=5)
    assert {p.dtype for p in head.parameters()} == {torch.float64}
    assert head(torch.randn(2, 8)).dtype == torch.float64


def test_the_estimators_fit_float32_models_whatever_the_default_dtype(float64_default):
    X = np.random.RandomState(0).randn(60, 4)
    y = (X[:, 0] > 0).astype(int)
    for estimator in (MetaNeighborsClassifier(random_state=0, max_epochs=20),
                      MetaNeighborsClassifier(space="input", random_state=0, max_epochs=20),
                      MetaNeighborsRegressor(random_state=0, max_epochs=20)):
        fitted = estimator.fit(X, y)
        assert {p.dtype for p in fitted.module_.parameters()} == {torch.float32}
        assert fitted.score(X, y) > 0.5
        assert torch.get_default_dtype() == torch.float64                # the user's default, untouched


@pytest.mark.parametrize("params,match", [
    ({"entries": 10 ** 9}, r"MetaNeighborsRegressor with entries=1000000000, layers=\d+ and width=\d+ does not fit"),
    ({"width": 10 ** 6}, r"width=1000000 does not fit: .*use a smaller width"),
    ({"entries": 10 ** 9, "width": 16}, r"width=16 does not fit: MN's finetuned linear layer \(a feature-space "
                                         r"model's head\) with 1000000000 entries \(16 features, 1 output\)"),
])
def test_an_estimator_too_large_for_memory_names_its_parameters(params, match):
    with pytest.raises(TooLargeForMemory, match=match):
        MetaNeighborsRegressor(**params).fit(np.random.randn(40, 3), np.random.randn(40))


@pytest.mark.parametrize("space", ["input", "feature"])
def test_a_training_batch_too_large_for_memory_is_refused_before_it_is_drawn_in_either_space(space, monkeypatch):
    """The dictionary fits, a batch's (B, S) attention does not: fit_tabular refuses it with the batch
    size, for the feature-space model (the estimators' default) as for the input-space one."""
    import nslviz._memory as memory
    from nslviz.feature_space import MetaNeighborhoodsFeatureMLP
    from nslviz.regression import MetaNeighborhoodsMLP
    from nslviz.training.tabular import fit_tabular
    model = (MetaNeighborhoodsMLP(3, 1, layers=2, width=16, entries=1000) if space == "input" else
             MetaNeighborhoodsFeatureMLP(3, 1, layers=2, width=16, entries=1000, loss="mse"))
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 10 ** 6)    # 1 MB
    x, y = torch.randn(400, 3), torch.randn(400, 1)
    with pytest.raises(TooLargeForMemory, match=r"on batches of 256 needs about .* more than the 1\.0 MB"):
        fit_tabular(model, x, y, batch_size=256, max_epochs=1)
    fit_tabular(model, x, y, batch_size=8, max_epochs=1)                               # small batches fit


def test_eval_mode_gives_back_the_training_mode_the_model_had_also_after_an_error():
    from nslviz._modes import eval_mode
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    for training in (True, False):
        model.train(training)
        with pytest.raises(RuntimeError, match="in the block"):
            with eval_mode(model) as inside:
                assert inside is model and not model.training and not model[1].training
                raise RuntimeError("in the block")
        assert model.training == model[1].training == training


def test_the_layers_and_models_give_shapes_on_the_meta_device():
    """Shapes without data (the meta device has no autocast to turn off)."""
    from nslviz.models.classifier import build_image_model
    meta = torch.device("meta")
    assert IFiLM(3).to(meta)(torch.empty(2, 3, 4, 4, device=meta)).shape == (2, 3, 4, 4)
    assert MetaNeighborhoodsHead(4, 3, entries=5).to(meta)(torch.empty(2, 4, device=meta)).shape == (2, 3)
    for mode in ("static_uns", "dynamic_dns", "dynamic_uns"):
        assert NSConv2d(3, 4, mode=mode).to(meta)(torch.empty(2, 3, 6, 5, device=meta)).shape == (2, 4, 6, 5)
    for method in ("mn_ifilm", "maxl"):
        model = build_image_model(method, "convnet4", 10, in_channels=3, image_size=32).to(meta)
        assert model(torch.empty(2, 3, 32, 32, device=meta)).shape == (2, 10)


def test_entry_dropout_draws_a_mask_per_example_under_vmap():
    head = MetaNeighborhoodsHead(4, 3, entries=5, entry_dropout=0.5).train()
    z = torch.randn(3, 4)
    per_example = torch.func.vmap(lambda row: head(row[None])[0], randomness="different")(z)
    assert per_example.shape == (3, 3) and torch.isfinite(per_example).all()


def test_the_head_asks_for_memory_once_per_larger_batch(monkeypatch):
    """On a GPU the question is a host sync: not on every training step."""
    import nslviz.neighborhoods as neighborhoods
    asked = []
    monkeypatch.setattr(neighborhoods, "CHECKED_BYTES", 0)                  # every batch is large enough to ask
    monkeypatch.setattr(neighborhoods, "check_memory",                     # the constructor's check has batch 0
                        lambda what, sizes, advice, **device: sizes["attention"] and asked.append(sizes))
    head = MetaNeighborhoodsHead(4, 3, entries=5)
    for batch in (8, 8, 4, 16, 8):
        head(torch.randn(batch, 4))
    head.check_memory(32)                                                  # asked directly: forward needs no more
    head(torch.randn(24, 4))
    assert [sizes["attention"] / (2 * 5 * 4) for sizes in asked] == [8, 16, 32]   # attention: 2·B·S floats
    assert all("dictionary" not in sizes for sizes in asked)               # allocated already: not asked for again


def test_the_memory_left_on_a_gpu_counts_what_the_cache_holds_unused(monkeypatch):
    """torch's caching allocator keeps freed blocks reserved: they serve a new tensor as free memory does."""
    from nslviz._memory import available_bytes
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 30 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 12 * 2**30)
    assert available_bytes("cuda:0") == (3 + 30 - 12) * 2**30


def test_without_torchs_autocast_query_the_cpu_and_cuda_have_autocast(monkeypatch):
    """torch < 2.4 has no torch.amp.is_autocast_available: the layers still run."""
    from nslviz._precision import autocast_available
    monkeypatch.delattr(torch.amp, "is_autocast_available")
    assert autocast_available("cpu") and autocast_available("cuda") and not autocast_available("meta")
    assert MetaNeighborhoodsHead(4, 3, entries=5)(torch.randn(2, 4)).shape == (2, 3)


def test_the_input_width_probe_changes_nothing_a_seed_decides():
    def keys(model):
        torch.manual_seed(1)
        return FunctionalMetaNeighborhoods(model, 3, 2, entries=4).dictionary.keys.detach().clone()
    with_dropout = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    assert torch.equal(keys(with_dropout), keys(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))))
    assert with_dropout.training                                           # its mode given back
