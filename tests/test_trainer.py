"""The trainer: run directories, determinism, exact resume, parameter groups, the CLI, DDP on CPU."""
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nslviz.datasets.images import ImageSplit
from nslviz.models.classifier import build_image_model
from nslviz.training.config import TrainConfig
from nslviz.training.data import BatchStream
from nslviz.training.optim import build_optimizer, parameter_groups
from nslviz.datasets.augment import to_float
from nslviz.training.data import load_data
from nslviz.training.rundir import load_run
from nslviz.training.trainer import evaluate, initialize_dictionary, run_title, train
from runs import TINY, Killed, finished_run, interrupt_at, stable


def _split(n=10):
    return ImageSplit(images=torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous(),
                      labels=torch.arange(n))


# ---------------------------------------------------------------- batches

def test_batch_stream_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    stream = BatchStream(_split(10), 3, shuffle=True, seed=1)
    assert len(stream) == 3                                            # drop_last for training
    first = [labels.tolist() for _, labels in stream.epoch(0)]
    assert first == [labels.tolist() for _, labels in BatchStream(_split(10), 3, shuffle=True, seed=1).epoch(0)]
    assert first != [labels.tolist() for _, labels in stream.epoch(1)]
    assert first != [labels.tolist() for _, labels in BatchStream(_split(10), 3, shuffle=True, seed=2).epoch(0)]
    assert [labels.tolist() for _, labels in stream.epoch(0, start_batch=2)] == first[2:]
    assert len({i for batch in first for i in batch}) == 9             # no repeats within an epoch


def test_each_batch_draws_its_own_augmentation_from_seed_epoch_batch_and_rank():
    """Batch b of an epoch is augmented with a generator of (seed, epoch, b, rank): the same batch again
    on resume, and other crops and flips for every other batch, epoch and rank."""
    from nslviz.datasets.augment import augment_batch
    from nslviz.training.data import derived_seed
    pattern = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8)            # every image the same, asymmetric
    split = ImageSplit(images=pattern.expand(48, 1, 8, 8).contiguous(), labels=torch.zeros(48, dtype=torch.long))
    stream = BatchStream(split, 16, shuffle=False, augment="crop_flip", seed=3)
    batches = [images for images, _ in stream.epoch(2)]
    for b, images in enumerate(batches):
        generator = torch.Generator().manual_seed(derived_seed(3, 2, b, 0))
        expected = augment_batch(pattern.expand(16, 1, 8, 8).contiguous(), "crop_flip", generator)
        torch.testing.assert_close(images, expected.float() / 255)
    assert not torch.equal(batches[0], batches[1]) and not torch.equal(batches[1], batches[2])
    assert not torch.equal(batches[0], next(iter(stream.epoch(3)))[0])
    torch.testing.assert_close(next(iter(stream.epoch(2, start_batch=1)))[0], batches[1])   # resumed mid-epoch


def test_batch_stream_shards_are_disjoint_and_evaluation_covers_the_split_once():
    train_shards = [[labels.tolist() for _, labels in BatchStream(_split(12), 4, shuffle=True, seed=0, rank=r,
                                                                   world_size=2).epoch(3)] for r in range(2)]
    seen = [i for shard in train_shards for batch in shard for i in batch]
    assert len(seen) == len(set(seen)) == 12 and all(len(b) == 2 for s in train_shards for b in s)
    eval_seen = sorted(i for r in range(2) for _, labels in
                       BatchStream(_split(11), 4, shuffle=False, rank=r, world_size=2).epoch(0) for i in labels.tolist())
    assert eval_seen == list(range(11))
    images, _ = next(iter(BatchStream(_split(4), 4, shuffle=False)))
    assert images.dtype == torch.float32 and float(images.max()) == pytest.approx(3 / 255)


def test_batch_stream_rejects_a_batch_larger_than_the_training_split():
    with pytest.raises(ValueError, match=r"fewer than one batch of 16; lower batch_size \(CLI --batch-size\)"):
        BatchStream(_split(10), 16, shuffle=True)


# ---------------------------------------------------------------- parameter groups

def test_weight_decay_excludes_the_dictionary_classifier_and_step_size_but_not_ifilm():
    model = build_image_model("mn_ifilm", "convnet4", 10, in_channels=1, entries=20)
    groups = {g["name"]: {id(p) for p in g["params"]} for g in parameter_groups(model, 0.075)}
    head = dict(model.head.named_parameters())
    for name in ["dictionary.keys", "dictionary.value_logits", "weight", "scale", "inner_step_size"]:
        assert id(head[name]) in groups["no_decay"], name
    ifilm = [p for n, p in model.backbone.named_parameters() if "film" in n.lower()]
    assert ifilm and all(id(p) in groups["decay"] for p in ifilm)
    assert all(id(p) in groups["decay"] for p in model.backbone.parameters())
    everything = parameter_groups(model, 5e-4, decay_everything=True)
    assert len(everything) == 1 and len(everything[0]["params"]) == len(list(model.parameters()))


def test_the_excluded_groups_get_no_decay_for_every_head():
    """Not only the group membership: the values the optimiser applies, for vanilla (cosine and dot),
    MN with a learned temperature, and the NSL recipe's decay-everything."""
    config = TrainConfig(weight_decay=0.075)
    for model in (build_image_model("vanilla", "convnet4", 10, in_channels=1),
                  build_image_model("vanilla", "convnet4", 10, in_channels=1, classifier="dot")):
        decays = {g["name"]: g["weight_decay"] for g in build_optimizer(model, config).param_groups}
        assert decays == {"decay": 0.075, "no_decay": 0.0}
        groups = {g["name"]: {id(p) for p in g["params"]} for g in parameter_groups(model, 0.075)}
        assert {id(p) for p in model.head.parameters()} == groups["no_decay"]     # classifier (and τ) excluded
    mn = build_image_model("mn", "convnet4", 10, in_channels=1, entries=20)
    mn.head.attention.log_inverse_temperature = torch.nn.Parameter(torch.tensor(1.0))   # a learned T
    groups = {g["name"]: {id(p) for p in g["params"]} for g in parameter_groups(mn, 0.075)}
    assert id(mn.head.attention.log_inverse_temperature) in groups["no_decay"]


def test_the_config_reaches_the_model():
    """Every MN setting of TrainConfig arrives in the head build_model makes."""
    from nslviz.training.config import DEFAULT_ENTRIES, build_model

    config = TrainConfig(method="mn", backbone="convnet4", entries=30, temperature=0.5, entry_dropout=0.25,
                         inner_steps=3, step_size="diagonal", alpha=0.2, first_order=True, values="fixed")
    head = build_model(config, 10, 1, 16).head
    assert head.dictionary.keys.shape[0] == 30 and head.attention.temperature == pytest.approx(0.5)
    assert head.attention.entry_dropout == 0.25 and head.inner_steps == 3 and head.first_order is True
    assert head.step_size_kind == "diagonal" and head.inner_step_size.shape == (head.feature_dim,)   # one α per feature
    assert float(head.inner_step_size.detach().flatten()[0]) == pytest.approx(0.2) and head.dictionary.value_kind == "fixed"
    assert not isinstance(head.attention.log_inverse_temperature, torch.nn.Parameter)     # T fixed by default
    for method in ("mn", "vanilla"):                # entries None, as a config is made: the dataset's S
        model = build_model(TrainConfig(method=method, dataset="digits", backbone="convnet4"), 10, 1, 16)
        assert model.num_classes == 10 and model.is_meta_neighborhoods == (method == "mn")   # vanilla built too
        if method == "mn":
            assert model.head.dictionary.keys.shape[0] == DEFAULT_ENTRIES["digits"]


def test_a_learned_temperature_trains_and_is_logged(tmp_path):
    """learn_temperature (MN appendix A.4's ablation): T is a parameter the optimiser moves, kept out of
    weight decay, and every epoch's metrics row says where it is."""
    from nslviz.training.config import build_model
    head = build_model(TrainConfig(method="mn", entries=30, learn_temperature=True, temperature=0.5), 10, 1, 16).head
    assert isinstance(head.attention.log_inverse_temperature, torch.nn.Parameter)
    assert head.attention.temperature == pytest.approx(0.5)
    model = build_model(TrainConfig(method="mn", entries=30, learn_temperature=True), 10, 1, 16)
    no_decay = next(g for g in parameter_groups(model, 0.075) if g["name"] == "no_decay")["params"]
    assert any(p is model.head.attention.log_inverse_temperature for p in no_decay)
    run = tmp_path / "run"
    train(TrainConfig(**TINY, method="mn", learn_temperature=True, lr=1e-2), run, progress=False)
    from nslviz.training.rundir import RunDirectory
    rows = [row for row in RunDirectory(run, create=False).read_metrics() if "temperature" in row]
    assert len(rows) == 2 and all(row["temperature"] != pytest.approx(0.2, abs=1e-4) for row in rows)


