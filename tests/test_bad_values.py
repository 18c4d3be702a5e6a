"""Values that used to crash, hang or be taken silently: each is now one clear error that names the
value and what was expected (the CLI exits 2, or 1 for a diverged run)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nslviz._checks import MAX_SEED, cpu_count


def _main_exit(capsys, *argv) -> tuple[int, str]:
    from nslviz.__main__ import main
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


# ---------------------------------------------------------------- threads

def test_threads_are_bounded_by_the_cpu_count(capsys):
    from nslviz._threads import torch_threads
    from nslviz.experiments.regression_table import RegressionCVConfig
    code, err = _main_exit(capsys, "regress", "--threads", "100000")
    assert code == 2 and f"expected an integer from 1 to {cpu_count()} (the CPUs of this machine), got '100000'" in err
    for make in (lambda: RegressionCVConfig(threads=100_000), lambda: torch_threads(100_000).__enter__()):
        with pytest.raises(ValueError, match=f"threads must be an integer from 1 to {cpu_count()}"):
            make()
    assert torch.get_num_threads() <= cpu_count()


# ---------------------------------------------------------------- memory

def test_heads_with_too_many_classes_are_refused_with_the_estimate(capsys):
    code, err = _main_exit(capsys, "heads", "--classes", "100000", "--steps", "1")
    assert code == 2
    assert "MN's head on 2000 features of width 16 with 100000 classes and 200 entries needs about" in err
    assert "of memory available on cpu; use fewer classes, entries or test features" in err


def test_a_dictionary_too_large_for_memory_is_refused_before_it_is_allocated(monkeypatch):
    import nslviz._memory as memory
    from nslviz.estimators import MetaNeighborsRegressor
    x = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(ValueError, match=r"linear layer .*with 1000000000000 entries .* needs about .* TB .*"
                                         r"use fewer entries S"):
        MetaNeighborsRegressor(entries=10**12).fit(x, x.sum(1))
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 20 * 10**9)     # the 20 GB that was killed
    with pytest.raises(ValueError, match=r"1000000000 entries .* needs about [\d.]+ TB \(entry activations [\d.]+ TB, "
                                         r"dictionary 64.0 GB\), more than the 20.0 GB of memory available on cpu"):
        MetaNeighborsRegressor(entries=10**9, space="input").fit(x, x.sum(1))
    with pytest.raises(ValueError, match=r"1000000000 entries .* needs about .* TB .* more than the 20.0 GB"):
        MetaNeighborsRegressor(entries=10**9).fit(x, x.sum(1))                      # the feature-space default
    import nslviz.estimators
    assert "only cost time" not in nslviz.estimators.__doc__ and "memory" in nslviz.estimators.__doc__


def test_the_estimate_counts_the_attention_of_a_batch(monkeypatch):
    import nslviz._memory as memory
    from nslviz.regression import MetaNeighborhoodsMLP, mlp_memory
    model = MetaNeighborhoodsMLP(3, 1, entries=1000)
    sizes = mlp_memory(128, 3, 1, 2, 64, 1000)
    assert sizes["attention"] == 6 * 128 * 1000 * 4                      # (2 + 2 layers) tensors of (B, S)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": sum(sizes.values()) - 1)
    with pytest.raises(ValueError, match="on batches of 128 needs about"):
        model.check_memory(128)
    model.check_memory(1)


def test_the_memory_available_is_the_least_of_the_kernels_and_the_containers(monkeypatch, tmp_path):
    import pathlib
    import nslviz._memory as memory
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(memory, "Path", lambda path: cgroup if path == "/sys/fs/cgroup" else pathlib.Path(path))
    (cgroup / "memory.max").write_text("8000000000\n")                     # cgroup v2: 8 GB of which 3 GB used
    (cgroup / "memory.current").write_text("3000000000\n")
    assert memory._cgroup_available() == 5 * 10**9                        # what is left, not the limit
    (cgroup / "memory.current").write_text("9000000000\n")                # over the limit: nothing left
    assert memory._cgroup_available() == 0
    (cgroup / "memory.max").write_text("max\n")                            # no limit
    assert memory._cgroup_available() is None
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 7 * 10**9)
    monkeypatch.setattr(memory, "_cgroup_available", lambda: 2 * 10**9)
    assert memory.available_bytes("cpu") == 2 * 10**9                      # the container's limit binds
    monkeypatch.setattr(memory, "_cgroup_available", lambda: None)
    assert memory.available_bytes("cpu") == 7 * 10**9


# ---------------------------------------------------------------- learning rate, seeds

def test_a_learning_rate_that_overflows_adam_ends_in_the_divergence_error(tmp_path, capsys):
    from nslviz.__main__ import main
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--train-limit", "64", "--eval-limit", "32",
                 "--batch-size", "32", "--image-size", "16", "--device", "cpu", "--lr", "1e38", "--no-progress",
                 "--run-dir", str(tmp_path / "lr")]) == 1
    err = capsys.readouterr().err
    assert "training diverged: the optimiser's step overflowed float32 at learning rate 1e+38 in epoch 1" in err
    assert "Lower the learning rate (--lr)" in err and "Traceback" not in err
    assert main(["spiral", "--steps", "3", "--lr", "1e38"]) == 1
    assert "training diverged: the optimiser's step overflowed float32 at learning rate 1e+38 at step 1" in \
        capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "spiral", "regress", "knn-toy", "implicit-reg", "heads", "neighbors"])
def test_a_seed_out_of_range_is_named_with_the_range_by_every_command(command, capsys):
    extra = ["--run-dir", "x"] if command == "neighbors" else []
    code, err = _main_exit(capsys, command, *extra, "--seed", str(10**23))
    assert code == 2
    assert f"argument --seed: expected an integer from 0 to {MAX_SEED}, got '{10**23}'" in err


def test_library_seeds_out_of_range_are_named():
    from nslviz.training.config import TrainConfig
    with pytest.raises(ValueError, match=f"seed must be an integer from 0 to {MAX_SEED}, got {10**23}"):
        TrainConfig(seed=10**23)


# ---------------------------------------------------------------- paths and messages

def test_an_empty_run_directory_is_refused(capsys):
    from nslviz.training.config import TrainConfig
    from nslviz.training.trainer import train
    for command, path in ((["train", "--dataset", "digits"], ""), (["spiral"], "   "), (["implicit-reg"], "")):
        code, err = _main_exit(capsys, *command, "--run-dir", path)                  # blanks are empty too
        assert code == 2 and "argument --run-dir: expected a folder path, got an empty one ''" in err
    with pytest.raises(ValueError, match="run directory is an empty path ''"):
        train(TrainConfig(dataset="digits"), "", progress=False)


def test_a_write_that_fails_says_what_was_being_written(tmp_path, capsys):
    from nslviz.training.rundir import atomic_write_json
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match=f"cannot write {str(tmp_path / 'file' / 'summary.json')!r}: "):
        atomic_write_json(tmp_path / "file" / "summary.json", {})
    code, err = _main_exit(capsys, "export-notebook", "notebooks/08_nsl_implicit_regularization.ipynb",
                           "--out", str(tmp_path / "file"))
    assert code == 2 and f"output folder {str(tmp_path / 'file')!r} is a file, not a folder" in err
    assert "Errno" not in err


def test_the_precision_hint_names_the_runs_own_precision():
    from nslviz.training.trainer import _check_same_setting
    with pytest.raises(ValueError, match=r"trained with precision 'fp32' and would go on with 'bf16'; pass --amp off"):
        _check_same_setting({"precision": "fp32"}, {"precision": "bf16"}, Path("run"))
    with pytest.raises(ValueError, match=r"trained with precision 'bf16' and would go on with 'fp32'; pass --amp bf16"):
        _check_same_setting({"precision": "bf16"}, {"precision": "fp32"}, Path("run"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")     # numpy's and scikit-learn's own overflow, the case tested
def test_huge_finite_values_say_that_standardising_overflowed():
    from nslviz.estimators import MetaNeighborsClassifier, MetaNeighborsRegressor
    x = np.random.default_rng(0).normal(size=(30, 2))
    huge = x / np.abs(x).max() * 1e308                                 # finite, at most 1e308
    for estimator, y in ((MetaNeighborsRegressor(), x.sum(1)), (MetaNeighborsClassifier(), (x[:, 0] > 0))):
        with pytest.raises(ValueError, match=r"standardising X overflowed: its values reach 1e\+308") as info:
            estimator.fit(huge, y)
        assert "x_train" not in str(info.value) and "NaN" not in str(info.value)
    with pytest.raises(ValueError, match="standardising y overflowed"):
        MetaNeighborsRegressor().fit(x, huge[:, 0])


def test_one_rule_for_an_under_determined_problem(capsys):
    for args in (["--inputs", "1", "--outputs", "1"], ["--inputs", "1", "--samples", "1"]):
        code, err = _main_exit(capsys, "implicit-reg", *args)
        assert code == 2 and "inputs = 1 leaves no under-determined 'full' problem (it needs 1 <= samples < " \
                             "inputs); use inputs >= 2" in err
    code, err = _main_exit(capsys, "implicit-reg", "--inputs", "4", "--samples", "4")
    assert code == 2 and "samples must be < 4 (inputs) for an under-determined 'full' problem, got 4" in err


# ---------------------------------------------------------------- notebooks

def test_check_parameters_names_an_unknown_injected_parameter():
    from nslviz import check_parameters
    parameters = "# Parameters (papermill).\nsteps = 3000   # steps\nseed = 0\nquick = None\n"
    history = ["", parameters, "# Parameters\nsteps = 10\nseeds = 3\n", "import nslviz\nnslviz.check_parameters(globals())"]
    with pytest.raises(ValueError, match="this notebook has no parameter 'seeds' \\(given with papermill -p\\); "
                                         "its parameters are steps, seed, quick"):
        check_parameters({"In": history})
    check_parameters({"In": history[:2] + ["# Parameters\nsteps = 10\n"] + history[3:]})     # known names: fine
    check_parameters({"In": ["", parameters]})                       # Jupyter, no injected cell
    # papermill's text where the default is a bool or a number: "false" becomes False, a word is named
    cells = ["", "# Parameters\ndownload = True\nsteps = 800\nrate = 0.5\nname = 'a'\n",
             "# Parameters\ndownload = 'false'\nname = 'b'\n", "nslviz.check_parameters(globals())"]
    namespace = {"In": cells, "download": "false", "name": "b"}
    check_parameters(namespace)
    assert namespace["download"] is False and namespace["name"] == "b"
    for injected, value, message in (("download = 'maybe'", "maybe", "download must be true or false .*got 'maybe'"),
                                     ("steps = 'abc'", "abc", r"steps must be an integer \(the notebook's default is 800\), got 'abc'"),
                                     ("rate = 'x'", "x", "rate must be a number .*got 'x'")):
        name = injected.split()[0]
        with pytest.raises(ValueError, match=message):
            check_parameters({"In": cells[:2] + [f"# Parameters\n{injected}\n"] + cells[3:], name: value})
    check_parameters({})


def test_check_parameters_reads_papermills_numbers_by_the_default_and_checks_the_values_declared():
    """papermill turns -p steps 2.5 into a float and -p download 1 into an int: where the default is an
    integer or a bool, 3.0 is 3 and 1 is True, anything else is named at once (2.5 steps ran, then failed
    later inside torch or a library; 3 counted as True), and so is True where the default is a number
    (range(True) ran one step). A declared kind is checked whether the value
    came from papermill or from the parameters cell."""
    from nslviz import check_parameters
    cells = ["", "# Parameters\nsteps = 800\ndownload = True\nrate = 0.5\n", "", "nslviz.check_parameters(globals())"]

    def given(**values):
        injected = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in values.items())
        return {"In": cells[:2] + [injected] + cells[3:], **values}
    for values, expected in (({"steps": 3.0, "download": 1, "rate": 2}, {"steps": 3, "download": True, "rate": 2}),
                             ({"download": 0}, {"download": False})):
        namespace = given(**values)
        check_parameters(namespace)
        assert {name: namespace[name] for name in expected} == expected
        assert all(type(namespace[name]) is type(value) for name, value in expected.items())
    for values, message in (({"steps": 2.5}, r"parameter steps must be an integer \(the notebook's default is 800\), got 2.5"),
                            ({"steps": float("nan")}, "parameter steps must be an integer .*got nan"),
                            ({"download": 3}, r"parameter download must be true or false \(the notebook's default is True\), got 3"),
                            ({"download": 0.5}, "parameter download must be true or false"),
                            ({"steps": True}, r"parameter steps must be an integer .*got True"),   # -p steps True
                            ({"rate": False}, r"parameter rate must be a number .*got False")):
        with pytest.raises(ValueError, match=message):
            check_parameters(given(**values))
    check_parameters(given(steps=10), steps="positive_int")
    for namespace, message in ((given(steps=0), "steps must be >= 1, got 0"),
                               ({"steps": -5}, "steps must be >= 1, got -5")):          # the parameters cell's own value
        with pytest.raises(ValueError, match=message):
            check_parameters(namespace, steps="positive_int")
    with pytest.raises(ValueError, match="rate must be finite, got inf"):
        check_parameters({"rate": float("inf")}, rate="positive")


def test_a_preset_names_an_unknown_dataset_or_optimizer_not_a_missing_schedule():
    """A misspelled dataset or optimizer has no official schedule either: the message named the length
    (give the number of epochs), not the typo."""
    from nslviz.training.config import TrainConfig
    for given, message in (({"dataset": "cifar1000"}, "unknown image dataset 'cifar1000'; expected one of 'cifar10'"),
                           ({"optimizer": "adam_w"}, "unknown optimizer 'adam_w'; expected one of 'adamw', 'adam', 'sgd'")):
        with pytest.raises(ValueError, match=message):
            TrainConfig.from_preset("mn", epochs=None, **given)


@pytest.mark.slow
def test_papermill_stops_at_once_on_an_unknown_parameter_and_export_reports_the_notebooks_error(tmp_path, capsys):
    """A real kernel: papermill with a name notebook 08 does not have stops in its second cell; a bad
    value makes export-notebook exit 2 with the cell and the error, keeping the partial notebook."""
    import papermill
    notebook = "notebooks/08_nsl_implicit_regularization.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(notebook, str(tmp_path / "unknown.ipynb"), parameters={"stepz": 10},
                                   cwd="notebooks", kernel_name="python3", progress_bar=False)
    assert info.value.ename == "ValueError" and "no parameter 'stepz'" in info.value.evalue
    assert "its parameters are inputs, outputs, rank" in info.value.evalue
    code, err = _main_exit(capsys, "export-notebook", notebook, "--out", str(tmp_path / "out"), "-p", "steps", "-5")
    partial = tmp_path / "out" / "08_nsl_implicit_regularization.ipynb"
    message = [line for line in err.splitlines() if not line.startswith(("usage:", " "))]
    assert code == 2 and "Traceback" not in err and len(message) == 1, err          # usage, then one line
    assert "08_nsl_implicit_regularization.ipynb stopped in cell In [" in err and "with ValueError: steps" in err
    assert f"the notebook as far as it ran is {str(partial.resolve())!r}" in err and partial.exists()
    assert not (tmp_path / "out" / "08_nsl_implicit_regularization.html").exists()


def test_the_largest_seed_is_accepted_where_another_seed_is_derived_from_it(monkeypatch):
    """Seeds derived from --seed (the test spiral's, the clusters', the next draws of the folds) wrap
    into the accepted range: the top of the documented range is not refused."""
    import types

    import nslviz.experiments.estimators as estimators
    from nslviz._checks import offset_seed
    from nslviz.datasets.toys import cluster_splits, spiral_splits

    assert (offset_seed(5, 1), offset_seed(MAX_SEED, 1), offset_seed(MAX_SEED, 3)) == (6, 0, 2)
    assert spiral_splits(50, seed=MAX_SEED)[2].shape == (100, 2)
    assert len(cluster_splits(40, 20, seed=MAX_SEED)[2]) == 20
    seeds = []
    monkeypatch.setattr(estimators, "compare_estimators",
                        lambda config, seed=None: seeds.append(seed) or types.SimpleNamespace(record=None))
    monkeypatch.setattr(estimators, "pool_draws", lambda records: None)
    config = estimators.EstimatorComparisonConfig(seed=MAX_SEED)
    estimators.compare_draws(config, 3, first=None)
    assert seeds == [None, 0, 1]


# ---------------------------------------------------------------- numbers as text, switches as text

def test_a_number_written_as_text_is_refused_where_it_is_given_not_inside_torch():
    """float("0.1") is 0.1, so the number checks let text through, and it failed later inside torch's
    optimiser or a layer's forward with a TypeError that named no option."""
    from nslviz.ifilm import IFiLM
    from nslviz.neighborhoods import MetaNeighborhoodsHead
    from nslviz.nsl import NSConv2d, SphereConv2d
    from nslviz.training.config import TrainConfig
    for make, message in [(lambda: TrainConfig(dataset="digits", epochs=1, lr="0.1"), "lr must be a number, got '0.1'"),
                          (lambda: MetaNeighborhoodsHead(4, 3, 5, key_init_std="0.05"),
                           "key_init_std must be a number, got '0.05'"),
                          (lambda: NSConv2d(3, 4, kernel_shape=True, shape_init="1.0"),
                           "shape_init must be a number, got '1.0'"),
                          (lambda: NSConv2d(3, 4, mode="static_uns", l2_weight=b"0.1"), "l2_weight must be a number"),
                          (lambda: SphereConv2d(3, 4, angle="sigmoid", sigmoid_k="0.3"),
                           "sigmoid_k must be a number, got '0.3'"),
                          (lambda: IFiLM(4, temperature_init="5"), "iFiLM temperature_init must be a number, got '5'"),
                          (lambda: SphereConv2d(3, 4, init_gain=float("nan")), "init_gain must be finite, got nan"),
                          (lambda: SphereConv2d(3, 4, init_gain=-1), "init_gain must be >= 0, got -1")]:
        with pytest.raises(ValueError, match=message):
            make()


def test_the_loaders_take_true_or_false_for_their_switches_not_text(tmp_path):
    """download="false" is a non-empty string, so it counted as True: the loader went to the network."""
    from nslviz.datasets import load_image_dataset
    from nslviz.datasets.tabular import load_tabular
    for make, message in [(lambda: load_image_dataset("cifar10", root=tmp_path / "data", download="false"),
                           "download must be True or False, got 'false'"),
                          (lambda: load_tabular("music", root=tmp_path / "data", download="false"),
                           "download must be True or False, got 'false'"),
                          (lambda: load_tabular("diabetes", normalize="no"), "normalize must be True or False, got 'no'")]:
        with pytest.raises(ValueError, match=message):
            make()
    assert not (tmp_path / "data").exists()
