"""Few-shot learning (NSL sec. 7.2, Table 6): episodes, the glyphs and Mini-ImageNet sets, the CNN-4,
test-time finetuning, MAML's meta-gradient and the few-shot command."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.func import functional_call

from nslviz.__main__ import main
from nslviz.datasets.episodes import mean_confidence_interval, sample_episodes
from nslviz.datasets.glyphs import glyph_class_split, make_glyphs
from nslviz.datasets.images import available_few_shot_datasets, available_image_datasets, load_image_dataset
from nslviz.models import build_backbone
from nslviz.nsl import NSConv2d
from nslviz.paper import nsl_table6_reference
from nslviz.training.episodic import FunctionalBackbone
from nslviz.experiments.few_shot import FewShotConfig, run_few_shot
from nslviz.training.few_shot_finetune import FinetuneProtocol, finetune_episodes
from nslviz.training.maml import InnerLoop, initial_parameters, maml_episodes, meta_loss
from test_image_datasets import check_orientation, marked, read_labels

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------
# episodes


def uneven_labels() -> torch.Tensor:
    """12 classes of 4 to 15 images, shuffled."""
    labels = torch.cat([torch.full((4 + c,), c) for c in range(12)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]


def test_a_query_image_is_never_a_support_image():
    labels = uneven_labels()
    episodes = sample_episodes(labels, episodes=500, way=5, shot=3, query=4, seed=1)
    assert episodes.support.shape == (500, 15) and episodes.query.shape == (500, 20)
    both = torch.cat([episodes.support, episodes.query], 1)                          # (E, 35)
    assert (both >= 0).all()
    distinct = torch.sort(both, 1).values.diff(dim=1) != 0
    assert distinct.all(), "an image appears twice in one episode (support and query, or twice in one set)"
    # each image belongs to the class its episode label names; 5 distinct classes, all with >= 7 images
    assert (labels[episodes.support] == torch.gather(episodes.classes, 1, episodes.support_labels)).all()
    assert (labels[episodes.query] == torch.gather(episodes.classes, 1, episodes.query_labels)).all()
    assert (torch.sort(episodes.classes, 1).values.diff(dim=1) != 0).all()
    assert set(episodes.classes.unique().tolist()) == set(range(3, 12))             # classes 0-2 have < 7 images
    assert (episodes.support_labels == torch.arange(5).repeat_interleave(3)).all()


def test_episode_classes_and_images_are_drawn_uniformly():
    """Every class that fits is drawn equally often over many episodes, and within a class every image
    equally often (here 9 eligible classes of 7 to 15 images; 2,000 episodes of 5 classes)."""
    labels = uneven_labels()
    episodes = sample_episodes(labels, episodes=2000, way=5, shot=3, query=4, seed=2)
    counts = torch.bincount(episodes.classes.flatten(), minlength=12)[3:].float()   # classes 3..11 fit
    expected = 2000 * 5 / 9
    assert ((counts - expected).abs() < 4 * (expected * (1 - 5 / 9)) ** 0.5).all(), counts.tolist()
    drawn = torch.bincount(torch.cat([episodes.support, episodes.query], 1).flatten(), minlength=len(labels)).float()
    for c in range(3, 12):
        members = drawn[labels == c]                                    # each image of class c: equal chances
        assert members.max() / members.min() < 1.35, (c, members.tolist())


def test_episodes_follow_the_seed():
    labels = uneven_labels()
    a, b = (sample_episodes(labels, episodes=20, way=3, shot=2, query=2, seed=7) for _ in range(2))
    c = sample_episodes(labels, episodes=20, way=3, shot=2, query=2, seed=8)
    assert torch.equal(a.support, b.support) and torch.equal(a.query, b.query)
    assert not torch.equal(a.support, c.support)


def test_episodes_need_enough_classes():
    with pytest.raises(ValueError, match="needs 5 classes of >= 20 images; the split has 0 .*lower way, shot or query"):
        sample_episodes(uneven_labels(), episodes=1, way=5, shot=5, query=15)
    with pytest.raises(ValueError, match="labels must be an int64"):
        sample_episodes(torch.zeros(10), episodes=1, way=2, shot=1, query=1)


def test_mean_and_95_percent_interval():
    values = torch.tensor([0.5, 0.7, 0.9, 0.6])
    mean, half = mean_confidence_interval(values)
    assert mean == pytest.approx(0.675)
    assert half == pytest.approx(1.96 * values.double().std().item() / 2)
    assert mean_confidence_interval(torch.tensor([0.4])) == (pytest.approx(0.4), 0.0)
    with pytest.raises(ValueError, match="must be finite numbers; got 1 that are not"):
        mean_confidence_interval(torch.tensor([0.5, float("nan")]))


# ----------------------------------------------------------------------------------------------
# data


def test_glyphs_are_deterministic_and_split_by_class():
    a, labels = make_glyphs(6, 4, image_size=16, seed=2)
    b, _ = make_glyphs(6, 4, image_size=16, seed=2)
    c, _ = make_glyphs(6, 4, image_size=16, seed=3)
    assert a.shape == (24, 3, 16, 16) and a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(labels, torch.arange(6).repeat_interleave(4))
    assert not torch.equal(a[0], a[1]), "two images of a class are pixel copies"
    data = load_image_dataset("glyphs", options={"num_classes": 25, "per_class": 3})
    assert glyph_class_split(25) == (16, 4, 5) and glyph_class_split(100) == (64, 16, 20)
    assert [len(split.labels.unique()) for split in data.splits().values()] == [16, 4, 5]
    classes = {name: set(split.labels.tolist()) for name, split in data.splits().items()}
    assert classes["train"].isdisjoint(classes["val"]) and classes["train"].isdisjoint(classes["test"])
    assert classes["val"].isdisjoint(classes["test"])
    assert "glyphs" in available_few_shot_datasets() and "glyphs" not in available_image_datasets()
    with pytest.raises(ValueError, match="few-shot set .* val_size must be None"):
        load_image_dataset("glyphs", val_size=10)


def write_mini_imagenet(root, splits: dict[str, list[str]], per_class: int = 3, size: int = 100) -> None:
    """Mini-ImageNet's real layout: images/<wnid><number>.jpg and {train,val,test}.csv (filename,label)."""
    folder = root / "mini-imagenet"
    (folder / "images").mkdir(parents=True)
    label = 0
    for split, wnids in splits.items():
        lines = ["filename,label"]
        for wnid in wnids:
            for i in range(per_class):
                name = f"{wnid}{i:08d}.jpg"
                Image.fromarray(marked(label, size)).save(folder / "images" / name, format="JPEG", quality=95)
                lines.append(f"{name},{wnid}")
            label += 1
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")


