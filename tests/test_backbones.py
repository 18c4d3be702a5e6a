"""MN backbones (docs/official-code.md §A.5, §A.6): shapes, exact parameter counts, iFiLM placement,
identity at init, BN settings, options and their errors."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from nslviz import IFiLM, ifilm_modules
from nslviz.models import available_backbones, build_backbone

MN_BACKBONES = ["convnet4", "densenet40", "resnet29", "resnet56"]
ALL_BACKBONES = MN_BACKBONES + [name + "_64" for name in MN_BACKBONES]
FEATURE_DIM = {"convnet4": 192, "densenet40": 258, "resnet29": 256, "resnet56": 256}

# Parameter counts (3 input channels, no iFiLM), derived by hand; BN = 2·C (γ, β), no conv biases.
# resnet29: stem 3·16·9 + 32 = 464
#   stage 0 (16 -> width 16 -> 64): block 0 = 16·16 + (32 + 16·16·9) + (32 + 16·64) + 16·64 [projection]
#           = 4672; blocks 1.. = (128 + 64·16) + (32 + 2304) + (32 + 1024) = 4544
#   stage 1 (64 -> 64 -> 128): block 0 = (128 + 4096) + (128 + 36864) + (128 + 8192) + 8192 = 57728;
#           blocks 1.. = (256 + 8192) + (128 + 36864) + (128 + 8192) = 53760
#   stage 2 (128 -> 128 -> 256): block 0 = (256 + 16384) + (256 + 147456) + (256 + 32768) + 32768
#           = 230144; blocks 1.. = (512 + 32768) + (256 + 147456) + (256 + 32768) = 214016
#   final BN 512.  n = 3: 464 + 4672 + 2·4544 + 57728 + 2·53760 + 230144 + 2·214016 + 512 = 838160
#   n = 6: + 3·(4544 + 53760 + 214016) = 1655120
# densenet40: stem 3·24·9 = 648; a dense layer on c channels = 2c + 48c + 96 + 48·12·9 = 50c + 5280;
#   block inputs c = 24, 84, 114 (+12 per layer), Σc over a block = 12·c0 + 792:
#   blocks 50·1080 + 12·5280 = 117360, 50·1800 + 63360 = 153360, 50·2160 + 63360 = 171360;
#   transitions 2·168 + 168·84 = 14448, 2·228 + 228·114 = 26448; final BN 2·258 = 516; total 484140
# convnet4: 3·24·9 + 48 + 24·96·9 + 192 + 96·192·9 + 384 + 192·192·9 + 384 = 520056
PARAMETERS = {"resnet29": 838160, "resnet56": 1655120, "densenet40": 484140, "convnet4": 520056}
STEM_OUT = {"resnet29": 16, "resnet56": 16, "densenet40": 24, "convnet4": 24}        # first conv: 9·C_in·out
# iFiLM modules per placement (A.5): ResNet all = 3 per block + 3 shortcuts + final BN; last = 3·3 + 1
IFILM_COUNT = {"resnet29": {"all": 31, "last": 10}, "resnet56": {"all": 58, "last": 10},
               "densenet40": {"all": 74, "last": 8}, "convnet4": {"all": 4, "last": 1}}


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: see tests/conftest.py


def base(name):
    return name.removesuffix("_64")


def size_of(name):
    return 64 if name.endswith("_64") else 32


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_registry_lists_every_backbone():
    assert set(ALL_BACKBONES) <= set(available_backbones())


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", ALL_BACKBONES)
def test_feature_shapes(name, in_channels):
    torch.manual_seed(0)
    net = build_backbone(name, in_channels=in_channels, image_size=size_of(name)).eval()
    assert net.feature_dim == FEATURE_DIM[base(name)]
    with torch.no_grad():
        features = net(torch.rand(2, in_channels, size_of(name), size_of(name)))
    assert features.shape == (2, net.feature_dim) and torch.isfinite(features).all()


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", ALL_BACKBONES)
def test_exact_parameter_counts(name, in_channels):
    expected = PARAMETERS[base(name)] - 9 * (3 - in_channels) * STEM_OUT[base(name)]
    assert count(build_backbone(name, in_channels=in_channels)) == expected


def test_resnet56_against_keras_v2_reference():
    """The Keras `cifar10_resnet` v2 (depth 56) differs only by conv biases, BN moving statistics and
    its Dense classifier; adding those back to ours gives its total."""
    net = build_backbone("resnet56")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 1 + 3 * 3 * 6 + 3 and len(norms) == 1 + 3 * 3 * 6 - 1 + 1   # 58 convs, 55 BNs
    conv_biases = sum(m.out_channels for m in convs)
    moving_stats = sum(2 * m.num_features for m in norms)
    assert conv_biases == 5648 and moving_stats == 10400
    keras_trainable = count(net) + conv_biases + (256 * 10 + 10)           # Dense(10) classifier
    assert keras_trainable == 1_663_338 and keras_trainable + moving_stats == 1_673_738


@pytest.mark.parametrize("name", MN_BACKBONES)
def test_ifilm_placement_counts(name):
    plain = count(build_backbone(name))
    for placement in ("none", "all", "last"):
        net = build_backbone(name, ifilm=placement, ifilm_entries=5)
        films = ifilm_modules(net)
        assert len(films) == IFILM_COUNT[name].get(placement, 0)
        assert all(f.entries == 5 for f in films)
        assert count(net) == plain + sum(3 * 5 * f.channels + 1 for f in films)


def test_resnet_ifilm_slots_as_official():
    net = build_backbone("resnet29", ifilm="all")
    assert not any(isinstance(m, IFiLM) for m in net.stem.modules())              # the stem is never modulated
    first = net.stages[0][0]
    assert isinstance(first.layer1.norm, nn.Identity) and isinstance(first.layer1.act, nn.Identity)
    assert first.layer1.film.channels == 16                                          # modulates the stem's output
    assert [net.stages[s][0].shortcut.film.channels for s in range(3)] == [64, 128, 256]
    assert [net.stages[2][1].__getattr__(f"layer{i}").film.channels for i in (1, 2, 3)] == [256, 128, 128]
    assert net.final_film.channels == 256
    last = build_backbone("resnet29", ifilm="last")
    for stage in last.stages:
        assert all(isinstance(getattr(stage[-1], f"layer{i}").film, IFiLM) for i in (1, 2, 3))
        assert not any(isinstance(m, IFiLM) for block in stage[:-1] for m in block.modules())
    assert isinstance(last.final_film, IFiLM)


def test_densenet_transition_ifilm_option():
    official = build_backbone("densenet40", ifilm="all", transition_ifilm=False)
    assert len(ifilm_modules(official)) == 72
    assert not any(isinstance(m, IFiLM) for m in official.final_norm.modules())
    assert len(ifilm_modules(build_backbone("densenet40", ifilm="last", transition_ifilm=False))) == 6
    from nslviz.models.classifier import build_image_model
    from nslviz.training.config import TrainConfig
    from nslviz.training.config import build_model
    # the trainer and the CLI reach it too (TrainConfig.transition_ifilm, --transition-ifilm false)
    config = TrainConfig(method="mn_ifilm", backbone="densenet40", transition_ifilm=False, entries=10)
    assert len(ifilm_modules(build_model(config, 10, 3, 32))) == 72
    assert len(ifilm_modules(build_image_model("mn_ifilm", "densenet40", 10, entries=10))) > 72
    with pytest.raises(ValueError, match="backbone 'resnet29' has none"):
        build_image_model("mn_ifilm", "resnet29", 10, entries=10, transition_ifilm=False)


def test_densenet_channel_progression():
    net = build_backbone("densenet40").eval()
    shapes = []
    hooks = [block.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for block in net.body]
    with torch.no_grad():
        net(torch.rand(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert shapes == [(168, 32, 32), (84, 16, 16), (228, 16, 16), (114, 8, 8), (258, 8, 8)]
    assert net.stem.out_channels == 24


def test_64px_variants_see_32px_maps():
    maps = {}
    for name in ("resnet29", "resnet29_64"):
        net = build_backbone(name).eval()
        net.stages.register_forward_hook(lambda m, i, o, name=name: maps.__setitem__(name, tuple(o.shape)))
        with torch.no_grad():
            net(torch.rand(1, 3, size_of(name), size_of(name)))
    assert maps["resnet29"] == maps["resnet29_64"] == (1, 256, 8, 8)
    net = build_backbone("convnet4_64").eval()
    with torch.no_grad():
        assert tuple(net.feature_map(torch.rand(1, 3, 64, 64)).shape) == (1, 192, 7, 7)


@pytest.mark.parametrize("name", MN_BACKBONES)
def test_ifilm_is_identity_at_init(name):
    torch.manual_seed(0)
    plain = build_backbone(name)
    modulated = build_backbone(name, ifilm="all")
    missing, unexpected = modulated.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".film" in key or "_film" in key for key in missing)
    images = torch.rand(4, 3, 16, 16)
    for train in (True, False):
        plain.train(train), modulated.train(train)
        torch.manual_seed(1)
        reference = plain(images)
        torch.manual_seed(1)                                     # same dropout masks (densenet)
        assert torch.equal(modulated(images), reference)


@pytest.mark.parametrize("name", ["convnet4", "resnet29", "densenet40"])
def test_gradients_reach_ifilm_after_one_step(name):
    torch.manual_seed(0)
    net = build_backbone(name, ifilm="all")
    readout = nn.Linear(net.feature_dim, 3)
    images, labels = torch.rand(6, 3, 8, 8), torch.arange(6) % 3
    optimizer = torch.optim.SGD([*net.parameters(), *readout.parameters()], lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.cross_entropy(readout(net(images)), labels).backward()
        if _ == 0:
            optimizer.step()
    for i, film in enumerate(ifilm_modules(net)):
        for pname, parameter in film.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, (i, pname)


@pytest.mark.parametrize("name", MN_BACKBONES)
def test_final_relu(name):
    torch.manual_seed(0)
    images = torch.rand(4, 3, 16, 16)
    cosine = build_backbone(name)(images)                      # train mode: BN output has batch mean 0
    assert (cosine < 0).any()
    torch.manual_seed(0)
    dot = build_backbone(name, final_relu=True)
    assert (dot(images) >= 0).all()
    assert sum(isinstance(m, nn.ReLU) for m in dot.modules()) == \
        sum(isinstance(m, nn.ReLU) for m in build_backbone(name).modules()) + 1


def test_batchnorm_and_conv_settings_as_official():
    net = build_backbone("resnet29")
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-3 and m.momentum == 0.1 and m.affine for m in norms)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.bias is None for m in convs)
    widest = net.stages[2][1].layer2.conv                     # 128 -> 128, 3x3: Glorot uniform bound
    bound = (6 / (9 * 128 + 9 * 128)) ** 0.5
    assert widest.weight.abs().max() <= bound and widest.weight.abs().max() > 0.99 * bound


@pytest.mark.parametrize("name", MN_BACKBONES)
def test_same_seed_same_network(name):
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        net = build_backbone(name, ifilm="all")
        torch.manual_seed(8)
        outputs.append(net(torch.rand(2, 3, 8, 8)))
    assert torch.equal(*outputs)


def test_train_and_eval_modes():
    torch.manual_seed(0)
    net = build_backbone("densenet40", ifilm="all")
    images = torch.rand(4, 3, 8, 8)
    before = net.final_norm.running_mean.clone()
    train_a, train_b = net(images), net(images)
    assert not torch.equal(train_a, train_b)                  # dropout 0.2 is active in training
    assert not torch.equal(net.final_norm.running_mean, before)
    net.eval()
    stats = net.final_norm.running_mean.clone()
    with torch.no_grad():
        eval_a, eval_b = net(images), net(images)
    assert torch.equal(eval_a, eval_b) and torch.equal(net.final_norm.running_mean, stats)
    assert not torch.allclose(eval_a, train_a)                # running statistics, not batch statistics


def test_channels_last_bf16_autocast_forward_backward():
    torch.manual_seed(0)
    net = build_backbone("resnet29", ifilm="all").to(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 16, 16).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = net(images)
    assert features.shape == (2, 256) and torch.isfinite(features.float()).all()
    with torch.no_grad():                                             # the same numbers as fp32 channels-first,
        reference = copy.deepcopy(net).to(memory_format=torch.contiguous_format)(images.contiguous())   # bf16's precision
    torch.testing.assert_close(features.float(), reference, atol=0.05, rtol=0.05)
    features.float().square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("options, message", [
    (dict(name="resnet30"), "unknown backbone"),
    (dict(name="resnet29", ifilm="first"), "ifilm placement"),
    (dict(name="resnet29", nsl="bilinear"), "nsl mode"),
    (dict(name="resnet29", in_channels=0), "in_channels"),
    (dict(name="resnet29", ifilm_entries=0), "ifilm_entries"),
    (dict(name="resnet29", final_relu="yes"), "final_relu"),
    (dict(name="spherenet9", final_relu=True), "ends with its SphereConv fc6, never with a ReLU; expected "
                                               "final_relu=False, got True"),
    (dict(name="resnet29", dropout=0.2), "does not take option"),
    (dict(name="cnn9", ifilm_entries=0), "ifilm_entries"),                    # checked by every contract builder
    (dict(name="spherenet9", ifilm_entries=0), "ifilm_entries"),              # ... and by SphereNet-9's
    (dict(name="spherenet9", nsl_options=[1]), "nsl_options must be a dict"),   # not a TypeError from dict()
    (dict(name="spherenet9", image_size="32"), "image_size must be an integer"),
    (dict(name="spherenet9", dropout=0.2), "does not take option"),
    (dict(name="cnn9", ifilm="first"), "has no iFiLM .* use ifilm='none', got 'first'"),   # not the placements it lacks
    (dict(name="resnet29", nsl_options=[1]), "nsl_options"),
    (dict(name="resnet29", nsl_options={"init": "ones"}), "unknown nsl option"),
    (dict(name="densenet40", dropout=1.5), "dropout"),
    (dict(name="densenet40", image_size=3), "image_size >= 4"),
    (dict(name="densenet40_64", image_size=6), "image_size >= 7"),
    (dict(name="convnet4", image_size=6), "image_size >= 7"),
    (dict(name="convnet4_64", image_size=12), "image_size >= 13"),
    (dict(name="convnet4", image_size=32.0), "image_size"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(options.pop("name"), **options)


@pytest.mark.parametrize("name, side, message", [
    ("convnet4", 5, "ConvNet4 needs images of at least 7x7 pixels .* got 5x5"),
    ("densenet40", 3, "DenseNet needs images of at least 4x4 pixels .* got 3x3"),
    ("cnn9", 16, r"NSLPlainCNN was built for 32×32 images .* got \(16, 16\)"),
])
def test_too_small_images_are_refused_before_the_poolings(name, side, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(name)(torch.rand(2, 3, side, side))
    assert build_backbone("resnet29")(torch.rand(2, 3, 1, 1)).shape == (2, 256)    # strided SAME convs: any size


def test_wrong_input_channels():
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 1, H, W\)"):
        build_backbone("convnet4", in_channels=1)(torch.rand(2, 3, 32, 32))


@pytest.mark.parametrize("name", ["convnet4", "resnet29", "densenet40", "cnn9", "cnn4", "spherenet9"])
def test_every_backbone_names_images_of_another_type_or_dtype_and_the_conversion(name):
    """uint8 images, float64 ones (what torch.from_numpy gives) and NumPy arrays get the conversion to
    make, from every family, not an error from inside torch (or, for SphereNet, features of 0..255)."""
    net = build_backbone(name, in_channels=1, image_size=32)
    label = type(net).__name__
    with pytest.raises(ValueError, match=f"{label} expected floating-point images in \\[0, 1\\] \\(torch.float32\\), got "
                                         f"dtype torch.uint8; convert uint8 images with nslviz.datasets.augment.to_float"):
        net(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=f"{label} images are torch.float64 but the layer's parameters are "
                                         f"torch.float32; convert the input with .to\\(torch.float32\\)"):
        net(torch.zeros(2, 1, 32, 32, dtype=torch.float64))
    with pytest.raises(ValueError, match=f"{label} images must be a torch.Tensor .* got ndarray; convert with "
                                         f"torch.as_tensor"):
        net(np.zeros((2, 1, 32, 32), dtype=np.float32))
    images = torch.rand(2, 1, 32, 32)
    images[1, 0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="images contains 1 NaN or infinite value"):      # CNN-9, SphereNet too
        net(images)
    assert net.double()(torch.rand(2, 1, 32, 32, dtype=torch.float64)).dtype == torch.float64


def test_integer_or_non_finite_images_are_refused_with_what_was_expected():
    net = build_backbone("convnet4", in_channels=1)
    with pytest.raises(ValueError, match="expected floating-point images in \\[0, 1\\] \\(torch.float32\\), got dtype "
                                         "torch.uint8; convert uint8 images with nslviz.datasets.augment.to_float"):
        net(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    images = torch.rand(2, 1, 16, 16)
    images[1, 0, 3, 4] = float("nan")
    images[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="images contains 2 NaN or infinite value"):
        net(images)


def test_smallest_accepted_sizes_run():
    for name, size in [("convnet4", 7), ("convnet4_64", 13), ("densenet40", 4), ("densenet40_64", 7)]:
        net = build_backbone(name, image_size=size).eval()
        with torch.no_grad():
            assert net(torch.rand(1, 3, size, size)).shape == (1, net.feature_dim)


def test_static_dns_convs():
    try:
        net = build_backbone("resnet29", nsl="static_dns")
    except ValueError as error:
        if "not implemented" in str(error):
            pytest.skip(f"nslviz.nsl.make_conv: {error}")
        raise
    plain_3x3 = [m for m in net.modules() if type(m) is nn.Conv2d and m.kernel_size == (3, 3)]
    assert len(plain_3x3) == 1                                 # only the stem; every bottleneck 3x3 is NSL
    from nslviz.nsl import nsl_layers
    assert len(nsl_layers(net)) == 9
    assert count(net) == PARAMETERS["resnet29"] + 9 * 9         # one 3x3 diagonal M per layer
    convnet = build_backbone("convnet4", nsl="static_dns")
    assert count(convnet) == PARAMETERS["convnet4"] + 3 * 9
    assert convnet(torch.rand(2, 3, 8, 8)).shape == (2, 192)


def test_shared_predictor_is_built_once_per_network():
    from nslviz.nsl import SharedSimilarityPredictor, nsl_layers
    net = build_backbone("convnet4", nsl="dynamic_dns", nsl_options={"shared_predictor": True})
    assert len(nsl_layers(net)) == 3
    assert sum(isinstance(m, SharedSimilarityPredictor) for m in net.modules()) == 1


def test_reestimate_batch_norm_averages_every_batch_and_refuses_none():
    """The running statistics become the exact average over the batches given (momentum None), the
    norms keep their momentum and the model ends in eval mode; no batches is an error that leaves the
    statistics as they were (they used to be reset to mean 0, variance 1)."""
    from nslviz.models.layers import reestimate_batch_norm
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, momentum=0.3))
    batches = [torch.randn(8, 4) + shift for shift in (0.0, 2.0, -1.0)]
    reestimate_batch_norm(model, [model[1]], batches)
    with torch.no_grad():
        hidden = [model[0](batch) for batch in batches]
    torch.testing.assert_close(model[1].running_mean, torch.stack([h.mean(0) for h in hidden]).mean(0))
    torch.testing.assert_close(model[1].running_var, torch.stack([h.var(0) for h in hidden]).mean(0))
    assert model[1].momentum == 0.3 and not model.training
    before = model[1].running_mean.clone(), model[1].running_var.clone()
    with pytest.raises(ValueError, match="got no batches"):
        reestimate_batch_norm(model, [model[1]], iter([]))
    torch.testing.assert_close((model[1].running_mean, model[1].running_var), before)
    assert model[1].momentum == 0.3

    def failing():                                       # a batch averaged, then the loader fails
        yield batches[0]
        raise OSError("disk gone")
    with pytest.raises(OSError, match="disk gone"):
        reestimate_batch_norm(model, [model[1]], failing())
    torch.testing.assert_close((model[1].running_mean, model[1].running_var), before)
    assert model[1].momentum == 0.3 and model[1].num_batches_tracked == 3 and not model.training


def test_resnet110_is_resnet56_with_twice_the_blocks_and_parameters():
    """ResNet-110 (n = 12) of the MN paper's remark on depth, "doubling the number of parameters" of
    ResNet-56: n = 6's count plus 6 more blocks per stage, 6·(4544 + 53760 + 214016) (derivation above),
    1.99 times as many; the same 256 features; iFiLM "all" = 3·3·12 + 3 shortcuts + final BN = 112."""
    torch.manual_seed(0)
    net = build_backbone("resnet110").eval()
    assert net.depth == 110 and [len(stage) for stage in net.stages] == [12, 12, 12]
    assert count(net) == PARAMETERS["resnet56"] + 6 * (4544 + 53760 + 214016) == 3_289_040
    assert 1.95 < count(net) / PARAMETERS["resnet56"] < 2.0
    with torch.no_grad():
        features = net(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, 256) and torch.isfinite(features).all()
    assert len(ifilm_modules(build_backbone("resnet110", ifilm="all"))) == 112
    assert len(ifilm_modules(build_backbone("resnet110", ifilm="last"))) == 10


def test_the_dot_classifier_asks_for_a_final_relu_only_where_the_network_has_one():
    """The deep MN and NSL networks end with a ReLU in dot mode; ConvNet-4 and SphereNet-9 never do, and
    a dot-classifier SphereNet-9 builds without asking for one (its builder refuses final_relu=True)."""
    from nslviz.models.classifier import build_image_model, dot_mode_final_relu
    assert [dot_mode_final_relu(name, "dot") for name in ("resnet29", "cnn9", "convnet4", "spherenet9")] == \
        [True, True, False, False]
    assert not any(dot_mode_final_relu(name, "cosine") for name in ("resnet29", "cnn9"))
    model = build_image_model("vanilla", "spherenet9", 10, classifier="dot")
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_densenet_last_placement_modulates_the_last_layer_of_each_dense_block():
    net = build_backbone("densenet40", ifilm="last")
    blocks = [m for m in net.body if hasattr(m, "layers")]
    assert len(blocks) == 3
    for block in blocks:
        assert isinstance(block.layers[-1].film1, IFiLM) and isinstance(block.layers[-1].film2, IFiLM)
        assert not any(isinstance(m, IFiLM) for layer in block.layers[:-1] for m in layer.modules())


def test_one_by_one_convs_are_glorot_uniform_too():
    torch.manual_seed(0)
    conv = build_backbone("resnet29").stages[2][1].layer1.conv              # 256 -> 128, 1x1
    bound = (6 / (256 + 128)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.99 * bound