def test_evaluate_reports_the_classifier_before_finetuning_separately():
    torch.manual_seed(0)
    model = build_image_model("mn", "convnet4", 4, in_channels=1, entries=12, values="fixed").eval()
    with torch.no_grad():
        model.head.inner_step_size.fill_(50.0)                        # a step large enough to change predictions
    split = ImageSplit(images=torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8),
                       labels=torch.randint(0, 4, (64,)))
    result = evaluate(model, BatchStream(split, 16, shuffle=False))
    with torch.no_grad():
        features = model.backbone(to_float(split.images))
        before = (model.head.base_logits(features).argmax(1) == split.labels).double().mean().item()
        after = (model.head(features).argmax(1) == split.labels).double().mean().item()
    assert result["acc_before_finetune"] == pytest.approx(before) and result["acc"] == pytest.approx(after)
    assert before != after                                             # the two columns measure different things


def test_evaluate_reports_top5_on_label_sets_of_100_classes_or_more():
    """Top-5 accuracy (NSL Table 5's second column) where a table would report it: 100 classes or more."""
    from nslviz.training.trainer import TOP5_MIN_CLASSES
    from nslviz.viz.training import results_table

    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8)
    model = build_image_model("vanilla", "convnet4", TOP5_MIN_CLASSES, in_channels=1, classifier="dot").eval()
    with torch.no_grad():
        logits = model(to_float(images))                                         # (40, 100)
    order = logits.argsort(1, descending=True)
    labels = torch.cat([order[:10, 0], order[10:20, 3], order[20:, 50]])        # ranked 1st, 4th, 51st
    split = ImageSplit(images=images, labels=labels)
    result = evaluate(model, BatchStream(split, 16, shuffle=False))
    ranks = (logits > logits.gather(1, split.labels[:, None])).sum(1)           # classes scored above the label
    assert result["acc"] == pytest.approx((ranks == 0).double().mean().item())
    assert result["top5_acc"] == pytest.approx((ranks < 5).double().mean().item())
    assert (result["acc"], result["top5_acc"]) == (pytest.approx(0.25), pytest.approx(0.5))
    small = build_image_model("vanilla", "convnet4", 10, in_channels=1).eval()
    assert "top5_acc" not in evaluate(small, BatchStream(ImageSplit(split.images, split.labels % 10), 16, shuffle=False))
    summaries = {"vanilla": {"test_acc": 0.5, "test_top5_acc": 0.75, "test_acc_last": 0.5, "best_epoch": 1,
                             "epochs": 1, "parameters": 1, "seconds": 1.0}}
    assert results_table(summaries).loc["vanilla", "top-5 %"] == 75.0
    del summaries["vanilla"]["test_top5_acc"]
    assert "top-5 %" not in results_table(summaries).columns


def test_summary_and_command_line_carry_top5(tmp_path, monkeypatch):
    """With top-5 measured (here on digits' 10 classes, the threshold lowered), the summary holds the
    best-on-validation model's top-5 accuracy and `train` prints it."""
    import nslviz.training.trainer as trainer
    from cli import run_in_process

    monkeypatch.setattr(trainer, "TOP5_MIN_CLASSES", 10)
    summary = train(TrainConfig(**TINY), tmp_path / "run", progress=False)
    assert summary["test_acc"] <= summary["test_top5_acc"] <= 1
    process = run_in_process("train", "--dataset", "digits", "--backbone", "convnet4", "--epochs", "1",
                             "--train-limit", "64", "--eval-limit", "32", "--image-size", "16", "--device", "cpu",
                             "--run-dir", str(tmp_path / "cli"), "--no-progress")
    assert process.returncode == 0, process.stderr
    assert re.search(r"test acc \d\.\d{4} \(.*\) \| top-5 \d\.\d{4} \|", process.stdout), process.stdout


def test_gradients_are_clipped_to_the_configured_value(tmp_path, monkeypatch):
    clip = torch.nn.utils.clip_grad_value_
    seen = []

    def checked(parameters, clip_value, **kwargs):
        parameters = list(parameters)
        clip(parameters, clip_value, **kwargs)
        seen.append(max(float(p.grad.abs().max()) for p in parameters if p.grad is not None))
        assert clip_value == 1e-3 and seen[-1] <= clip_value * (1 + 1e-6)     # float32's 1e-3

    monkeypatch.setattr(torch.nn.utils, "clip_grad_value_", checked)
    train(TrainConfig(method="vanilla", **{**TINY, "epochs": 1}, clip_value=1e-3), tmp_path / "run", progress=False)
    assert len(seen) == 6 and max(seen) == pytest.approx(1e-3)          # every step, and clipping was active


def test_nsl_recipe_decays_every_weight_but_the_static_similarity():
    model = build_image_model("vanilla", "cnn9", 10, in_channels=1, classifier="dot", nsl="static_uns")
    groups = {g["name"]: {id(p) for p in g["params"]} for g in parameter_groups(model, 5e-4, decay_everything=True)}
    masks = [p for n, p in model.named_parameters() if n.endswith("similarity")]
    assert len(masks) == 9 and all(id(p) in groups["no_decay"] for p in masks)
    assert id(model.head.weight) in groups["decay"] and len(groups["decay"]) == len(list(model.parameters())) - 9


def test_vanilla_extra_layer_holds_as_many_parameters_as_the_dictionary():
    """MN Appendix A.3's control: a layer of width S before the classifier, so the head's weights are
    d·S + S·C = S·(d + C), exactly the dictionary's keys and values (plus the scale τ)."""
    def head_parameters(method):
        model = build_image_model(method, "resnet29", 10, entries=50)
        return {n: p.numel() for n, p in model.head.named_parameters()}, model

    mn, _ = head_parameters("mn")
    extra, model = head_parameters("vanilla_extra")
    dictionary = mn["dictionary.keys"] + mn["dictionary.value_logits"]
    assert dictionary == 50 * (256 + 10)
    assert extra == {"hidden.weight": 256 * 50, "classifier.weight": 50 * 10, "classifier.scale": 1}
    assert sum(extra.values()) == dictionary + 1
    logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    with pytest.raises(ValueError, match="entries S must be >= 1, got 0"):
        build_image_model("vanilla_extra", "convnet4", 10, entries=0)
    groups = {g["name"]: {id(p) for p in g["params"]} for g in parameter_groups(model, 0.075)}
    assert id(model.head.hidden.weight) in groups["decay"]             # an ordinary layer, decayed
    assert {id(p) for p in model.head.classifier.parameters()} == groups["no_decay"]


def test_presets_follow_the_papers():
    mn = TrainConfig.from_preset("mn", dataset="cifar100")
    assert (mn.optimizer, mn.lr, mn.weight_decay, mn.clip_value, mn.augment) == ("adamw", 1e-3, 0.075, 10.0, "paper")
    assert mn.resolved("paper").entries == 10000 and mn.resolved("paper").batch_size == 128
    assert TrainConfig.from_preset("mn", dataset="digits").resolved("paper").batch_size == 128
    nsl = TrainConfig.from_preset("nsl", backbone="cnn9", nsl="dynamic_dns", epochs=1)
    assert (nsl.optimizer, nsl.lr, nsl.momentum, nsl.weight_decay, nsl.label_smoothing) == ("sgd", 0.1, 0.9, 5e-4, 0.01)
    assert nsl.milestone_iterations(100) == [int(100 * 20 / 42.5), int(100 * 30 / 42.5), int(100 * 37.5 / 42.5)]
    with pytest.raises(ValueError, match="unknown preset 'adam'"):
        TrainConfig.from_preset("adam")
    with pytest.raises(ValueError, match="unknown method 'knn'"):
        TrainConfig(method="knn")
    with pytest.raises(ValueError, match="temperature T must be > 0"):
        TrainConfig(temperature=0)