def test_mini_imagenet_reads_the_standard_split_files(tmp_path):
    write_mini_imagenet(tmp_path, {"train": ["n01532829", "n01558993", "n01704323"], "val": ["n01855672"],
                                   "test": ["n01930112", "n01981276"]})
    data = load_image_dataset("mini-imagenet", tmp_path)
    assert data.image_size == 84 and data.num_classes == 6 and data.class_names[0] == "n01532829"
    assert [len(split) for split in data.splits().values()] == [9, 3, 6]
    for split in data.splits().values():
        assert split.images.shape[1:] == (3, 84, 84)
        check_orientation(split)
        assert torch.equal(read_labels(split), split.labels)
    assert set(data.test.labels.tolist()) == {4, 5}
    assert "few-shot" not in data.split_notes and "disjoint classes" in data.split_notes
    assert "mini-imagenet" in available_few_shot_datasets() and "mini-imagenet" not in available_image_datasets()


def test_mini_imagenet_says_where_the_files_go(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mini-imagenet/images(.|\n)*train\.csv(.|\n)*How to get it"):
        load_image_dataset("mini-imagenet", tmp_path)
    write_mini_imagenet(tmp_path / "a", {"train": ["n01"], "val": ["n02"], "test": ["n01"]}, per_class=1, size=8)
    with pytest.raises(ValueError, match="shares classes with an earlier split"):
        load_image_dataset("mini-imagenet", tmp_path / "a")
    write_mini_imagenet(tmp_path / "b", {"train": ["n01"], "val": ["n02"], "test": ["n03"]}, per_class=1, size=8)
    (tmp_path / "b" / "mini-imagenet" / "images" / "n0200000000.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="1 of the 3 images listed"):
        load_image_dataset("mini-imagenet", tmp_path / "b")


# ----------------------------------------------------------------------------------------------
# CNN-4, finetuning, MAML


def test_cnn4_is_four_nsl_convs_of_32_filters():
    network = build_backbone("cnn4", nsl="static_dns", final_relu=True)
    convs = [m for m in network.modules() if isinstance(m, NSConv2d)]
    assert [(c.in_channels, c.out_channels, c.mode) for c in convs] == [(3, 32, "static_dns")] + [(32, 32, "static_dns")] * 3
    assert network(torch.rand(2, 3, 84, 84)).shape == (2, 800) and network.feature_dim == 800
    assert FunctionalBackbone(network).similarity_names == [f"stages.{i}.0.conv.similarity" for i in range(4)]


def small_network(nsl: str) -> FunctionalBackbone:
    torch.manual_seed(0)
    backbone = build_backbone("cnn4", image_size=16, nsl=nsl, final_relu=True).double()
    for module in backbone.modules():                       # running statistics that are not 0 / 1
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return FunctionalBackbone(backbone)


def tasks(count: int, way: int, shot: int, query: int):
    generator = torch.Generator().manual_seed(1)
    support = torch.rand(count, way * shot, 3, 16, 16, generator=generator, dtype=torch.double)
    query_images = torch.rand(count, way * query, 3, 16, 16, generator=generator, dtype=torch.double)
    return (support, torch.arange(way).repeat_interleave(shot).expand(count, -1), query_images,
            torch.arange(way).repeat_interleave(query).expand(count, -1))


def test_static_finetuning_adapts_m_per_episode_as_if_alone():
    network = small_network("static_dns")
    episodes = tasks(3, 2, 2, 2)
    protocol = FinetuneProtocol(epochs=4, lr=0.5)
    together = finetune_episodes(network, *episodes, way=2, adapt_similarity=True, protocol=protocol)
    alone = finetune_episodes(network, *(part[1:2] for part in episodes), way=2, adapt_similarity=True,
                              protocol=protocol)
    for name in network.similarity_names:
        assert together.similarity[name].shape == (3, 9)
        assert not torch.allclose(together.similarity[name], torch.ones(3, 9, dtype=torch.double)), "M was not finetuned"
        assert torch.allclose(together.similarity[name][1:2], alone.similarity[name], atol=1e-12)
    assert torch.allclose(together.classifier["weight"][1:2], alone.classifier["weight"], atol=1e-12)
    assert torch.equal(network.frozen[network.similarity_names[0]], torch.ones(9, dtype=torch.double))


def test_dynamic_finetuning_retrains_the_classifier_only():
    network = small_network("dynamic_dns")
    before = {name: value.clone() for name, value in network.backbone.state_dict().items()}
    result = finetune_episodes(network, *tasks(2, 2, 2, 2), way=2, adapt_similarity=False,
                               protocol=FinetuneProtocol(epochs=3))
    assert result.similarity == {} and result.accuracies.shape == (2,)
    assert result.classifier["weight"].abs().sum() > 0
    assert all(torch.equal(before[name], value) for name, value in network.backbone.state_dict().items())
    with pytest.raises(ValueError, match="static NSL layers"):
        finetune_episodes(network, *tasks(1, 2, 1, 1), way=2, adapt_similarity=True)


def test_finetuning_is_sgd_with_the_papers_momentum_dampening_and_weight_decay():
    """On fixed features (plain CNN, dynamic NSN) finetuning trains a zero classifier as torch's SGD does
    with the paper's lr 0.01, momentum 0.9, dampening 0.9 and weight decay 1e-3, full batch on the support set."""
    network = small_network("none")
    support, support_labels, query, query_labels = tasks(1, 2, 3, 2)
    result = finetune_episodes(network, support, support_labels, query, query_labels, way=2, adapt_similarity=False,
                               protocol=FinetuneProtocol(epochs=6))
    features = network.features(support[0]).detach()                                  # (S, D)
    weight = torch.zeros(2, network.feature_dim, dtype=torch.double, requires_grad=True)
    bias = torch.zeros(2, dtype=torch.double, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=0.01, momentum=0.9, dampening=0.9, weight_decay=1e-3)
    for _ in range(6):
        optimizer.zero_grad()
        F.cross_entropy(features @ weight.T + bias, support_labels[0]).backward()
        optimizer.step()
    torch.testing.assert_close(result.classifier["weight"][0], weight.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(result.classifier["bias"][0], bias.detach(), rtol=1e-9, atol=1e-12)


def reference_meta_gradient(network: FunctionalBackbone, init: dict, support, support_labels, query, query_labels,
                            inner: InnerLoop) -> list[torch.Tensor]:
    """MAML eq. (7) task by task with plain autograd (create_graph=True), no torch.func."""
    frozen = {name: p.detach() for name, p in network.backbone.named_parameters()}

    def features(params, images):
        return functional_call(network.backbone, {**frozen, **{n: params[n] for n in network.similarity_names}},
                               (images,))

    def loss(params, features_, labels):
        return F.cross_entropy(features_ @ params["weight"].T + params["bias"], labels)

    total = 0
    for task in range(support.shape[0]):
        params = dict(init)
        for _ in range(inner.steps):
            grads = torch.autograd.grad(loss(params, features(params, support[task]), support_labels[task]),
                                        list(params.values()), create_graph=True)
            params = {name: value - inner.step_size * g for (name, value), g in zip(params.items(), grads)}
        fixed = features(params, support[task])
        for _ in range(inner.classifier_steps):
            g_weight, g_bias = torch.autograd.grad(loss(params, fixed, support_labels[task]),
                                                   [params["weight"], params["bias"]], create_graph=True)
            params = {**params, "weight": params["weight"] - inner.step_size * g_weight,
                      "bias": params["bias"] - inner.step_size * g_bias}
        total = total + loss(params, features(params, query[task]), query_labels[task]) / support.shape[0]
    return list(torch.autograd.grad(total, list(init.values())))


def test_maml_meta_gradient_matches_a_per_task_autograd_reference():
    network = small_network("static_dns")
    generator = torch.Generator().manual_seed(2)
    init = {name: (value.detach().double() + 0.1 * torch.randn(value.shape, generator=generator, dtype=torch.double))
            .requires_grad_() for name, value in initial_parameters(network, 2).items()}
    episodes = tasks(3, 2, 2, 3)
    inner = InnerLoop(steps=2, classifier_steps=3)
    loss, accuracies = meta_loss(network, init, *episodes, inner)
    batched = torch.autograd.grad(loss, list(init.values()))
    reference = reference_meta_gradient(network, init, *episodes, inner)
    assert accuracies.shape == (3,)
    for name, ours, theirs in zip(init, batched, reference):
        assert theirs.abs().max() > 1e-3, f"the reference gradient of {name} vanishes: the test would prove nothing"
        assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-12), name
    first_order = torch.autograd.grad(meta_loss(network, init, *episodes, InnerLoop(2, 3, first_order=True))[0],
                                      init["stages.0.0.conv.similarity"])[0]
    assert not torch.allclose(first_order, batched[0], rtol=1e-3), "first order equals second order"


def test_the_start_accuracy_is_the_starts_own_prediction_without_an_inner_step():
    """At the zero classifier every class ties and argmax takes the first: 1/way of balanced queries.
    A classifier that favours class 1 gets exactly the class-1 queries right, per task."""
    from nslviz.training.maml import start_accuracy
    network = small_network("static_dns")
    init = {name: value.double() for name, value in initial_parameters(network, 4).items()}
    support, support_labels, query, query_labels = tasks(2, 4, 1, 3)
    assert start_accuracy(network, init, query, query_labels).tolist() == [0.25, 0.25]
    init["bias"] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.double)
    assert start_accuracy(network, init, query, query_labels).tolist() == [0.25, 0.25]
    labels = query_labels.clone()
    labels[1] = 1                                                           # task 1: every query is class 1
    assert start_accuracy(network, init, query, labels).tolist() == [0.25, 1.0]


def test_maml_test_time_adaptation_matches_the_meta_loss_accuracy():
    network = small_network("static_dns")
    init = {name: value.double() for name, value in initial_parameters(network, 2).items()}
    episodes = tasks(2, 2, 2, 3)
    inner = InnerLoop(steps=1, classifier_steps=2)
    assert torch.equal(maml_episodes(network, init, *episodes, inner=inner), meta_loss(network, init, *episodes, inner)[1])


# ----------------------------------------------------------------------------------------------
# the experiment and the command


def test_pretraining_keeps_the_static_m_at_identity_and_trains_the_kernels():
    """NSL sec. 7.2: the static NSN is pretrained with M fixed (= I, all ones for DNS); only the
    test-time finetuning learns M. Afterwards M is trainable again, for that finetuning."""
    from nslviz.experiments.few_shot import build_few_shot_network, load_few_shot_data, pretrain_network
    from nslviz.nsl.conv import similarity_parameters
    config = FewShotConfig(nsl="static_dns", dataset_options={"num_classes": 20, "per_class": 8},
                           pretrain_epochs=1, image_size=16)
    data = load_few_shot_data(config)
    torch.manual_seed(config.seed)                                     # as pretrain_network starts it
    start = build_few_shot_network(config, data.channels, data.image_size)
    network = pretrain_network(config, data).backbone
    masks = similarity_parameters(network)
    assert masks and all(torch.equal(m, torch.ones_like(m)) and m.requires_grad for m in masks)
    kernels = [m.weight for m in network.modules() if isinstance(m, NSConv2d)]
    assert kernels and not torch.equal(kernels[0], [m.weight for m in start.modules() if isinstance(m, NSConv2d)][0])


def test_run_few_shot_is_deterministic_and_beside_table6():
    config = FewShotConfig(dataset_options={"num_classes": 20, "per_class": 8}, episodes=4, way=3, shot=1, query=2,
                           pretrain_epochs=1, finetune_epochs=2, image_size=16, episode_batch=3)
    a, b = run_few_shot(config), run_few_shot(config)
    assert torch.equal(a.accuracies, b.accuracies) and a.accuracies.shape == (4,)
    summary = a.summary()
    assert summary["paper"] is None and summary["base_classes"] == 16 and summary["episodes"] == 4
    assert nsl_table6_reference("dynamic_dns", "finetune") == {"row": "Dynamic NSN", "backbone": "CNN-4",
                                                               "accuracy": 71.26, "interval95": 0.65}
    with pytest.raises(ValueError, match="a dynamic NSN has no static M"):
        FewShotConfig(nsl="dynamic_dns", method="maml")


def test_table_6_stands_beside_five_way_five_shot_runs_only():
    """Table 6 is 5-way 5-shot: a 5-way 1-shot or a 10-way 5-shot run has no paper number beside it."""
    assert nsl_table6_reference("static_dns", "maml", way=5, shot=5)["row"] == "Meta-learned static NSN"
    assert nsl_table6_reference("static_dns", "maml", way=5, shot=1) is None
    assert nsl_table6_reference("static_dns", "maml", way=10, shot=5) is None


@pytest.mark.parametrize("nsl,method", [("static_dns", "finetune"), ("dynamic_dns", "finetune"), ("static_dns", "maml")])
def test_the_episodes_adapted_together_change_no_accuracy(nsl, method):
    """episode_batch only groups the test episodes for speed (quick mode adapts 4 at once on the CPU, full
    mode 25 for a GPU): every episode's accuracy is the same at 1, 2 and all 5 at once."""
    small = dict(dataset_options={"num_classes": 20, "per_class": 8}, episodes=5, way=3, shot=1, query=2,
                 pretrain_epochs=1, finetune_epochs=2, meta_iterations=1, image_size=16, nsl=nsl, method=method)
    accuracies = [run_few_shot(FewShotConfig(**small, episode_batch=batch)).accuracies for batch in (1, 2, 5)]
    assert all(torch.equal(a, accuracies[0]) for a in accuracies[1:]), accuracies


def test_few_shot_runs_on_the_cnn9_of_table6s_last_row():
    """backbone "cnn9": the CIFAR CNN-9 of NSL Table 4 pretrained and adapted like the CNN-4 (static M
    finetuned per episode through it too); only dynamic NSN on it has a Table 6 row."""
    from nslviz.experiments.few_shot import pretrain_network
    from nslviz.models import build_backbone
    small = dict(dataset_options={"num_classes": 20, "per_class": 8}, episodes=2, way=3, shot=1, query=2,
                 pretrain_epochs=1, finetune_epochs=2, image_size=16, episode_batch=2, backbone="cnn9")
    for nsl in ("dynamic_dns", "static_dns"):
        summary = run_few_shot(FewShotConfig(**small, nsl=nsl)).summary()
        network = build_backbone("cnn9", in_channels=3, image_size=16, nsl=nsl, final_relu=True)
        assert summary["backbone"] == "cnn9" and summary["parameters"] == sum(p.numel() for p in network.parameters())
    assert nsl_table6_reference("dynamic_dns", "finetune", backbone="cnn9") == {
        "row": "Dynamic NSN (CNN-9)", "backbone": "CNN-9", "accuracy": 77.44, "interval95": 0.63}
    assert nsl_table6_reference("static_dns", "finetune", backbone="cnn9") is None
    with pytest.raises(ValueError, match="unknown few-shot backbone 'resnet29'; expected one of 'cnn4', 'cnn9'"):
        FewShotConfig(backbone="resnet29")
    cnn4 = pretrain_network(FewShotConfig(**{**small, "backbone": "cnn4"}, nsl="dynamic_dns"))
    with pytest.raises(ValueError, match="the pretrained network is a cnn4, the config's backbone 'cnn9'"):
        run_few_shot(FewShotConfig(**small, nsl="dynamic_dns"), pretrained=cnn4)


def test_run_few_shot_refuses_episodes_that_do_not_fit_before_pretraining(monkeypatch):
    import nslviz.experiments.few_shot as few_shot

    def never(*args, **kwargs):
        raise AssertionError("pretraining ran before the episode sizes were checked")
    monkeypatch.setattr(few_shot, "pretrain_network", never)
    small = dict(dataset_options={"num_classes": 20, "per_class": 8}, image_size=16, way=3, shot=1)
    with pytest.raises(ValueError, match=r"needs 3 classes of >= 16 images; the test \(novel\) classes of glyphs"):
        run_few_shot(FewShotConfig(**small, query=15))
    with pytest.raises(ValueError, match=r"needs 6 classes .*the test \(novel\) classes of glyphs has 4 such"):
        run_few_shot(FewShotConfig(**{**small, "way": 6}, query=2, method="finetune"))


def test_the_largest_seed_draws_maml_tasks_too():
    config = FewShotConfig(dataset_options={"num_classes": 12, "per_class": 6}, image_size=16, way=2, shot=1, query=1,
                           episodes=2, pretrain_epochs=0, method="maml", meta_iterations=1, meta_batch=1,
                           inner_steps=1, classifier_steps=1, seed=2**31 - 1)
    assert run_few_shot(config).accuracies.shape == (2,)


def test_few_shot_command_prints_json_last(capsys):
    code = main(["few-shot", "--classes", "12", "--per-class", "8", "--image-size", "16", "--way", "2", "--shot", "1",
                 "--query", "2", "--episodes", "3", "--pretrain-epochs", "1", "--method", "maml",
                 "--meta-iterations", "2", "--meta-batch", "2", "--inner-steps", "1", "--classifier-steps", "1",
                 "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[0].startswith("few-shot glyphs 2-way 1-shot, static_dns cnn4 maml: ")
    summary = json.loads(lines[-1])
    assert summary["method"] == "maml" and summary["meta_iterations"] == 2 and summary["episodes"] == 3
    assert 0 <= summary["accuracy"] <= 100


def test_few_shot_command_refuses_bad_combinations(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["few-shot", "--nsl", "dynamic_dns", "--method", "maml"])
    assert exit_info.value.code == 2 and "static M" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["few-shot", "--dataset", "mini-imagenet", "--per-class", "5"])


def test_named_runs_are_checked_before_any_pretraining():
    """Notebook 10's run names map to (nsl, method); a mistyped one is named with the choices before any
    network is trained, and a run whose pretrained network is missing says which one it needs."""
    from nslviz.experiments.few_shot import FEW_SHOT_RUNS, pretrain_for_runs, run_named
    assert FEW_SHOT_RUNS["static_dns_maml"] == ("static_dns", "maml") and FEW_SHOT_RUNS["none"] == ("none", "finetune")
    with pytest.raises(ValueError, match="few-shot run.*'static_dns_mam'.*static_dns_maml"):
        pretrain_for_runs(FewShotConfig(), None, ["static_dns", "static_dns_mam"])
    with pytest.raises(ValueError, match="no few-shot runs given"):
        pretrain_for_runs(FewShotConfig(), None, [])
    with pytest.raises(ValueError, match="run 'dynamic_dns' needs a pretrained 'dynamic_dns' network"):
        run_named(FewShotConfig(), None, ["dynamic_dns"], {})


def test_few_shot_quick_is_notebook_10s_quick_mode(capsys, monkeypatch):
    """`few-shot --quick` runs what notebook 10's quick mode runs (one function gives both), and refuses an
    option it sets itself rather than drop it without a word."""
    import nslviz.experiments.few_shot as few_shot
    from nslviz.experiments.few_shot import QUICK_FEW_SHOT, quick_few_shot_config

    seen = []

    def fake_run(config):
        seen.append(config)
        raise SystemExit(0)                                  # stop before any training: the config is the point

    monkeypatch.setattr(few_shot, "run_few_shot", fake_run)
    with pytest.raises(SystemExit):
        main(["few-shot", "--quick", "--nsl", "dynamic_dns", "--way", "3", "--no-progress"])
    expected = quick_few_shot_config(FewShotConfig(nsl="dynamic_dns", way=3))
    assert seen == [expected] and {k: getattr(expected, k) for k in QUICK_FEW_SHOT} == QUICK_FEW_SHOT
    notebook = json.loads(open("notebooks/10_nsl_few_shot.ipynb").read())
    assert any("config = quick_few_shot_config(config)" in "".join(c["source"]) for c in notebook["cells"])
    with pytest.raises(SystemExit) as refused:
        main(["few-shot", "--quick", "--episodes", "10", "--device", "auto"])
    assert refused.value.code == 2
    assert "--quick chooses --episodes, --device itself" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# what reaches MAML, the result's fields, the checks and the helpers of run_few_shot


TINY_MAML = dict(dataset_options={"num_classes": 12, "per_class": 8}, image_size=16, way=2, shot=1, query=2,
                 episodes=2, pretrain_epochs=0, method="maml", meta_iterations=3, meta_batch=2, inner_steps=2,
                 classifier_steps=3, inner_step_size=0.3, first_order=True, meta_lr=0.005)


def record_meta_train(monkeypatch) -> list[dict]:
    """Replace run_few_shot's meta_train by a recorder of its arguments that returns a known init: the
    initial parameters with M moved off I (so that the meta-learned M is told from the pretrained one)."""
    import nslviz.experiments.few_shot as few_shot
    from nslviz.training.maml import initial_parameters as initial
    calls = []

    def recorder(network, images, episodes, *, meta_batch, lr, inner, progress):
        init = {name: value.detach() + (0.25 if name in network.similarity_names else 0.0)
                for name, value in initial(network, episodes.way).items()}
        calls.append({"episodes": len(episodes), "meta_batch": meta_batch, "lr": lr, "inner": inner, "init": init,
                      "names": list(network.similarity_names)})
        return init, []

    monkeypatch.setattr(few_shot, "meta_train", recorder)
    return calls


def test_run_few_shot_gives_meta_train_the_configured_inner_loop_and_meta_lr(monkeypatch):
    """MAML's config (inner steps, classifier steps, step size, first order, meta lr) reaches meta_train:
    a default InnerLoop() or lr there would meta-train another protocol than the one asked for."""
    calls = record_meta_train(monkeypatch)
    run_few_shot(FewShotConfig(**TINY_MAML))
    assert len(calls) == 1
    assert calls[0]["inner"] == InnerLoop(steps=2, classifier_steps=3, step_size=0.3, first_order=True)
    assert calls[0]["lr"] == 0.005 and calls[0]["meta_batch"] == 2 and calls[0]["episodes"] == 3 * 2


def test_the_few_shot_command_passes_first_order_and_the_meta_lr_to_meta_train(monkeypatch):
    """--first-order, --meta-lr and the inner-loop options reach meta_train (dropped, MAML would run second
    order at lr 1e-3 without a word)."""
    calls = record_meta_train(monkeypatch)
    code = main(["few-shot", "--classes", "12", "--per-class", "8", "--image-size", "16", "--way", "2", "--shot", "1",
                 "--query", "2", "--episodes", "2", "--pretrain-epochs", "0", "--method", "maml", "--first-order",
                 "--meta-lr", "0.005", "--meta-iterations", "3", "--meta-batch", "2", "--inner-steps", "2",
                 "--classifier-steps", "3", "--inner-step-size", "0.3", "--no-progress"])
    assert code == 0 and len(calls) == 1
    assert calls[0]["inner"] == InnerLoop(steps=2, classifier_steps=3, step_size=0.3, first_order=True)
    assert calls[0]["lr"] == 0.005 and calls[0]["meta_batch"] == 2 and calls[0]["episodes"] == 6
    calls.clear()
    main(["few-shot", "--classes", "12", "--per-class", "8", "--image-size", "16", "--way", "2", "--shot", "1",
          "--query", "2", "--episodes", "2", "--pretrain-epochs", "0", "--method", "maml", "--meta-iterations", "1",
          "--meta-batch", "1", "--no-progress"])
    assert calls[0]["inner"] == InnerLoop() and calls[0]["lr"] == 1e-3          # the defaults without the options


def test_a_maml_result_reports_the_meta_learned_similarity(monkeypatch):
    """FewShotResult.similarity of method "maml" is the meta-learned M of each static layer, (9,) each (the
    test episodes' adaptation yields none: without it the result would say nothing of M)."""
    calls = record_meta_train(monkeypatch)
    result = run_few_shot(FewShotConfig(**TINY_MAML))
    names = calls[0]["names"]
    assert len(names) == 4 and list(result.similarity) == names
    for name in names:
        assert result.similarity[name].shape == (9,)
        assert torch.equal(result.similarity[name], calls[0]["init"][name])
        assert torch.equal(result.similarity[name], torch.full((9,), 1.25))       # I (all ones) + the recorder's 0.25


def test_the_summary_counts_no_meta_iterations_for_finetuning():
    """summary()["meta_iterations"]: the MAML steps run, so 0 for method "finetune" whatever the config holds."""
    from nslviz.experiments.few_shot import FewShotResult
    data = {"image_size": 16, "base_classes": 16}

    def summary(method):
        config = FewShotConfig(method=method, meta_iterations=7)
        return FewShotResult(config, torch.tensor([0.5, 1.0]), data, 100, [], [], 0.5, {"evaluate": 1.0}).summary()

    assert summary("finetune")["meta_iterations"] == 0
    assert summary("maml")["meta_iterations"] == 7


def test_run_few_shot_refuses_a_pretrained_network_of_another_nsl_mode():
    """A network pretrained for one nsl mode is not silently run as another (a static NSN adapted as a
    dynamic one); only the static NSN's network may serve nsl="none" (it is a plain CNN)."""
    from nslviz.experiments.few_shot import load_few_shot_data, pretrain_network
    small = dict(dataset_options={"num_classes": 12, "per_class": 8}, image_size=16, way=2, shot=1, query=2,
                 episodes=2, pretrain_epochs=0, finetune_epochs=1, episode_batch=2)
    data = load_few_shot_data(FewShotConfig(**small))
    static = pretrain_network(FewShotConfig(**small, nsl="static_dns"), data)
    dynamic = pretrain_network(FewShotConfig(**small, nsl="dynamic_dns"), data)
    with pytest.raises(ValueError, match="the pretrained network has nsl='static_dns', the config nsl='dynamic_dns'"):
        run_few_shot(FewShotConfig(**small, nsl="dynamic_dns"), data=data, pretrained=static)
    with pytest.raises(ValueError, match="the pretrained network has nsl='dynamic_dns', the config nsl='static_dns'"):
        run_few_shot(FewShotConfig(**small, nsl="static_dns"), data=data, pretrained=dynamic)
    with pytest.raises(ValueError, match="the pretrained network has nsl='dynamic_dns', the config nsl='none'"):
        run_few_shot(FewShotConfig(**small, nsl="none"), data=data, pretrained=dynamic)
    assert run_few_shot(FewShotConfig(**small, nsl="none"), data=data, pretrained=static).accuracies.shape == (2,)


def test_batch_norm_statistics_are_recomputed_over_the_first_50_batches():
    """recompute_batch_norm: BatchNorm's running statistics become the average of the batch statistics of
    the first BATCH_NORM_BATCHES = 50 batches exactly (not of one batch, nor of every image)."""
    from nslviz.experiments.few_shot import BATCH_NORM_BATCHES, recompute_batch_norm
    assert BATCH_NORM_BATCHES == 50
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 200, (104, 3, 2, 2), generator=generator, dtype=torch.uint8)
    images[100:] = 255                                                  # batches 51 and 52: far off the rest
    norm = torch.nn.BatchNorm2d(3)
    recompute_batch_norm(norm, images, 2, torch.device("cpu"))
    batches = (images[:100].double() / 255).reshape(50, 2, 3, 2, 2).transpose(1, 2).reshape(50, 3, 8)   # (50, C, 2·H·W)
    torch.testing.assert_close(norm.running_mean.double(), batches.mean(-1).mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(norm.running_var.double(), batches.var(-1).mean(0), rtol=0, atol=1e-6)
    assert int(norm.num_batches_tracked) == 50 and not norm.training and norm.momentum == 0.1


def test_base_accuracy_is_the_eval_accuracy_on_the_first_2000_images():
    """base_accuracy: the fraction of the first 2,000 base images (in chunks of 250) the classifier gets right."""
    from nslviz.datasets.images import ImageSplit
    from nslviz.experiments.few_shot import base_accuracy
    images = torch.zeros(2100, 1, 1, 2, dtype=torch.uint8)
    images[::2, 0, 0, 1] = 9                                            # even rows: pixel 1 brighter -> class 1
    images[1::2, 0, 0, 0] = 9                                           # odd rows: pixel 0 brighter -> class 0
    predicted = torch.arange(2100) % 2 == 0
    labels = predicted.long()                                           # right everywhere ...
    labels[:500] = 1 - labels[:500]                                     # ... but for the first 500
    labels[2000:] = 1 - labels[2000:]                                   # and the 100 past the 2,000 read
    classifier = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        classifier.weight.copy_(torch.eye(2))
    split = ImageSplit(images, labels)
    assert base_accuracy(torch.nn.Flatten(), classifier, split, torch.device("cpu")) == 0.75     # 1,500 / 2,000
    assert base_accuracy(torch.nn.Flatten(), classifier, ImageSplit(images[500:600], labels[500:600]),
                         torch.device("cpu")) == 1.0


def test_first_order_maml_takes_the_query_gradient_at_the_adapted_parameters():
    """First-order MAML (∂θ′/∂θ = I in both phases): the meta-gradient is the mean over tasks of the query
    loss's gradient at the adapted (M′, W′) taken as leaves; here with a plain-autograd inner loop."""
    network = small_network("static_dns")
    generator = torch.Generator().manual_seed(2)
    init = {name: (value.detach() + 0.1 * torch.randn(value.shape, generator=generator, dtype=torch.double))
            .requires_grad_() for name, value in initial_parameters(network, 2).items()}
    support, support_labels, query, query_labels = tasks(3, 2, 2, 3)
    inner = InnerLoop(steps=2, classifier_steps=3, step_size=0.2, first_order=True)
    names = network.similarity_names

    def loss(params, features, labels):
        return F.cross_entropy(features @ params["weight"].T + params["bias"], labels)

    reference = {name: torch.zeros_like(value) for name, value in init.items()}
    for task in range(3):
        params = {name: value.detach() for name, value in init.items()}
        for _ in range(inner.steps):                                    # M and W, gradients without a graph
            leaves = {name: value.clone().requires_grad_() for name, value in params.items()}
            value = loss(leaves, network.features(support[task], {n: leaves[n] for n in names}), support_labels[task])
            grads = torch.autograd.grad(value, list(leaves.values()))
            params = {name: params[name] - 0.2 * g for name, g in zip(leaves, grads)}
        features = network.features(support[task], {n: params[n] for n in names})
        for _ in range(inner.classifier_steps):                         # W alone
            head = {name: params[name].clone().requires_grad_() for name in ("weight", "bias")}
            grads = torch.autograd.grad(loss(head, features, support_labels[task]), list(head.values()))
            params = {**params, **{name: head[name].detach() - 0.2 * g for name, g in zip(head, grads)}}
        adapted = {name: value.clone().requires_grad_() for name, value in params.items()}     # θ′ as leaves
        value = loss(adapted, network.features(query[task], {n: adapted[n] for n in names}), query_labels[task])
        for name, g in zip(adapted, torch.autograd.grad(value, list(adapted.values()))):
            reference[name] += g / 3
    ours = torch.autograd.grad(meta_loss(network, init, support, support_labels, query, query_labels, inner)[0],
                               list(init.values()))
    for (name, theirs), mine in zip(reference.items(), ours):
        assert theirs.abs().max() > 1e-3, f"the reference gradient of {name} vanishes: the test would prove nothing"
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12, msg=name)


def test_meta_train_takes_one_adam_step_per_meta_batch_from_fresh_gradients():
    """meta_train runs len(episodes) // meta_batch outer steps (history steps 1..N), each an Adam step on that
    meta-batch's meta_loss alone: gradients of earlier steps are not carried over (optimizer.zero_grad)."""
    from nslviz.training.episodic import episode_images
    from nslviz.training.maml import meta_train
    network = FunctionalBackbone(small_network("static_dns").backbone.float())
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (24, 3, 16, 16), generator=generator, dtype=torch.uint8)
    episodes = sample_episodes(torch.arange(4).repeat_interleave(6), episodes=7, way=2, shot=2, query=2, seed=4)
    inner = InnerLoop(steps=1, classifier_steps=2)
    learned, history = meta_train(network, images, episodes, meta_batch=2, lr=0.01, inner=inner)
    assert [row["step"] for row in history] == [1, 2, 3]                        # 7 // 2; the odd episode unused
    init = initial_parameters(network, 2)
    optimizer = torch.optim.Adam(init.values(), lr=0.01)
    losses = []
    for step in range(3):
        batch = episodes.slice(2 * step, 2 * step + 2)
        optimizer.zero_grad()
        loss = meta_loss(network, init, episode_images(images, batch.support, "cpu"), batch.support_labels,
                         episode_images(images, batch.query, "cpu"), batch.query_labels, inner)[0]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert [row["meta_loss"] for row in history] == pytest.approx(losses, rel=1e-6)
    assert list(learned) == list(init)
    for name, value in init.items():
        assert not learned[name].requires_grad
        torch.testing.assert_close(learned[name], value.detach(), rtol=1e-6, atol=1e-7, msg=name)


