"""A run directory that holds a run is never started again by accident: `train` refuses unless told
to resume or overwrite, and the notebooks' compare_* reuse a finished run, resume a cut one and
refuse to replace one trained with other settings."""
import dataclasses
import json
import os
import shutil

import pytest

from nslviz.__main__ import main
from nslviz.experiments import compare as experiments
from nslviz.training.config import TrainConfig
from nslviz.training.trainer import train
from runs import TINY, interrupt_at, stable

CONFIG = TrainConfig(**dict(TINY, train_limit=96, eval_limit=64))


def snapshot(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def test_a_finished_run_is_not_started_again_unless_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    first = train(CONFIG, run_dir, progress=False)
    before = snapshot(run_dir)
    with pytest.raises(ValueError, match=r"already holds a finished run \(test acc .*\); replace it .*--overwrite"):
        train(dataclasses.replace(CONFIG, temperature=0.5), run_dir, progress=False)
    assert snapshot(run_dir) == before                                   # nothing written, nothing lost
    replaced = train(dataclasses.replace(CONFIG, temperature=0.5), run_dir, overwrite=True, progress=False)
    assert json.loads((run_dir / "config.json").read_text())["temperature"] == 0.5
    assert replaced["iterations"] == first["iterations"]


def test_a_started_run_is_not_restarted_and_resume_excludes_overwrite(tmp_path):
    run_dir = tmp_path / "run"
    interrupt_at(CONFIG, run_dir, 5)                                     # checkpoint at iteration 4, no summary
    with pytest.raises(ValueError, match="already holds a started run"):
        train(CONFIG, run_dir, progress=False)
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        train(CONFIG, run_dir, resume=True, overwrite=True, progress=False)


def test_cli_refuses_a_used_run_dir_with_exit_2_and_overwrites_when_asked(tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--backbone", "convnet4", "--epochs", "1", "--train-limit", "64",
            "--eval-limit", "32", "--entries", "20", "--image-size", "16", "--run-dir", str(tmp_path / "d"),
            "--no-progress"]
    assert main(args) == 0
    with pytest.raises(SystemExit) as refused:
        main(args)
    assert refused.value.code == 2 and "already holds a finished run" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epochs"] == 1
    with pytest.raises(SystemExit) as both:
        main(args + ["--overwrite", "--resume"])
    assert both.value.code == 2 and "exclude each other" in capsys.readouterr().err


def test_compare_reads_a_finished_runs_config_once(tmp_path, monkeypatch):
    from nslviz.training.rundir import RunDirectory
    config = dataclasses.replace(CONFIG, method="vanilla")
    summary = train(config, tmp_path / "group" / "vanilla", progress=False)
    reads, read_config = [], RunDirectory.read_config
    monkeypatch.setattr(RunDirectory, "read_config", lambda run: reads.append(run.path.name) or read_config(run))
    assert experiments.compare_runs({"vanilla": config}, tmp_path / "group", progress=False) == {"vanilla": summary}
    assert reads == ["vanilla"]


def test_compare_puts_back_a_move_a_kill_cut_before_it_reads_the_run(tmp_path):
    """A finished run whose files a kill left in .previous.moving/ is read back, not trained again over."""
    config = dataclasses.replace(CONFIG, method="vanilla")
    run_dir = tmp_path / "group" / "vanilla"
    summary = train(config, run_dir, progress=False)
    before = snapshot(run_dir)
    shutil.copytree(run_dir, tmp_path / "copy")
    shutil.rmtree(run_dir)
    shutil.copytree(tmp_path / "copy", run_dir / ".previous.moving")
    assert experiments.compare_runs({"vanilla": config}, tmp_path / "group", progress=False) == {"vanilla": summary}
    assert snapshot(run_dir) == before


def _stop(i):
    raise KeyboardInterrupt                                              # Ctrl-C in the first epoch


@pytest.mark.parametrize("failure", ["out of memory", "Ctrl-C"])
def test_an_overwrite_that_fails_before_its_first_epoch_ends_keeps_the_previous_run(tmp_path, monkeypatch, failure):
    import nslviz.training.trainer as trainer

    def out_of_memory(model):
        raise RuntimeError("CUDA out of memory")
    run_dir = tmp_path / "run"
    train(CONFIG, run_dir, progress=False)
    before = snapshot(run_dir)
    if failure == "out of memory":                                       # in the first batch
        monkeypatch.setattr(trainer, "nsl_regularization", out_of_memory)
    with pytest.raises(RuntimeError if failure == "out of memory" else KeyboardInterrupt,
                       match="previous run in .* was kept: its files are back as they were"):
        train(dataclasses.replace(CONFIG, method="vanilla"), run_dir, overwrite=True, progress=False,
              on_iteration=_stop if failure == "Ctrl-C" else None)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(before)   # no .previous/ left
    assert snapshot(run_dir) == before


def test_cli_overwrite_that_diverges_says_the_previous_run_was_kept(tmp_path, monkeypatch, capsys):
    import nslviz.training.trainer as trainer
    args = ["train", "--dataset", "digits", "--backbone", "convnet4", "--epochs", "1", "--train-limit", "64",
            "--eval-limit", "32", "--entries", "20", "--image-size", "16", "--run-dir", str(tmp_path / "d"),
            "--no-progress"]
    assert main(args) == 0
    before = snapshot(tmp_path / "d")
    monkeypatch.setattr(trainer, "nsl_regularization", lambda model: float("nan") * next(model.parameters()).sum())
    assert main(args + ["--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "was kept: its files are back as they were" in err
    assert snapshot(tmp_path / "d") == before


def test_a_previous_run_left_aside_by_a_kill_is_neither_in_the_way_nor_read_as_the_new_run(tmp_path):
    """A kill -9 in the first epoch of an overwrite leaves the new run's files and, in .previous/, the old
    run's: --resume continues the new run and --overwrite starts it again, both deleting .previous/ at their
    first epoch end; an overwrite that fails before puts the old run back. A move to or from .previous/
    that a kill cut short (.previous.moving/) is undone at the next start."""
    old = tmp_path / "old"
    train(CONFIG, old, progress=False)
    vanilla = dataclasses.replace(CONFIG, method="vanilla")
    uninterrupted = train(vanilla, tmp_path / "uninterrupted", progress=False)
    killed = tmp_path / "killed"
    interrupt_at(vanilla, killed, 2)                                     # checkpoint at iteration 0
    shutil.copytree(old, killed / ".previous")
    for name, how in (("resumed", {"resume": True}), ("overwritten", {"overwrite": True})):
        run_dir = shutil.copytree(killed, tmp_path / name)
        assert stable(train(vanilla, run_dir, progress=False, **how)) == stable(uninterrupted)
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(snapshot(old))   # no .previous/ left
        assert json.loads((run_dir / "summary.json").read_text())["method"] == "vanilla"

    run_dir = shutil.copytree(killed, tmp_path / "failed")
    with pytest.raises(KeyboardInterrupt, match="was kept"):
        train(vanilla, run_dir, overwrite=True, progress=False, on_iteration=_stop)
    assert snapshot(run_dir) == snapshot(old)                            # the old run, not the killed one
    (run_dir / ".previous.moving").mkdir()
    for name in ("summary.json", "best.pt"):
        os.replace(run_dir / name, run_dir / ".previous.moving" / name)
    with pytest.raises(ValueError, match="already holds a finished run"):
        train(vanilla, run_dir, progress=False)
    assert snapshot(run_dir) == snapshot(old)


def test_a_folder_holding_only_a_run_set_aside_is_not_taken_by_a_plain_start(tmp_path):
    """A kill between setting the old run aside and writing the new config leaves .previous/ alone: a
    plain train there is refused (it would delete the old run at its first epoch end); --overwrite
    replaces it, and deletes a .previous.dropped/ that a kill left half-deleted."""
    run_dir = tmp_path / "run"
    train(CONFIG, tmp_path / "old", progress=False)
    shutil.copytree(tmp_path / "old", run_dir / ".previous")
    with pytest.raises(ValueError, match=r"set aside in \.previous/"):
        train(CONFIG, run_dir, progress=False)
    assert snapshot(run_dir / ".previous") == snapshot(tmp_path / "old")
    shutil.copytree(tmp_path / "old", run_dir / ".previous.dropped")     # a deletion a kill cut short
    train(CONFIG, run_dir, overwrite=True, progress=False)
    assert not (run_dir / ".previous").exists() and not (run_dir / ".previous.dropped").exists()


def test_compare_methods_reuses_resumes_and_refuses_other_settings(tmp_path, monkeypatch):
    group = tmp_path / "group"
    interrupt_at(dataclasses.replace(CONFIG, method="mn"), group / "mn", 5)     # a cut-off mn run
    calls = []
    real_train = experiments.train

    def spy(config, run_dir, **kwargs):
        calls.append((run_dir.name, kwargs["resume"], kwargs["overwrite"]))
        return real_train(config, run_dir, **kwargs)

    monkeypatch.setattr(experiments, "train", spy)
    first = experiments.compare_methods(CONFIG, ["vanilla", "mn"], group_dir=group, progress=False)
    assert calls == [("vanilla", False, True), ("mn", True, False)]             # new run; the cut one resumed
    assert stable(first["mn"]) == stable(train(dataclasses.replace(CONFIG, method="mn"), tmp_path / "whole",
                                               progress=False))

    again = experiments.compare_methods(dataclasses.replace(CONFIG, device="cpu", eval_batch_size=7),
                                         ["vanilla", "mn"], group_dir=group, progress=False)
    assert again == first and len(calls) == 2                                   # finished runs are read back

    changed = dataclasses.replace(CONFIG, temperature=0.5)     # read by MN's head, not by vanilla
    with pytest.raises(ValueError, match=r"holds a mn run with other settings \(temperature: 0\.2 -> 0\.5\)"):
        experiments.compare_methods(changed, ["vanilla", "mn"], group_dir=group, progress=False)
    assert len(calls) == 2                                                       # vanilla read back as it was
    replaced = experiments.compare_methods(changed, ["vanilla", "mn"], group_dir=group, progress=False, overwrite=True)
    assert calls[-1] == ("mn", False, True) and len(calls) == 3 and replaced["vanilla"] == first["vanilla"]
    assert json.loads((group / "mn" / "config.json").read_text())["temperature"] == 0.5
    assert json.loads((group / "vanilla" / "config.json").read_text())["temperature"] == 0.2


@pytest.mark.slow
def test_a_cut_run_started_in_bf16_is_named_not_stuck_when_the_notebook_runs_again_in_fp32(tmp_path):
    """A notebook killed on a GPU (amp auto: bf16) and run again on a CPU (fp32): the cut run cannot
    be resumed exactly; compare_runs says why, and overwrite=True replaces it instead of failing."""
    group = tmp_path / "group"
    interrupt_at(dataclasses.replace(CONFIG, method="vanilla", amp="bf16"), group / "vanilla", 5)   # checkpoint at 4
    with pytest.raises(ValueError, match=r"holds a vanilla run with other settings \(precision: 'bf16' -> 'fp32'\)"):
        experiments.compare_methods(CONFIG, ["vanilla"], group_dir=group, progress=False)
    replaced = experiments.compare_methods(CONFIG, ["vanilla"], group_dir=group, progress=False, overwrite=True)
    assert stable(replaced["vanilla"]) == stable(train(dataclasses.replace(CONFIG, method="vanilla"),
                                                       tmp_path / "whole", progress=False))


@pytest.mark.parametrize("compare_with, methods", [
    (["vanilla", "mn"], ["vanilla", "mn", "mn_ifilm"]),
    ("vanilla", ["vanilla", "mn_ifilm"]),                            # papermill -p compare_with vanilla
    ("vanilla,mn", ["vanilla", "mn", "mn_ifilm"]),
    ('["vanilla", "mn_ifilm"]', ["vanilla", "mn_ifilm"]),            # a list written as text; no repeat
    ("", ["mn_ifilm"]),
    (None, ["mn_ifilm"]),
])
def test_a_notebooks_methods_come_from_a_list_or_from_papermill_text(compare_with, methods):
    from nslviz.experiments.compare import method_list
    assert method_list(compare_with, "mn_ifilm") == methods


def test_an_unknown_method_to_compare_with_is_named():
    from nslviz.experiments.compare import method_list
    with pytest.raises(ValueError, match="unknown method 'v'; expected one of"):
        method_list(["v"], "mn")
    with pytest.raises(ValueError, match="compare_with must be a list"):
        method_list(3, "mn")


def test_a_notebooks_epochs_none_is_the_official_schedule():
    from nslviz.training.config import TrainConfig
    official = TrainConfig.from_preset("mn", dataset="tiny-imagenet", epochs=None)
    assert (official.iterations, official.milestones) == (260_000, (180 / 260,))
    assert official.length_text() == "260,000 iterations, lr x0.1 at 69%"
    assert TrainConfig.from_preset("mn", dataset="cifar10", epochs=7).length_text() == "7 epochs, lr x0.1 at 75%"
    sgd = TrainConfig.from_preset("mn", dataset="cifar10", optimizer="sgd", method="vanilla", lr=None, weight_decay=None)
    assert (sgd.lr, sgd.weight_decay) == (0.1, 2e-4)                 # None: the optimizer's own values
    with pytest.raises(ValueError, match="epochs None asks for the official schedule, and imagenet64 has none"):
        TrainConfig.from_preset("mn", dataset="imagenet64", epochs=None)   # notebook 04's default set: no silent 5


def test_a_setting_asked_as_none_is_compared_unless_the_run_fills_it_in(tmp_path):
    """None for clip_value means no clipping, for train_limit every image: a stored run with a value there
    is another experiment. Only the fields a run resolves (entries, batch_size, augment) may be None."""
    from nslviz.experiments.compare import _changed_settings
    from nslviz.training.rundir import RunDirectory
    stored = dataclasses.replace(CONFIG, clip_value=10.0, train_limit=200)
    run = RunDirectory(tmp_path / "run")
    run.write_config(stored.resolved("crop").to_dict())
    changed = _changed_settings(run.read_config(), dataclasses.replace(stored, clip_value=None, train_limit=None))
    assert "clip_value: 10.0 -> None" in changed and "train_limit: 200 -> None" in changed
    assert _changed_settings(run.read_config(), dataclasses.replace(stored, entries=None, batch_size=None,
                                                                    augment=None)) is None


def test_a_setting_the_run_does_not_read_does_not_make_a_finished_run_another_experiment(tmp_path):
    """The predictors' rate of a plain CNN, the MN head's settings of a vanilla run: a finished run is
    read back; the same settings on a run that reads them are a change, named; a cut run resumes only
    with its own settings (the resume would refuse them), so for it they are a change too."""
    from nslviz.experiments.compare import _changed_settings
    from nslviz.training.rundir import RunDirectory
    for nsl, method, read in (("none", "vanilla", False), ("dynamic_dns", "vanilla", True)):
        stored = dataclasses.replace(CONFIG, nsl=nsl, method=method)
        run = RunDirectory(tmp_path / nsl)
        run.write_config(stored.resolved("crop").to_dict())
        wanted = dataclasses.replace(stored, predictor_lr_scale=0.1, temperature=0.5)
        changed = _changed_settings(run.read_config(), wanted, finished=True)
        assert changed == ("predictor_lr_scale: 1.0 -> 0.1" if read else None)
        assert "temperature: 0.2 -> 0.5" in _changed_settings(run.read_config(), wanted, finished=False)


def test_a_cut_run_asked_with_a_setting_it_does_not_read_is_named_and_replaced_on_request(tmp_path):
    group = tmp_path / "group"
    interrupt_at(dataclasses.replace(CONFIG, method="vanilla"), group / "vanilla", 5)
    changed = dataclasses.replace(CONFIG, temperature=0.5)
    with pytest.raises(ValueError, match=r"holds a vanilla run with other settings \(temperature: 0\.2 -> 0\.5\)"):
        experiments.compare_methods(changed, ["vanilla"], group_dir=group, progress=False)
    replaced = experiments.compare_methods(changed, ["vanilla"], group_dir=group, progress=False, overwrite=True)
    assert replaced["vanilla"]["test_acc"] is not None


def test_the_vanilla_start_names_one_run_from_any_folder_path_or_copy(tmp_path, monkeypatch):
    """mn_start "vanilla" starts the MN runs at the group's vanilla run: the same group reached from another
    working folder, through a symbolic link, or copied elsewhere reads its finished MN runs back (not
    "other settings", with --overwrite as the advice, which would train them again)."""
    import shutil
    monkeypatch.chdir(tmp_path)
    config = dataclasses.replace(CONFIG, epochs=1)

    def compare(group_dir):
        return experiments.compare_methods(config, ["vanilla", "mn"], group_dir=group_dir, mn_start="vanilla",
                                           progress=False)["mn"]["test_acc"]

    first = compare("runs/g")
    assert json.loads((tmp_path / "runs/g/mn/config.json").read_text())["init_backbone"] == str(
        (tmp_path / "runs/g/vanilla").resolve())
    saved = snapshot(tmp_path / "runs/g/mn")
    (tmp_path / "link").symlink_to(tmp_path / "runs")
    for group_dir, folder in ((tmp_path / "runs/g", tmp_path), ("g", tmp_path / "runs"), ("../runs/g", tmp_path / "runs"),
                              ("link/g", tmp_path)):
        monkeypatch.chdir(folder)
        assert compare(group_dir) == first
    assert snapshot(tmp_path / "runs/g/mn") == saved                                # read back, not trained
    shutil.copytree(tmp_path / "runs", tmp_path / "copy/runs", symlinks=True)
    monkeypatch.chdir(tmp_path / "copy")
    assert compare("runs/g") == first and snapshot(tmp_path / "copy/runs/g/mn") == saved


def test_a_cut_mn_run_stored_with_a_relative_start_resumes(tmp_path, monkeypatch):
    """A run started with init_backbone "runs/g/vanilla" (relative, as older versions wrote it) and cut:
    the same comparison resumes it, with its own stored settings."""
    monkeypatch.chdir(tmp_path)
    config = dataclasses.replace(CONFIG, epochs=2)
    experiments.compare_methods(config, ["vanilla"], group_dir="runs/g", progress=False)
    start = dict(zip(experiments.MN_START_SETTINGS, ("runs/g/vanilla", "data", experiments.VANILLA_START_ALPHA)))
    interrupt_at(dataclasses.replace(config, method="mn", **start), tmp_path / "runs/g/mn", 4)
    resumed = experiments.compare_methods(config, ["vanilla", "mn"], group_dir=tmp_path / "runs/g", mn_start="vanilla",
                                          progress=False)
    assert resumed["mn"]["iterations"] == 6                                      # 2 epochs of 3 batches
    assert json.loads((tmp_path / "runs/g/mn/config.json").read_text())["init_backbone"] == "runs/g/vanilla"


def test_two_starts_name_one_run_by_their_group_and_run_folders():
    from nslviz.experiments.compare import _same_run
    assert _same_run("runs/g/vanilla", "/home/me/runs/g/vanilla") and _same_run(None, None)
    assert _same_run("/gpu/box/runs/g/vanilla", "/home/me/runs/g/vanilla")            # moved or copied
    assert not _same_run("runs/g/vanilla", "/home/me/runs/h/vanilla")
    assert not _same_run("runs/g/vanilla-lr=0.01", "/home/me/runs/g/vanilla")
    assert not _same_run("runs/g/vanilla", None) and not _same_run("../vanilla", "/home/me/vanilla")