def test_presets_train_as_long_as_the_official_schedules():
    cifar = TrainConfig.from_preset("mn", dataset="cifar100")
    assert (cifar.iterations, cifar.milestones) == (160_000, (0.75,))
    assert cifar.epochs_for(351) == 456 and cifar.total_iterations(351) == 160_056    # 45k images, full batches of 128
    tiny = TrainConfig.from_preset("mn", dataset="tiny-imagenet")
    assert (tiny.iterations, tiny.milestones) == (260_000, (180 / 260,))
    nsl = TrainConfig.from_preset("nsl", dataset="cifar10", backbone="cnn9")
    assert (nsl.iterations, nsl.nesterov) == (42_500, False) and len(nsl.milestones) == 3
    # an explicit length wins, and then the preset's optimizer milestones apply
    short = TrainConfig.from_preset("mn", dataset="cifar10", epochs=3)
    assert (short.iterations, short.epochs_for(351), short.milestones) == (None, 3, (0.75,))
    assert TrainConfig.from_preset("mn", dataset="cifar10", iterations=1000).epochs_for(351) == 3
    # no official schedule: a paper's dataset asks for a length, an embedded set takes the epochs field
    with pytest.raises(ValueError, match="--preset mn has no official length for imagenet64 \\(with adamw\\); give "
                                         "one \\(--epochs or --iterations\\) rather than train the default 5 epochs"):
        TrainConfig.from_preset("mn", dataset="imagenet64")
    assert TrainConfig.from_preset("mn", dataset="imagenet64", epochs=40).epochs == 40
    assert TrainConfig.from_preset("mn", dataset="digits").iterations is None
    with pytest.raises(ValueError, match="iterations must be >= 1, got 0"):
        TrainConfig(iterations=0)


def test_sgd_takes_the_official_vanilla_sgd_recipe_not_adamws_decay():
    """MN Table 3's dot-sgd / cos-sgd baseline (official code: Nesterov momentum 0.9, L2 2e-4, three
    x0.1 decays at 60k/80k/100k of 120k); AdamW's decoupled 0.075 as SGD L2 would be 375x too strong."""
    sgd = TrainConfig(optimizer="sgd", method="vanilla", classifier="dot")
    assert (sgd.lr, sgd.weight_decay, sgd.nesterov, sgd.milestones) == (0.1, 2e-4, True, (0.5, 2 / 3, 5 / 6))
    optimizer = build_optimizer(build_image_model("vanilla", "convnet4", 10, in_channels=1, image_size=16,
                                                  classifier="dot"), sgd)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"] is True
    assert optimizer.param_groups[0]["weight_decay"] == 2e-4 and optimizer.defaults["momentum"] == 0.9
    cifar = TrainConfig.from_preset("mn", dataset="cifar10", optimizer="sgd", method="vanilla")
    assert (cifar.iterations, cifar.weight_decay, cifar.nesterov) == (120_000, 2e-4, True)
    assert TrainConfig(optimizer="sgd", weight_decay=5e-4, nesterov=False).nesterov is False
    adamw = TrainConfig()
    assert (adamw.lr, adamw.weight_decay, adamw.milestones) == (1e-3, 0.075, (0.75,))
    assert isinstance(build_optimizer(build_image_model("mn", "convnet4", 10, in_channels=1, image_size=16,
                                                        entries=20), adamw), torch.optim.AdamW)


def test_milestones_on_the_same_iteration_each_decay_the_learning_rate():
    config = TrainConfig(optimizer="sgd", epochs=1)                     # 0.5, 2/3, 5/6 of 3 iterations
    assert config.milestone_iterations(3) == [1, 2, 2]
    from nslviz.training.optim import build_scheduler
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(optimizer, config, 3)
    for _ in range(3):
        optimizer.step(), scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * 0.1 ** 3)    # three decays, as asked


@pytest.mark.parametrize("fields, message", [
    (dict(backbone="resnet30"), "unknown backbone 'resnet30'; expected one of .*'resnet29'"),
    (dict(dataset="cifar1000"), "unknown image dataset 'cifar1000'; expected one of .*'cifar100'"),
    (dict(device="gpu"), "unknown device 'gpu'"),
    (dict(optimizer="sgd", momentum=float("nan")), r"momentum must be in \[0, 1\), got nan"),
    (dict(optimizer="sgd", momentum=1.5), r"momentum must be in \[0, 1\), got 1.5"),
    (dict(optimizer="sgd", momentum=0.0), "Nesterov momentum needs momentum > 0.*nesterov false"),
    (dict(backbone="resnet29", transition_ifilm=False), "transition_ifilm false is the official DenseNet's"),
    (dict(milestones=0.5), r"milestones must be a sequence of fractions .*\(0.5, 0.75\), got 0.5"),
    (dict(milestones="0.5"), r"milestones must be a sequence of fractions .*got '0.5'"),
])
def test_a_config_names_its_bad_field_when_it_is_made(fields, message):
    """Before any data is loaded or folder made: a notebook's config cell fails, not its training cell."""
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)
    assert TrainConfig(optimizer="sgd", momentum=0.0, nesterov=False).momentum == 0.0


def test_batch_size_defaults_to_the_papers_128_but_32_on_the_small_digits_set():
    # digits' 1,258 training images are 9 steps an epoch at 128: the CLI's `--epochs 5` stopped near 55 %
    assert TrainConfig(dataset="digits").resolved("crop").batch_size == 32
    assert TrainConfig(dataset="cifar10").resolved("paper").batch_size == 128
    assert TrainConfig(dataset="synthetic").resolved("crop").batch_size == 128
    assert TrainConfig(dataset="digits", batch_size=100).resolved("crop").batch_size == 100
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        TrainConfig(batch_size=0)


# ---------------------------------------------------------------- training runs

@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    return finished_run(tmp_path_factory, "runs")


def test_the_progress_bar_names_the_network_and_its_similarity(tmp_path, capsys):
    assert run_title(TrainConfig(dataset="digits")) == "convnet4 mn on digits"
    assert run_title(TrainConfig(dataset="digits", backbone="cnn9", method="vanilla")) == "cnn9 vanilla on digits"
    nsl = TrainConfig(**{**TINY, "epochs": 1, "backbone": "cnn9"}, method="vanilla", nsl="dynamic_dns")
    assert run_title(nsl) == "cnn9 dynamic_dns on digits"           # an NSL row is not called "vanilla"
    train(nsl, tmp_path / "run", progress=True)
    assert "cnn9 dynamic_dns on digits" in capsys.readouterr().err


