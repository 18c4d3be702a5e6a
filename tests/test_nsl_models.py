"""The NSL paper's networks (nslviz.models.cnn): official CNN-9 structure and parameter counts, CNN++,
CNN-10, the builder contract, folding and regularisation through a whole network."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from nslviz.models import available_backbones, build_backbone
from nslviz.models.layers import count_parameters
from nslviz.nsl import NSL_MODES, NSConv2d, fold_static_nsl, nsl_layers, nsl_regularization


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors: see tests/conftest.py


def with_classifier(backbone: nn.Module, classes: int) -> int:
    """Parameters of backbone + the linear classifier the trainer attaches (weights + bias)."""
    return count_parameters(backbone) + backbone.feature_dim * classes + classes


def test_cnn9_parameter_counts_match_the_official_code(capsys):
    """docs/official-code.md §B.2: baseline ≈ 0.511M (conv + BN + 4×4 classifier), static DNS +81,
    static UNS +729, dynamic DNS predictors ≈ +0.380M, dynamic UNS ≈ +1.50M; CNN++ >= all."""
    counts = {nsl: with_classifier(build_backbone("cnn9", nsl=nsl, final_relu=True), 10) for nsl in NSL_MODES}
    counts["cnn9_plus"] = with_classifier(build_backbone("cnn9_plus", final_relu=True), 10)
    with capsys.disabled():
        print("\ncnn9 parameters at CIFAR-10 (with a 2048->10 linear classifier):",
              ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    assert counts["none"] == 490_720 + 20_480 + 10                 # convs + BN, classifier weights, bias
    assert counts["static_dns"] - counts["none"] == 9 * 9
    assert counts["static_uns"] - counts["none"] == 9 * 81
    assert counts["dynamic_dns"] - counts["none"] == 379_746
    assert counts["dynamic_uns"] - counts["none"] == 1_503_360
    assert counts["cnn9_plus"] >= max(counts[nsl] for nsl in NSL_MODES)


def test_cnn10_matches_table5_counts():
    plain = with_classifier(build_backbone("cnn10"), 1000)
    assert abs(plain - 8.90e6) < 0.01e6                             # Table 5: 8.90M
    dns64 = with_classifier(build_backbone("cnn10", nsl="dynamic_dns", nsl_options={"predictor_hidden": 64}), 1000)
    assert abs(dns64 - 9.61e6) < 0.01e6                             # Table 5: 9.61M
    dns32 = with_classifier(build_backbone("cnn10", nsl="dynamic_dns"), 1000)   # Appendix A: 32 hidden
    assert plain < dns32 < dns64 <= with_classifier(build_backbone("cnn10_plus"), 1000)


def test_cnn9_structure_and_features():
    torch.manual_seed(0)
    assert {"cnn9", "cnn9_plus", "cnn10", "cnn10_plus"} <= set(available_backbones())
    net = build_backbone("cnn9", nsl="static_dns", final_relu=True)
    assert net.feature_dim == 2048 and len(nsl_layers(net)) == 9
    assert type(net.stem.conv) is nn.Conv2d                          # the root conv stays plain
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert abs(net.stem.conv.weight.std().item() - (2 / 27) ** 0.5) < 0.05      # He std √(2/(9·C_in))
    features = net(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, 2048) and features.min() >= 0       # final ReLU, then max-pool
    small = build_backbone("cnn9", in_channels=1, image_size=16, nsl="dynamic_dns")
    out = small(torch.rand(3, 1, 16, 16))
    assert out.shape == (3, 512) and out.min() < 0                   # 2×2×128; final_relu=False
    wide = build_backbone("cnn10", image_size=64, nsl="dynamic_dns")
    assert wide(torch.rand(2, 3, 64, 64)).shape == (2, 512)
    assert build_backbone("cnn10", nsl="dynamic_dns").stages[0][0].conv.predictor.hidden == 32


@pytest.mark.parametrize("nsl", ["static_uns", "dynamic_dns"])
def test_cnn9_trains_end_to_end(nsl):
    """One SGD step through the whole network changes M (or the predictor) and every conv."""
    torch.manual_seed(1)
    net = build_backbone("cnn9", image_size=16, nsl=nsl, final_relu=True, nsl_options={"l1_weight": 1e-3})
    head = nn.Linear(net.feature_dim, 4)
    images, labels = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    loss = nn.functional.cross_entropy(head(net(images)), labels) + nsl_regularization(net)
    loss.backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_fold_static_cnn9_gives_a_plain_network_with_equal_outputs():
    torch.manual_seed(2)
    net = build_backbone("cnn9", image_size=16, nsl="static_uns", final_relu=True)
    with torch.no_grad():
        for layer in nsl_layers(net).values():
            layer.similarity.add_(0.1 * torch.randn(9, 9))
    net(torch.rand(8, 3, 16, 16))                                    # BN statistics
    net.eval()
    plain = fold_static_nsl(net)
    assert not nsl_layers(plain) and count_parameters(plain) == count_parameters(build_backbone("cnn9", image_size=16))
    images = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(plain(images), net(images), atol=1e-4, rtol=1e-4)


def test_shared_predictor_option_saves_parameters():
    disjoint = count_parameters(build_backbone("cnn9", nsl="dynamic_dns"))
    shared_net = build_backbone("cnn9", nsl="dynamic_dns", nsl_options={"shared_predictor": True})
    layers = list(nsl_layers(shared_net).values())
    assert all(layer.predictor.shared is layers[0].predictor.shared for layer in layers)
    assert count_parameters(build_backbone("cnn9")) < count_parameters(shared_net) < disjoint


def test_builder_contract_errors():
    with pytest.raises(ValueError, match="has no iFiLM"):
        build_backbone("cnn9", ifilm="all")
    with pytest.raises(ValueError, match="unknown nsl mode"):
        build_backbone("cnn9", nsl="dynamic")
    with pytest.raises(ValueError, match="image_size >= 8"):
        build_backbone("cnn9", image_size=4)
    with pytest.raises(ValueError, match="does not take option"):
        build_backbone("cnn9", width=64)
    with pytest.raises(ValueError, match="plain CNN\\+\\+"):
        build_backbone("cnn9_plus", nsl="static_dns")
    with pytest.raises(ValueError, match="unknown nsl option"):
        build_backbone("cnn9", nsl="static_dns", nsl_options={"bogus": 1})
    with pytest.raises(ValueError, match="final_relu"):
        build_backbone("cnn9", final_relu="yes")
    net = build_backbone("cnn9", image_size=16)
    with pytest.raises(ValueError, match="expected images of shape"):
        net(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="built for 16×16"):
        net(torch.rand(2, 3, 32, 32))
    assert isinstance(build_backbone("cnn9", nsl="dynamic_uns").stages[2][0].conv, NSConv2d)


def test_cnn10_keeps_its_last_conv_relu_and_drops_the_one_after_the_fc():
    """final_relu=False drops the ReLU after cnn10's FC only; every conv unit keeps its ReLU (the FC
    follows), and the FC's BatchNorm has the official eps 1e-3."""
    net = build_backbone("cnn10", image_size=64)
    assert isinstance(net.stages[-1][-2].act, nn.ReLU)                      # the last conv unit, before the pool
    assert isinstance(net.fc[-1], nn.Identity) and isinstance(net.fc[-2], nn.BatchNorm1d)
    assert net.fc[-2].eps == 1e-3
    assert isinstance(build_backbone("cnn10", image_size=64, final_relu=True).fc[-1], nn.ReLU)


@pytest.mark.parametrize("side,flat", [(29, 256), (61, 1024)])
def test_cnn10_takes_odd_image_sides(side, flat):
    """The ImageNet stem (7×7/2 conv, 3×3/2 max-pool, both padded) rounds each side up: 29 -> 15 -> 8 and
    61 -> 31 -> 16, then three 2×2 pools."""
    net = build_backbone("cnn10", image_size=side).eval()
    assert net.fc[1].in_features == flat
    with torch.no_grad():
        assert net(torch.rand(2, 3, side, side)).shape == (2, 512)


def test_plain_cnn_convs_start_at_he_std_of_their_input_channels():
    torch.manual_seed(0)
    convs = [m for m in build_backbone("cnn9").stages.modules() if type(m) is nn.Conv2d]
    assert len(convs) == 9
    for conv in convs:
        expected = (2 / (9 * conv.in_channels)) ** 0.5
        assert abs(conv.weight.std().item() / expected - 1) < 0.05, (conv.in_channels, conv.out_channels)
