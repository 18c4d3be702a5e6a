"""Each command hands its options to the experiment it runs (an option dropped on the way would be
accepted and change nothing), and a missing file is an error without the usage, exit code 2."""
import pytest

from nslviz.__main__ import main


class Reached(Exception):
    """Raised by a stand-in experiment with what it was given."""


def stand_in(*args, **kwargs):
    raise Reached(args, kwargs)


@pytest.mark.parametrize("module, name, argv, given", [
    ("nslviz.cli.spiral", "run_spiral", ["spiral", "--batch-size", "7"], lambda a, k: a[0].batch_size == 7),
    ("nslviz.experiments.neighbors", "analyze_neighbors", ["neighbors", "--run-dir", "runs/x", "--seed", "5"],
     lambda a, k: k["seed"] == 5),
    ("nslviz.cli.higher_order", "run_higher_order", ["higher-order", "--lr", "0.02"], lambda a, k: a[0].lr == 0.02),
    ("nslviz.experiments.race", "run_race", ["race", "--warmup", "50"], lambda a, k: k["warmup"] == 50),
    ("nslviz.experiments.neighbors", "analyze_neighbors",
     ["neighbors", "--run-dir", "runs/x", "--baseline-size", "7", "--device", "cuda:1", "--batch-size", "9"],
     lambda a, k: (k["baseline_size"], k["device"], k["batch_size"]) == (7, "cuda:1", 9)),
    ("nslviz.experiments.few_shot", "run_few_shot", ["few-shot", "--episode-batch", "3", "--data-dir", "elsewhere"],
     lambda a, k: (a[0].episode_batch, a[0].data_dir) == (3, "elsewhere")),
])
def test_a_commands_options_reach_its_experiment(monkeypatch, module, name, argv, given):
    monkeypatch.setattr(f"{module}.{name}", stand_in)
    with pytest.raises(Reached) as reached:
        main(argv)
    assert given(*reached.value.args), reached.value.args


def test_a_missing_file_is_an_error_without_the_usage(monkeypatch, capsys):
    def missing(*args, **kwargs):
        raise FileNotFoundError("data/x.npz does not exist")

    monkeypatch.setattr("nslviz.cli.spiral.run_spiral", missing)
    with pytest.raises(SystemExit) as exit_info:
        main(["spiral"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().endswith("error: data/x.npz does not exist") and "usage:" not in err