def test_run_directory_contents(reference_run):
    run_dir, summary = reference_run
    assert {"config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "best.pt"} <= {p.name for p in run_dir.iterdir()}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["iteration"] == summary["iterations"] == 12
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert json.loads((run_dir / "config.json").read_text())["entries"] == 40
    assert summary["test_count"] == 96 and 0 <= summary["test_acc"] <= 1
    assert "test_acc_before_finetune" in summary and "val_acc_before_finetune" in rows[0]
    assert 0 <= summary["test_acc_last"] <= 1 and 0 <= summary["test_acc_last_before_finetune"] <= 1
    assert not list(run_dir.glob("*.tmp"))                             # atomic writes leave nothing behind


def test_mn_runs_log_what_the_dictionary_knows_every_epoch(reference_run):
    """Each epoch's row holds the validation accuracy of the attended values alone and the mean
    attention entropy; the summary's test figure is dictionary_state's on the best weights."""
    from nslviz.analysis.finetuning import dictionary_state

    run_dir, summary = reference_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        assert 0 <= row["val_attended_value_acc"] <= 1
        assert 0 < row["val_attention_entropy"] <= math.log(40) + 1e-6         # S = 40: uniform is log 40
    model, _, data = load_run(run_dir)
    state = dictionary_state(model, data.test)
    assert summary["classes"] == 10 and summary["test_count"] == len(data.test.labels)
    assert summary["test_attended_value_acc"] == pytest.approx(state["attended_value_acc"])
    assert summary["test_acc"] == pytest.approx(state["acc"])


def test_load_run_takes_best_or_last_by_name_and_any_device_this_machine_has(reference_run):
    """A misspelt `which` is refused, where it loaded the last weights in place of the best; "auto"
    loads (CUDA when present), and a device the machine lacks is named as such, not as a damaged
    best.pt; the weights are read on the CPU whatever device saved them."""
    run_dir, _ = reference_run
    with pytest.raises(ValueError, match=r"unknown which 'bset'; expected one of 'best', 'last'"):
        load_run(run_dir, which="bset")
    model, _, _ = load_run(run_dir, device="auto")
    assert next(model.parameters()).device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device 'cuda' was asked for but no CUDA device is available"):
            load_run(run_dir, device="cuda")
    with pytest.raises(ValueError, match=r"unknown device 'gpu'; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        load_run(run_dir, device="gpu")


def test_load_run_says_when_a_run_has_not_finished(reference_run, tmp_path):
    import warnings

    from nslviz.training.rundir import RunDirectoryWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_run(reference_run[0])                                          # finished: nothing to say
    assert not [w for w in caught if issubclass(w.category, RunDirectoryWarning)]
    interrupt_at(TrainConfig(**TINY), tmp_path / "cut", 9)                     # cut in epoch 2, best.pt of epoch 1
    for which, weights in (("best", "the best epoch's so far"), ("last", "the last checkpoint's")):
        with pytest.warns(RunDirectoryWarning, match=f"has not finished \\(no summary.json\\): its weights are {weights}"):
            load_run(tmp_path / "cut", which=which)


def test_a_gpu_index_the_machine_lacks_is_named_with_those_it_has(monkeypatch):
    from nslviz.training.distributed import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"device 'cuda:2' was asked for but this machine has 2 CUDA device\(s\); "
                                         r"use 'cuda:0' to 'cuda:1', or 'auto'"):
        resolve_device("cuda:2")


def test_a_run_trains_on_the_split_its_seed_draws():
    """The digits split is seeded: a run's seed chooses its held-out images as load_image_dataset's seed does."""
    from nslviz.datasets.images import load_image_dataset
    splits = {seed: load_data(TrainConfig(dataset="digits", seed=seed)) for seed in (0, 1)}
    for seed, data in splits.items():
        assert torch.equal(data.val.labels, load_image_dataset("digits", seed=seed).val.labels)
    assert not torch.equal(splits[0].val.images, splits[1].val.images)


def test_same_seed_same_numbers(reference_run, tmp_path):
    _, summary = reference_run
    again = train(TrainConfig(**TINY), tmp_path / "again", progress=False)
    assert stable(again) == stable(summary)
    other = train(TrainConfig(**{**TINY, "seed": 1}), tmp_path / "other", progress=False)
    assert other["test_loss"] != summary["test_loss"]


def test_a_length_in_iterations_trains_whole_epochs_up_to_it(reference_run, tmp_path):
    _, summary = reference_run                                         # 2 epochs of 6 batches
    by_iterations = train(TrainConfig(**{**TINY, "epochs": 1, "iterations": 7}), tmp_path / "it", progress=False)
    assert (by_iterations["epochs"], by_iterations["iterations"]) == (2, 12)
    assert stable(by_iterations) == stable(summary)                  # same schedule, same numbers


def test_each_metrics_row_logs_the_learning_rate_the_schedule_has_reached(reference_run):
    """TINY: 12 iterations, AdamW's lr 1e-3 x 0.1 at 75 % (iteration 9): epoch 1 ends at 1e-3, epoch 2 at 1e-4."""
    from nslviz.training.rundir import RunDirectory
    run_dir, _ = reference_run
    rows = RunDirectory(run_dir, create=False).read_metrics()
    assert [row["iteration"] for row in rows] == [6, 12]
    assert [row["lr"] for row in rows] == pytest.approx([1e-3, 1e-4])


def test_resume_after_an_interruption_mid_epoch_gives_the_same_final_metrics(reference_run, tmp_path):
    _, uninterrupted = reference_run

    interrupt_at(TrainConfig(**TINY), tmp_path / "cut", 9)            # checkpoint at 8; 9 is lost
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 1
    torn = tmp_path / "cut" / ".checkpoint.pt.x1y2.tmp"               # what a kill during a write leaves
    torn.write_bytes(b"half a checkpoint")
    resumed = train(TrainConfig(**TINY), tmp_path / "cut", resume=True, progress=False)
    assert stable(resumed) == stable(uninterrupted)
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 2
    assert not torn.exists()
    # row by row too: the cut epoch's training loss and accuracy carry on from the checkpoint's running sums
    reference_dir, _ = reference_run
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (reference_dir / "metrics.jsonl").read_text()


def test_a_run_resumed_twice_keeps_the_training_time_of_every_session(tmp_path):
    """The checkpoint carries the training seconds of the sessions before it: a second resumption still
    counts the first session's (here set to 1000 s in its checkpoint), in the next checkpoint and the summary."""
    from nslviz.training.rundir import RunDirectory
    config, run = TrainConfig(**TINY), RunDirectory(tmp_path / "cut", create=False)
    interrupt_at(config, run.path, 5)                                  # checkpoint at 4
    checkpoint = run.load_checkpoint()
    checkpoint["state"]["seconds"] = 1000.0
    run.save_checkpoint(checkpoint)

    def stop(iteration):
        if iteration == 9:
            raise Killed
    with pytest.raises(Killed):
        train(config, run.path, resume=True, progress=False, on_iteration=stop)     # checkpoint at 8
    assert run.load_checkpoint()["state"]["seconds"] > 1000
    assert train(config, run.path, resume=True, progress=False)["seconds"] > 1000


@pytest.mark.parametrize("checkpoint_every", [4, 1000])   # 1000: none in epoch 1 but the one before the first step
def test_a_metrics_row_written_after_the_last_checkpoint_is_redone_once(reference_run, tmp_path, monkeypatch,
                                                                        checkpoint_every):
    """Killed between an epoch's metrics row (and best.pt) and its checkpoint: the resumed run drops the row and
    writes it again."""
    from nslviz.training.rundir import RunDirectory

    append = RunDirectory.append_metrics

    def append_then_die(self, row):
        append(self, row)
        raise Killed

    monkeypatch.setattr(RunDirectory, "append_metrics", append_then_die)
    config = TrainConfig(**{**TINY, "checkpoint_every": checkpoint_every})
    with pytest.raises(Killed):
        train(config, tmp_path / "cut", progress=False)
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 1      # on disk, not checkpointed
    assert (tmp_path / "cut" / "best.pt").exists()
    monkeypatch.setattr(RunDirectory, "append_metrics", append)
    resumed = train(config, tmp_path / "cut", resume=True, progress=False)
    reference_dir, uninterrupted = reference_run
    assert stable(resumed) == stable(uninterrupted)
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (reference_dir / "metrics.jsonl").read_text()


def test_dictionary_init_from_data_starts_at_training_images():
    config = TrainConfig(**{**TINY, "dictionary_init": "data"})
    data = load_data(config)
    torch.manual_seed(0)
    model = build_image_model("mn", "convnet4", 10, in_channels=1, image_size=16, entries=40)
    running = [b.clone() for b in model.buffers()]
    index = initialize_dictionary(model, data.train, config, torch.device("cpu"))
    assert len(set(index.tolist())) == 40 and index.max() < 192            # 40 distinct training images
    for before, after in zip(running, model.buffers()):                   # BatchNorm statistics untouched
        assert torch.equal(before, after)
    with torch.no_grad():                                                  # train-mode features, in batches of 32
        model.train()
        images = to_float(data.train.images[index])
        features = torch.cat([model.backbone(images[:32]), model.backbone(images[32:])])
    keys = model.head.dictionary.keys
    torch.testing.assert_close(F.normalize(keys, dim=1), F.normalize(features, dim=1), atol=1e-5, rtol=1e-5)
    assert model.head.dictionary.values.argmax(1).tolist() == data.train.labels[index].tolist()
    again = initialize_dictionary(model, data.train, config, torch.device("cpu"))
    assert torch.equal(again, index)                                       # a function of the seed
    other = initialize_dictionary(model, data.train, dataclasses.replace(config, seed=1), torch.device("cpu"))
    assert not torch.equal(other, index)
    big = build_image_model("mn", "convnet4", 10, in_channels=1, image_size=16, entries=300)
    assert len(initialize_dictionary(big, data.train, config, torch.device("cpu"))) == 300   # S > N: with replacement
    frozen = dataclasses.replace(config, freeze_backbone=True)            # trained in eval mode: keys from it too
    initialize_dictionary(model, data.train, frozen, torch.device("cpu"))
    assert model.backbone.training                                         # the mode it was in comes back
    with torch.no_grad():
        features = model.backbone.eval()(images)
    torch.testing.assert_close(F.normalize(model.head.dictionary.keys, dim=1), F.normalize(features, dim=1),
                               atol=1e-5, rtol=1e-5)


def test_dictionary_init_from_data_trains_and_resumes_exactly(reference_run, tmp_path):
    _, from_random = reference_run
    config = TrainConfig(**{**TINY, "dictionary_init": "data"})
    uninterrupted = train(config, tmp_path / "whole", progress=False)
    assert uninterrupted["test_loss"] != from_random["test_loss"]
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["dictionary_init"] == "data"
    interrupt_at(config, tmp_path / "cut", 9)
    resumed = train(config, tmp_path / "cut", resume=True, progress=False)   # the checkpoint, not a new init
    assert stable(resumed) == stable(uninterrupted)
    with pytest.raises(ValueError, match="unknown dictionary_init 'kmeans'"):
        TrainConfig(dictionary_init="kmeans")


def test_freeze_backbone_trains_the_head_on_the_backbone_of_another_run(reference_run, tmp_path):
    run_dir, _ = reference_run
    reference, _, _ = load_run(run_dir)
    config = TrainConfig(**{**TINY, "method": "vanilla", "epochs": 1}, init_backbone=str(run_dir), freeze_backbone=True)
    train(config, tmp_path / "frozen", progress=False)
    frozen, stored, data = load_run(tmp_path / "frozen")
    assert stored.init_backbone == str(run_dir) and stored.freeze_backbone is True
    for (name, before), after in zip(reference.backbone.state_dict().items(), frozen.backbone.state_dict().values()):
        assert torch.equal(before, after), name                # weights and BatchNorm statistics untouched
    torch.manual_seed(config.seed)
    fresh = build_image_model("vanilla", "convnet4", 10, in_channels=1, image_size=16)
    assert not torch.equal(fresh.head.weight, frozen.head.weight)     # the head did train


def test_init_backbone_copies_a_runs_backbone_and_says_when_it_does_not_fit(reference_run, tmp_path):
    from nslviz.training.trainer import initialize_backbone
    run_dir, _ = reference_run
    reference, _, _ = load_run(run_dir)
    model = build_image_model("vanilla", "convnet4", 10, in_channels=1, image_size=16)
    initialize_backbone(model, run_dir)
    assert all(torch.equal(a, b) for a, b in zip(reference.backbone.state_dict().values(),
                                                 model.backbone.state_dict().values()))
    # a plain backbone starts an iFiLM one: iFiLM at its identity start, the same features as the plain model
    ifilm = build_image_model("vanilla_ifilm", "convnet4", 10, in_channels=1, image_size=16).eval()
    initialize_backbone(ifilm, run_dir)
    images = torch.rand(4, 1, 16, 16)
    torch.testing.assert_close(ifilm.backbone(images), reference.backbone.eval()(images))
    wrong = r"does not fit this model \(vanilla\): .*size mismatch for blocks.0.conv.weight"
    with pytest.raises(ValueError, match=wrong):
        initialize_backbone(build_image_model("vanilla", "convnet4", 10, in_channels=3, image_size=16), run_dir)
    with pytest.raises(ValueError, match=r"init_backbone \(CLI --init-backbone\): no best.pt in .*finished at least "
                                         r"one epoch"):
        initialize_backbone(model, tmp_path)
    with pytest.raises(ValueError, match="(?i)freeze_backbone must be true or false, got 'yes'"):
        TrainConfig(freeze_backbone="yes")


def test_a_run_started_from_another_runs_backbone_resumes_exactly(reference_run, tmp_path):
    """The backbone is copied once, at the start: a resumed run continues from its checkpoint."""
    run_dir, _ = reference_run
    config = TrainConfig(**TINY, init_backbone=str(run_dir))
    whole = train(config, tmp_path / "whole", progress=False)
    interrupt_at(config, tmp_path / "cut", 7)
    assert stable(train(config, tmp_path / "cut", resume=True, progress=False)) == stable(whole)
    assert stable(whole) != stable(train(TrainConfig(**TINY), tmp_path / "fresh", progress=False))


def test_resume_refuses_a_changed_configuration(reference_run):
    run_dir, _ = reference_run
    with pytest.raises(ValueError, match=r"cannot resume: .*method: 'mn' -> 'vanilla'"):
        train(TrainConfig(**{**TINY, "method": "vanilla"}), run_dir, resume=True, progress=False)
    with pytest.raises(ValueError, match="no checkpoint.pt"):
        train(TrainConfig(**TINY), run_dir.parent / "nothing-here", resume=True, progress=False)


def test_resume_refuses_another_precision_or_process_count(reference_run, tmp_path):
    """amp is a run-time setting, but bf16 autocast changes the numbers: a CPU run resumed on a GPU
    with amp 'auto' would silently switch to bf16. The same holds for the number of processes."""
    import warnings
    from nslviz.training.rundir import RunDirectoryWarning
    run_dir, _ = reference_run
    with warnings.catch_warnings():                      # refused before "it is tested again" is promised
        warnings.simplefilter("error", RunDirectoryWarning)
        with pytest.raises(ValueError, match="trained with precision 'fp32' and would go on with 'bf16'.*--amp"):
            train(TrainConfig(**{**TINY, "amp": "bf16"}), run_dir, resume=True, progress=False)
    from nslviz.training.trainer import _check_same_setting
    with pytest.raises(ValueError, match="world_size 1 and would go on with 2.*nproc_per_node"):
        _check_same_setting({"precision": "fp32", "world_size": 1}, {"precision": "fp32", "world_size": 2}, run_dir)
    _check_same_setting({}, {"precision": "bf16", "world_size": 2}, run_dir)   # checkpoints from before: no record
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"]["world_size"] == 1


def test_a_resume_on_another_cpu_thread_count_says_its_numbers_will_differ(tmp_path):
    """The thread count changes the order of float sums, so a cut run resumed on another count ends a few
    digits from an uninterrupted one; a machine may not have the threads the run started with, so it
    is said (naming the count to set), not refused."""
    import warnings
    from nslviz.training.rundir import RunDirectoryWarning
    run_dir = tmp_path / "cut"
    threads = torch.get_num_threads()
    interrupt_at(TrainConfig(**TINY), run_dir, 5)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"]["threads"] == threads
    try:
        torch.set_num_threads(threads + 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = train(TrainConfig(**TINY), run_dir, resume=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    said = [str(w.message) for w in caught if issubclass(w.category, RunDirectoryWarning)]
    assert any(f"was trained on {threads} torch CPU threads and goes on with {threads + 1}" in m
               and f"torch.set_num_threads({threads})" in m for m in said), said
    assert summary["epochs"] == TINY["epochs"]


def test_overwrite_keeps_the_run_it_replaces_aside_until_its_first_epoch_ends(reference_run, tmp_path):
    """The MN run's files wait whole in .previous/ during the new run's first epoch and go once that epoch's
    checkpoint is written; nothing of them is then read as the new run's."""
    import shutil
    run_dir = tmp_path / "replaced"
    shutil.copytree(reference_run[0], run_dir)
    old = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    aside = {}

    def look(i):
        previous = run_dir / ".previous"
        aside[i] = {p.name: p.read_bytes() for p in previous.iterdir()} if previous.exists() else {}
        if i == 8:
            raise Killed
    with pytest.raises(ValueError, match="already holds a finished run"):
        train(TrainConfig(**{**TINY, "method": "vanilla"}), run_dir, progress=False)

    vanilla = TrainConfig(**{**TINY, "method": "vanilla", "checkpoint_every": 1000})
    with pytest.raises(Killed) as cut:               # cut in epoch 2, after the checkpoint of epoch 1
        train(vanilla, run_dir, overwrite=True, progress=False, on_iteration=look)
    assert aside[1] == aside[6] == old and aside[7] == {}   # 6 steps an epoch: kept through epoch 1, then gone
    assert not getattr(cut.value, "__notes__", None)               # nothing put back: the new run stays
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "metrics.jsonl", "checkpoint.pt", "best.pt"}
    assert json.loads((run_dir / "config.json").read_text())["method"] == "vanilla"
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"]["iteration"] == 6
    with pytest.raises(ValueError, match="resume it"):
        train(vanilla, run_dir, progress=False)
    resumed = train(vanilla, run_dir, resume=True, progress=False)
    assert stable(resumed) == stable(train(vanilla, tmp_path / "uninterrupted", progress=False))
    assert resumed["method"] == "vanilla" and "test_acc_before_finetune" not in resumed


def test_a_run_cut_before_its_first_checkpoint_is_replaced_only_on_purpose(reference_run, tmp_path):
    """best.pt and metrics rows without checkpoint.pt (deleted by hand, or written by a version that saved its
    first checkpoint after epoch 1). A fresh train must not delete that best model silently, and --resume
    says what to do."""
    import shutil
    run_dir = tmp_path / "cut-early"
    shutil.copytree(reference_run[0], run_dir)
    (run_dir / "checkpoint.pt").unlink()
    (run_dir / "summary.json").unlink()
    best = (run_dir / "best.pt").read_bytes()
    with pytest.raises(ValueError, match="an unfinished run .*no checkpoint.pt to resume it from.*--overwrite"):
        train(TrainConfig(**TINY), run_dir, progress=False)
    with pytest.raises(ValueError, match="no checkpoint to continue from: start it again with --overwrite"):
        train(TrainConfig(**TINY), run_dir, resume=True, progress=False)
    assert (run_dir / "best.pt").read_bytes() == best and len((run_dir / "metrics.jsonl").read_text().splitlines()) > 1


def test_resume_refuses_settings_of_the_arithmetic_and_warns_on_a_finished_run(reference_run, tmp_path):
    import shutil
    import warnings
    from nslviz.training.rundir import RunDirectoryWarning
    run_dir = tmp_path / "finished"
    shutil.copytree(reference_run[0], run_dir)
    for change in ({"channels_last": True}, {"eval_batch_size": 7}, {"compile": True}, {"method": "vanilla"}):
        with warnings.catch_warnings():                  # refused before "it is tested again" is promised
            warnings.simplefilter("error", RunDirectoryWarning)
            with pytest.raises(ValueError, match=f"cannot resume: .*{next(iter(change))}"):
                train(TrainConfig(**{**TINY, **change}), run_dir, resume=True, progress=False)
    with pytest.warns(RunDirectoryWarning, match="has already finished.*tested again"):
        again = train(TrainConfig(**{**TINY, "checkpoint_every": 3}), run_dir, resume=True, progress=False)
    assert stable(again) == stable(reference_run[1])
    timing = {key: reference_run[1][key] for key in ("seconds", "setup_seconds")}
    assert {key: again[key] for key in timing} == timing                      # the training's time, not the test's
    assert {key: json.loads((run_dir / "summary.json").read_text())[key] for key in timing} == timing
    with pytest.raises(ValueError, match="already holds a finished run .*; replace it"):   # not "resume it"
        train(TrainConfig(**TINY), run_dir, progress=False)


def test_only_rank_zero_warns_about_what_it_finds_in_the_run_directory(reference_run, tmp_path, monkeypatch):
    """Under torchrun every process resumes the same run directory; what they find there (a finished run,
    a missing config.json) is said once, by rank 0, not once per process."""
    import shutil
    import warnings
    from nslviz.training.rundir import RunDirectoryWarning
    from nslviz.training.trainer import _warn_if_finished, stored_run_config
    run_dir = tmp_path / "finished"
    shutil.copytree(reference_run[0], run_dir)
    (run_dir / "config.json").unlink()
    for rank, expected in (("0", ["config.json' does not exist", "already finished"]), ("1", [])):
        monkeypatch.setenv("RANK", rank)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stored_run_config(run_dir)
            _warn_if_finished(run_dir)
        said = [str(w.message) for w in caught if issubclass(w.category, RunDirectoryWarning)]
        assert len(said) == len(expected) and all(part in text for part, text in zip(expected, said)), (rank, said)


def test_cli_resume_keeps_the_stored_recipe_and_names_a_foreign_config(reference_run, tmp_path, capsys):
    from nslviz.__main__ import main
    run_dir = str(reference_run[0])
    for flags, said in ((["--preset", "nsl"], "--preset chooses"), (["--nsl-variant", "dynamic_dns"], "--nsl-variant chooses"),
                        (["--preset", "nsl", "--nsl-variant", "cnn"], "--preset and --nsl-variant choose")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--run-dir", run_dir, "--resume", *flags])
        assert exit_info.value.code == 2 and f"{said} a new run's recipe; --resume continues" in capsys.readouterr().err
    foreign = tmp_path / "spiral-run"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"frames": 10, "grid_size": 50}))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(foreign), "--resume"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage:" not in err               # the message alone
    assert f"the configuration in {str(foreign / 'config.json')!r} is not that of a train run" in err
    with pytest.raises(SystemExit) as exit_info:                           # a run-directory refusal: no usage
        main(["train", *_tiny_args(), "--method", "vanilla", "--run-dir", run_dir, "--resume"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage:" not in err and "cannot resume" in err


def test_an_unusable_run_directory_is_refused_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for run_dir, message in ((a_file, "is a file, not a folder"), (a_file / "sub", "cannot be made: .*a-file' is a file")):
        with pytest.raises(ValueError, match=message):
            train(TrainConfig(**TINY), run_dir, progress=False)
    from nslviz.__main__ import main
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *_tiny_args(), "--run-dir", str(a_file)])
    assert exit_info.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err