def test_meta_training_records_the_starts_accuracy_before_each_step_learns_from_its_tasks(monkeypatch):
    """query_acc_before of outer step t is start_accuracy of the start as it was before step t's Adam step
    (at step 1 the pretrained M and the zero classifier), on that step's query images."""
    from nslviz.training import maml
    from nslviz.training.episodic import episode_images
    network = FunctionalBackbone(small_network("static_dns").backbone.float())
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (24, 3, 16, 16), generator=generator, dtype=torch.uint8)
    episodes = sample_episodes(torch.arange(4).repeat_interleave(6), episodes=6, way=2, shot=2, query=2, seed=4)
    inner = InnerLoop(steps=1, classifier_steps=2)
    seen, start_accuracy = [], maml.start_accuracy

    def recorded(network, init, query, query_labels):
        seen.append(({name: value.detach().clone() for name, value in init.items()}, query.clone()))
        return start_accuracy(network, init, query, query_labels)
    monkeypatch.setattr(maml, "start_accuracy", recorded)
    _, history = maml.meta_train(network, images, episodes, meta_batch=2, lr=0.1, inner=inner)
    assert len(seen) == len(history) == 3
    init = initial_parameters(network, 2)
    optimizer = torch.optim.Adam(init.values(), lr=0.1)
    for step, (start, query) in enumerate(seen):
        batch = episodes.slice(2 * step, 2 * step + 2)
        assert torch.equal(query, episode_images(images, batch.query, "cpu"))
        for name, value in init.items():
            torch.testing.assert_close(start[name], value.detach(), rtol=1e-6, atol=1e-7, msg=name)
        accuracy = start_accuracy(network, init, query, batch.query_labels).mean().item()
        assert history[step]["query_acc_before"] == pytest.approx(accuracy)
        optimizer.zero_grad()
        meta_loss(network, init, episode_images(images, batch.support, "cpu"), batch.support_labels, query,
                  batch.query_labels, inner)[0].backward()
        optimizer.step()