def test_best_checkpoint_is_the_highest_validation_accuracy_ties_broken_by_lower_loss(tmp_path, monkeypatch):
    import nslviz.training.trainer as trainer
    real_evaluate, scripted = trainer.evaluate, [(0.5, 1.0), (0.9, 0.5), (0.9, 0.3), (0.9, 0.4), (0.8, 0.1)]
    seen, after = [], []

    def evaluate(model, stream, context, autocast):                      # the per-epoch validations are scripted
        state = {k: v.clone() for k, v in model.state_dict().items()}
        if len(seen) < len(scripted):
            seen.append(state)
            acc, loss = scripted[len(seen) - 1]
            return {"acc": acc, "loss": loss, "count": 96}
        after.append((state, stream.size, real_evaluate(model, stream, context, autocast)))
        return after[-1][2]

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    summary = train(TrainConfig(**{**TINY, "epochs": 5, "method": "vanilla"}), tmp_path / "run", progress=False)
    assert summary["best_epoch"] == 3                                   # 0.9 three times: the lowest loss wins
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert all(torch.equal(best[k], seen[2][k]) for k in best)
    assert not all(torch.equal(best[k], seen[1][k]) for k in best)
    # after training: test and validation of the best weights, then the test of the last epoch's weights
    (test_state, _, test), (_, _, val), (last_state, last_size, last) = after
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)          # noqa: E731
    assert same(test_state, seen[2]) and summary["test_acc"] == test["acc"] and summary["val_acc"] == val["acc"]
    assert same(last_state, seen[4]) and last_size == summary["test_count"] and summary["test_acc_last"] == last["acc"]


def test_results_table_shows_best_last_and_before_finetuning(reference_run):
    from nslviz.viz.training import results_table
    _, summary = reference_run
    old = {k: v for k, v in summary.items() if k != "test_acc_last"}       # a summary written before test_acc_last
    table = results_table({"mn": summary, "vanilla": old}, {"mn": 80.28})
    assert table.loc["MN", "test acc %"] == round(100 * summary["test_acc"], 2)
    assert table.loc["MN", "last epoch %"] == round(100 * summary["test_acc_last"], 2)
    assert table.loc["MN", "paper %"] == 80.28 and table.isna().loc["vanilla", "last epoch %"]
    assert table.isna().loc["vanilla", "paper %"]                           # no paper number given for vanilla
    both = results_table({"mn": summary, "vanilla": summary}, {"mn": 80.28, "vanilla": 78.5})
    assert both["paper %"].to_dict() == {"MN": 80.28, "vanilla": 78.5}    # each method beside its own number
    assert table.loc["MN", "test loss"] == round(summary["test_loss"], 4)     # what tells two tied rows apart
    vanilla_only = results_table({"vanilla": {k: v for k, v in summary.items() if k != "test_acc_before_finetune"}})
    assert "before finetuning %" not in vanilla_only.columns                # no MN run: no empty column


def test_load_run_restores_the_best_model(reference_run):
    run_dir, summary = reference_run
    model, config, data = load_run(run_dir)
    assert config.entries == 40 and not model.training
    with torch.no_grad():
        logits = model(data.test.images[:8].float() / 255)
    assert logits.shape == (8, data.num_classes)
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert all(torch.equal(value, best[key]) for key, value in model.state_dict().items())
    assert evaluate(model, BatchStream(data.test, 32, shuffle=False))["acc"] == pytest.approx(summary["test_acc"])


def test_label_smoothing_reaches_the_loss(tmp_path, monkeypatch):
    seen = []
    original = torch.nn.CrossEntropyLoss.__init__

    def recording(self, *args, **kwargs):
        seen.append(kwargs.get("label_smoothing", 0.0))
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "__init__", recording)
    train(TrainConfig(method="vanilla", **{**TINY, "epochs": 1}), tmp_path / "plain", progress=False)
    train(TrainConfig(method="vanilla", **{**TINY, "epochs": 1}, label_smoothing=0.3), tmp_path / "smooth",
          progress=False)
    assert seen == [0.0, 0.3]
    rows = {name: json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0]) for name in ("plain", "smooth")}
    assert rows["smooth"]["train_loss"] > rows["plain"]["train_loss"]          # a smoothed target costs more


# ---------------------------------------------------------------- command line

def _cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "nslviz", *args], capture_output=True, text=True,
                          env=env, timeout=600, **kwargs)


def _tiny_args():
    return ["--dataset", "digits", "--backbone", "convnet4", "--epochs", "2", "--batch-size", "32",
            "--train-limit", "192", "--eval-limit", "96", "--entries", "40", "--device", "cpu",
            "--augment", "crop", "--image-size", "16", "--no-progress"]


def test_cli_train_json_last_line(tmp_path, reference_run):
    out = _cli("train", *_tiny_args(), "--checkpoint-every", "4", "--method", "mn", "--run-dir",
               str(tmp_path / "cli"), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ["test_acc", "val_acc", "epochs", "seconds", "run_dir"]:
        assert key in summary
    assert stable(summary) == stable(reference_run[1])               # CLI = library
    report = out.stdout.strip().splitlines()[-2]
    assert f"test acc {summary['test_acc']:.4f}" in report and f"last epoch {summary['test_acc_last']:.4f}" in report


# `python -m nslviz ...` that then prints the redraw interval of a new progress bar
PROGRESS_PROBE = """import io, sys
from nslviz.__main__ import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
from tqdm.auto import tqdm
print(tqdm(total=1, file=io.StringIO()).mininterval)"""


def test_a_command_logging_to_a_file_redraws_its_bars_every_30_seconds_and_each_epoch(tmp_path):
    """stderr redirected to a log: a bar redraws every 30 s, not ten times a second (a day's training
    would write a million redraws), and at each epoch's end, with its loss. A terminal keeps tqdm's
    rate, and a TQDM_MININTERVAL set by hand is kept."""
    import pty
    import threading
    args = [sys.executable, "-c", PROGRESS_PROBE, "train", *(a for a in _tiny_args() if a != "--no-progress"),
            "--method", "mn", "--run-dir", str(tmp_path / "run")]
    with open(tmp_path / "log", "w") as log:
        logged = subprocess.run(args, stdout=subprocess.PIPE, stderr=log, text=True, timeout=600)
    assert logged.returncode == 0 and logged.stdout.split()[-1] == "30.0"
    redraws = [r for r in re.split("[\r\n]", (tmp_path / "log").read_text()) if "/12 [" in r]   # 2 epochs, 6 steps
    assert len(redraws) == 3 and "0/12" in redraws[0]                   # the start, then each epoch's end
    assert all(f"{6 * e}/12" in r and "loss=" in r and "val_acc=" in r for e, r in enumerate(redraws[1:], 1))

    hand_set = subprocess.run(args[:3] + ["train", "--epochs", "0"], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "TQDM_MININTERVAL": "2"})
    assert hand_set.stdout.split()[-1] == "2.0"
    terminal, screen = pty.openpty()                                  # stderr a terminal
    drained = threading.Thread(target=lambda: _drain(terminal), daemon=True)
    drained.start()
    try:
        shown = subprocess.run(args[:3] + ["train", "--epochs", "0"], stdout=subprocess.PIPE, stderr=screen,
                               text=True, timeout=600)
    finally:
        os.close(screen)
    assert shown.stdout.split()[-1] == "0.1"


def _drain(fd: int) -> None:
    """Read a pseudo-terminal until it closes, so that a process writing to it never blocks."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("args,message", [
    (["--method", "knn"], "invalid choice: 'knn'"),
    (["--epochs", "0"], "expected a positive integer"),
    (["--backbone", "resnet1000"], "unknown backbone 'resnet1000'"),
    (["--dataset", "imagenet22k"], "unknown image dataset 'imagenet22k'; expected one of"),
    (["--resume"], "--resume needs --run-dir"),
    (["--device", "tpu"], "unknown device 'tpu'; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (["--optimizer", "sgd", "--nesterov", "maybe"], "expected true or false, got 'maybe'"),
    (["--freeze-backbone", "maybe"], "expected true or false, got 'maybe'"),
    (["--init-backbone", "nowhere", "--epochs", "1"], "init_backbone (CLI --init-backbone): no best.pt in 'nowhere'"),
    (["--optimizer", "sgd", "--momentum", "nan"], "expected a number in [0, 1), got 'nan'"),
    (["--clip-value", "-1"], "expected a positive number or 'none', got '-1'"),
])
def test_cli_train_bad_arguments_exit_2_with_a_message(args, message, capsys):
    from nslviz.__main__ import main
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--device", "cpu", "--no-progress", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message in err


def test_cli_missing_dataset_names_it_the_path_and_how_to_get_it_without_a_traceback(tmp_path, capsys):
    from nslviz.__main__ import main
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path), "--device", "cpu", "--no-progress",
              "--run-dir", str(tmp_path / "runs" / "c")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and "usage:" not in err   # not an argument error
    assert not (tmp_path / "runs").exists()                   # no empty run folder left behind
    assert err.startswith("python -m nslviz train: error: ")
    assert "cifar10" in err and str(tmp_path) in err and "How to get it" in err


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    import nslviz.training.trainer as trainer
    calls = []

    def nan_at_step_6(model):                                          # step 6 turns every weight to NaN
        calls.append(1)
        return float("nan") * next(model.parameters()).sum() if len(calls) == 6 else 0.0

    monkeypatch.setattr(trainer, "nsl_regularization", nan_at_step_6)
    with pytest.raises(FloatingPointError, match=r"training diverged: a weight became NaN or infinite in epoch 1 "
                                                 r"\(by iteration 6\); '.*checkpoint.pt' is the last finite checkpoint"):
        train(TrainConfig(**TINY), tmp_path / "nan", progress=False)
    checkpoint = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=False)
    assert checkpoint["state"]["iteration"] == 4                       # written before the bad step
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())
    assert (tmp_path / "nan" / "metrics.jsonl").read_text() == ""      # no epoch with NaN metrics


@pytest.mark.slow
def test_cli_resume_after_sigkill(tmp_path, reference_run):
    """A real kill -9 mid-run, then --resume: the same final numbers as the uninterrupted run."""
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nslviz", "train", *_tiny_args(), "--checkpoint-every", "1",
                             "--run-dir", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        checkpoint = run_dir / "checkpoint.pt"
        if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["state"]["iteration"] >= 7:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("the run finished before it could be killed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = _cli("train", "--run-dir", str(run_dir), "--resume", "--no-progress", "--json")
    assert out.returncode == 0, out.stderr
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    expected = {k: v for k, v in stable(reference_run[1]).items() if k != "run_dir"}
    assert {k: v for k, v in stable(resumed).items()} == expected


def _torchrun(*args, scratch: Path, **kwargs):
    """torchrun with two CPU processes; its rendezvous files go to `scratch` (pytest's tmp folder),
    not /tmp, which a killed run would otherwise litter."""
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "nslviz", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    if kwargs.pop("background", False):
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, **kwargs)


# the processes failing to start talking to each other (a port taken, a rendezvous or a connection refused
# on a busy machine), as opposed to a failure once they are training; and gloo's abort as a process exits
# ("terminate called without an active exception": a transport thread still running when the interpreter
# tears down, a known flake of torch's own gloo tests), which can follow a run that trained correctly
_START_UP_FAILURE = re.compile(r"address already in use|EADDRINUSE|RendezvousTimeoutError|DistNetworkError|"
                               r"connection refused", re.I)
_EXIT_ABORT = "terminate called without an active exception"


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """The reference DDP run. A run that failed to start up (the pattern above, and not one metrics row
    written), or that gloo aborted as a process exited, is run once more in a fresh run directory; any
    other failure, or a second one, fails the tests that use it, with every attempt's error."""
    errors = []
    for attempt in (1, 2):
        run_dir = tmp_path_factory.mktemp("ddp") / "ddp"
        out = _torchrun(*_tiny_args(), "--run-dir", str(run_dir), "--json", scratch=run_dir.parent)
        if out.returncode == 0:
            break
        errors.append(f"attempt {attempt}:\n{out.stderr[-3000:]}")
        started = (run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").stat().st_size > 0
        if _EXIT_ABORT not in out.stderr and (started or not _START_UP_FAILURE.search(out.stderr)):
            break
    assert out.returncode == 0, "\n".join(errors)
    return run_dir, out


@pytest.mark.slow
def test_torchrun_two_processes_gloo(ddp_run):
    """DDP on CPU: two processes, one global batch split between them, one run directory."""
    run_dir, out = ddp_run
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1                                             # only rank 0 reports
    summary = json.loads(lines[0])
    assert summary["world_size"] == 2 and summary["test_count"] == 96 and summary["iterations"] == 12
    assert json.loads((run_dir / "summary.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_torchrun_validates_the_model_it_keeps(ddp_run):
    """Under DDP every process updates BatchNorm's running statistics from its own share of a batch;
    the validation of an epoch must be that of the weights rank 0 writes (checkpoint.pt, best.pt), on
    every process: the last epoch's metrics row equals a single-process evaluation of checkpoint.pt."""
    run_dir, _ = ddp_run
    model, config, data = load_run(run_dir, which="last")
    expected = evaluate(model, BatchStream(data.val, config.batch_size, shuffle=False))
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_acc"] == pytest.approx(expected["acc"])
    assert last["val_loss"] == pytest.approx(expected["loss"], rel=1e-6)


@pytest.mark.slow
def test_torchrun_killed_mid_epoch_and_resumed_gives_the_same_metrics(ddp_run, tmp_path):
    """kill -9 of both DDP processes in the second epoch, then a DDP --resume: the same summary and
    the same metrics rows, including the cut epoch's training loss, which sums both ranks' batches."""
    reference_dir, _ = ddp_run
    run_dir = tmp_path / "cut"
    proc = _torchrun(*_tiny_args(), "--checkpoint-every", "1", "--run-dir", str(run_dir), background=True,
                     scratch=tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        checkpoint = run_dir / "checkpoint.pt"
        try:
            if checkpoint.exists() and torch.load(checkpoint, weights_only=False)["state"]["iteration"] >= 8:
                break
        except (EOFError, RuntimeError):                                # caught between write and rename: retry
            pass
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("the DDP run finished before it could be killed")
    psutil = pytest.importorskip("psutil")                              # installed with ipykernel
    tree = [proc.pid, *(child.pid for child in psutil.Process(proc.pid).children(recursive=True))]
    for pid in tree:                                                   # torchrun's workers have their own session
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    time.sleep(0.5)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"]
    assert state["epoch"] == 1 and state["batch"] > 0                  # cut in the middle of epoch 2
    assert not (run_dir / "summary.json").exists()
    out = _torchrun("--run-dir", str(run_dir), "--resume", "--no-progress", "--json", scratch=tmp_path)
    # gloo's abort as a process exits (see _EXIT_ABORT) comes after the run wrote its files: those are compared
    exited_after_the_run = _EXIT_ABORT in out.stderr and (run_dir / "summary.json").exists()
    assert out.returncode == 0 or exited_after_the_run, out.stderr[-3000:]
    resumed = json.loads((run_dir / "summary.json").read_text())
    reference = json.loads((reference_dir / "summary.json").read_text())
    assert {k: v for k, v in stable(resumed).items()} == {k: v for k, v in stable(reference).items()}
    assert (run_dir / "metrics.jsonl").read_text() == (reference_dir / "metrics.jsonl").read_text()


class _FailsWhilePickled:
    def __reduce__(self):
        raise RuntimeError("the disk filled up halfway")


def test_a_write_that_fails_halfway_leaves_the_previous_file_whole(tmp_path):
    from nslviz.training.rundir import atomic_torch_save

    path = tmp_path / "checkpoint.pt"
    atomic_torch_save(path, {"weights": torch.ones(3)})
    with pytest.raises(RuntimeError, match="halfway"):
        atomic_torch_save(path, {"weights": torch.zeros(3), "later": _FailsWhilePickled()})
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]               # no temporary left behind


def test_an_atomic_write_reaches_the_disk_before_the_rename_and_the_rename_after_it(tmp_path, monkeypatch):
    """A power cut must leave the old file or the new one whole: the data is fsynced before the
    rename replaces the old file, and the folder after it (so that the rename itself is on disk)."""
    import stat

    import nslviz._io as io_module
    from nslviz.training.rundir import atomic_write_json
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(io_module.os, "fsync",
                        lambda fd: (calls.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode))), real_fsync(fd))[1])
    monkeypatch.setattr(io_module.os, "replace", lambda a, b: (calls.append(("replace", Path(b).name)), real_replace(a, b))[1])
    atomic_write_json(tmp_path / "summary.json", {"a": 1})
    assert calls == [("fsync", False), ("replace", "summary.json"), ("fsync", True)]   # file, rename, folder
    assert json.loads((tmp_path / "summary.json").read_text()) == {"a": 1}
    umask = os.umask(0o022)
    try:                                            # readable by others as any file, not mkstemp's 0600
        atomic_write_json(tmp_path / "shared.json", {})
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o644


def test_load_run_names_a_folder_of_another_command_and_similarity_only_needs_the_plain_network(tmp_path):
    spiral = tmp_path / "spiral"
    spiral.mkdir()
    (spiral / "config.json").write_text(json.dumps({"steps": 800, "grid_size": 60}))     # what `spiral` writes
    with pytest.raises(ValueError, match=r"does not hold a train run: its config.json is not a TrainConfig "
                                         r"\(unknown TrainConfig field\(s\) \['grid_size', 'steps'\]"):
        load_run(spiral)
    with pytest.raises(ValueError, match="similarity_only .* needs method='vanilla' .*got method='mn'"):
        TrainConfig(nsl="static_dns", similarity_only=True, init_backbone=str(tmp_path))


def test_each_step_draws_its_randomness_from_the_runs_seed(tmp_path, monkeypatch):
    """Entry dropout and the other per-step draws come from derived_seed(seed, rank, iteration): two
    seeds must not share their masks step by step (their means and intervals would be correlated)."""
    from nslviz.training import trainer as trainer_module
    calls = []

    def recorded(*parts):
        calls.append(parts)
        return derived(*parts)

    derived = trainer_module.derived_seed
    monkeypatch.setattr(trainer_module, "derived_seed", recorded)
    train(TrainConfig(**{**TINY, "epochs": 1, "seed": 3}), tmp_path / "run", progress=False)
    steps = [parts for parts in calls if len(parts) == 3]                      # (seed, rank, iteration)
    assert len(steps) == 6 and all(seed == 3 and rank == 0 for seed, rank, _ in steps)
    assert [iteration for *_, iteration in steps] == list(range(6))


def test_each_optimizer_name_builds_that_optimizer_and_the_cosine_classifier_starts_at_scale_10():
    """"adam" adds the decay to the gradient (L2, the official global-similarity code), "adamw" decouples
    it: AdamW subclasses Adam in recent torch, so the type is checked exactly."""
    from nslviz.models.classifier import CosineClassifier
    from nslviz.training.optim import build_optimizer
    model = build_image_model("vanilla", "convnet4", 3, in_channels=1, image_size=16)
    for name, kind in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        assert type(build_optimizer(model, TrainConfig(optimizer=name))) is kind
    assert CosineClassifier(8, 3).scale.item() == 10.0                        # τ of the official code


def test_under_torchrun_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    """Rank 3 of a job with two GPUs a machine uses cuda:1 (LOCAL_RANK), not cuda:3."""
    from nslviz.training import distributed
    chosen = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    context = distributed.setup("cuda")
    assert context.device == torch.device("cuda", 1) and chosen == [torch.device("cuda", 1)]
    assert (context.rank, context.world_size) == (3, 4)


def test_a_length_given_to_the_mn_preset_decays_where_the_papers_epoch_schedule_does():
    """MN appendix A.2: lr x0.1 at epoch 300 of 400 on CIFAR, at 250 of 350 on CINIC-10 and Tiny-ImageNet."""
    for dataset in ("cinic10", "tiny-imagenet"):
        paper = TrainConfig.from_preset("mn", dataset=dataset, epochs=350)
        assert paper.milestone_iterations(703) == [250 * 703]
        assert TrainConfig.from_preset("mn", dataset=dataset, epochs=350, milestones=(0.5,)).milestones == (0.5,)
    assert TrainConfig.from_preset("mn", dataset="cifar100", epochs=400).milestone_iterations(351) == [300 * 351]
    assert TrainConfig.from_preset("mn", dataset="cinic10").milestones == (160 / 260,)          # official length
    sgd = TrainConfig.from_preset("mn", dataset="cinic10", epochs=350, optimizer="sgd", method="vanilla")
    assert sgd.milestones == (0.5, 2 / 3, 5 / 6)                                               # the SGD recipe's own
    assert TrainConfig.from_preset("mn", dataset="tiny-imagenet", iterations=70_000).milestone_iterations(1) == [50_000]
    assert TrainConfig.from_preset("maxl", dataset="cinic10").milestones == (0.25, 0.5, 0.75)   # MAXL's own halvings
    assert TrainConfig.from_preset("mn", dataset="svhn", epochs=40).milestones == (0.75,)       # no epochs in the paper
