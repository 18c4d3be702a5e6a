"""Quick mode shrinks a notebook's defaults, not the settings its reader chose: a value given with
papermill's -p (or typed into the parameters cell) is kept, or capped at quick mode's size, never
swapped for another. The first two code cells (the parameters, then the set-up) run here as they run
in the notebook, with the given values in between, where papermill injects them."""
import json
from pathlib import Path

import pytest

from nslviz.experiments.knn import QUICK_TEMPERATURES, KnnToyConfig
from nslviz.experiments.race import ARMS, QUICK_ARMS, quick_arms

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def set_up(notebook: str, times: int = 1, papermill: bool = False, **given) -> dict:
    """The notebook's namespace after its parameters cell, the `given` values and its set-up cell (run
    `times` times, as a reader who runs it again does); `papermill`: with IPython's history of the cells
    as papermill leaves it, the given values in an injected cell."""
    code = [c for c in json.loads((NOTEBOOKS / notebook).read_text())["cells"] if c["cell_type"] == "code"]
    namespace = {}
    if papermill:
        injected = "# Parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in given.items())
        namespace["In"] = ["", "".join(code[0]["source"]), injected, "".join(code[1]["source"])]
    exec(compile("".join(code[0]["source"]), notebook, "exec"), namespace)      # noqa: S102 - the notebook's own cells
    namespace.update(given)
    for _ in range(times):
        exec(compile("".join(code[1]["source"]), notebook, "exec"), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("runs", [1, 2])
def test_spiral_sweep_keeps_a_short_list_and_a_smaller_step_count_and_every_value_on_the_sliders(runs, capsys):
    default = set_up("01_spiral_toy.ipynb", runs, quick=True)
    assert (default["trained_temperatures"], default["trained_entries"]) == ([0.1, 0.3], [60, 100])
    assert (default["slider_temperatures"], default["slider_entries"]) == ([0.03, 0.1, 0.3, 1.0], [10, 30, 60, 100])
    assert (default["steps"], default["sweep_steps"]) == (800, 400)
    given = set_up("01_spiral_toy.ipynb", runs, quick=True, sweep_temperatures="0.1,1", steps=300)
    assert (given["trained_temperatures"], given["steps"], given["sweep_steps"]) == ([0.1, 1.0], 300, 300)
    assert "the sweep trains T in [0.1, 1.0] x S in [60, 100] ahead, 300 steps each" in capsys.readouterr().out


def test_spiral_sweep_lists_given_out_of_order_train_the_middle_two_t_and_the_largest_two_s():
    """Quick mode trains "the middle two T and the largest two S" of the lists, and the sliders offer
    every value once, in increasing order, whatever the order (or repeats) of the lists given."""
    given = set_up("01_spiral_toy.ipynb", quick=True, sweep_temperatures="1,0.03,0.3,0.1,0.3",
                   sweep_entries="100,10,60,30")
    assert (given["slider_temperatures"], given["slider_entries"]) == ([0.03, 0.1, 0.3, 1.0], [10, 30, 60, 100])
    assert (given["trained_temperatures"], given["trained_entries"]) == ([0.1, 0.3], [60, 100])


def test_knn_toy_thins_only_the_default_temperatures(capsys):
    assert set_up("02_knn_as_multitask.ipynb", quick=True)["toy_config"].temperatures == QUICK_TEMPERATURES
    given = set_up("02_knn_as_multitask.ipynb", quick=True, temperatures="0.01,0.03")["toy_config"]
    assert given.temperatures == (0.01, 0.03) and given.max_epochs == 120
    assert "MN at T = 0.01, 0.03" in capsys.readouterr().out
    assert KnnToyConfig(max_epochs=50, patience=5).quick().max_epochs == 50      # capped, not raised
    assert set_up("02_knn_as_multitask.ipynb", quick=False)["toy_config"].temperatures == KnnToyConfig().temperatures


def test_race_keeps_the_arms_seeds_and_lengths_asked():
    default = set_up("09_why_the_dictionary_learns.ipynb", quick=True)
    assert {k: default[k] for k in ("datasets", "arms", "seeds", "iterations", "warmup", "head_steps")} == {
        "datasets": ["digits"], "arms": list(QUICK_ARMS), "seeds": [0], "iterations": 300, "warmup": 100,
        "head_steps": 500}
    given = set_up("09_why_the_dictionary_learns.ipynb", quick=True, datasets="synthetic", arms="joint,vanilla",
                   seeds="3,4", iterations=240, head_steps=200)
    assert {k: given[k] for k in ("datasets", "arms", "seeds", "iterations", "warmup", "head_steps")} == {
        "datasets": ["synthetic"], "arms": ["joint", "vanilla"], "seeds": [3], "iterations": 240, "warmup": 80,
        "head_steps": 200}


@pytest.mark.parametrize("arms, expected", [(ARMS, list(QUICK_ARMS)), (tuple(reversed(ARMS)), list(QUICK_ARMS)),
                                            (("warmup", "vanilla_warmup"), ["warmup", "vanilla_warmup"])])
def test_quick_arms(arms, expected):
    assert quick_arms(arms) == expected


def test_learned_neighbors_map_keeps_smaller_sizes():
    default = set_up("05_learned_neighbors.ipynb", quick=True)
    assert (default["map_points"], default["map_entries"], default["map_iterations"]) == (400, 100, 500)
    given = set_up("05_learned_neighbors.ipynb", quick=True, map_points=200, map_entries=50)
    assert (given["map_points"], given["map_entries"]) == (200, 50)


@pytest.mark.parametrize("given, message", [({"embedding": "tnse"}, "unknown embedding method 'tnse'; expected one of"),
                                            ({"k": 0}, "k must be >= 1, got 0"),
                                            ({"grid_rows": 2.5}, "grid_rows must be an integer, got 2.5")])
def test_learned_neighbors_names_a_bad_analysis_setting_before_anything_trains(given, message):
    with pytest.raises(ValueError, match=message):
        set_up("05_learned_neighbors.ipynb", quick=True, **given)


def test_few_shot_quick_mode_caps_the_lengths():
    from nslviz.experiments.few_shot import QUICK_FEW_SHOT, FewShotConfig, quick_few_shot_config

    assert quick_few_shot_config(FewShotConfig(episodes=20, finetune_epochs=10)).episodes == 20
    shorter = quick_few_shot_config(FewShotConfig(episodes=20, finetune_epochs=10, pretrain_epochs=1))
    assert (shorter.finetune_epochs, shorter.pretrain_epochs, shorter.dataset) == (10, 1, QUICK_FEW_SHOT["dataset"])
    default = quick_few_shot_config(FewShotConfig())
    assert {name: getattr(default, name) for name in QUICK_FEW_SHOT} == QUICK_FEW_SHOT


def test_cifar_keeps_a_smaller_dictionary_and_batch_and_names_every_run_it_trains(capsys):
    default = set_up("03_cifar.ipynb", quick=True)["config"]
    assert (default.entries, default.batch_size, default.dataset) == (100, 64, "digits")
    given = set_up("03_cifar.ipynb", quick=True, entries=50, batch_size=32, compare_with="mn")
    assert (given["config"].entries, given["config"].batch_size) == (50, 32)
    assert given["methods"] == ["vanilla", "mn", "mn_ifilm"]                 # vanilla first: the MN runs start from it
    out = capsys.readouterr().out
    assert "training ['vanilla', 'mn', 'mn_ifilm']" in out and "batch 32, adamw lr 0.001" in out
    assert "with α = 0.5 and the dictionary at S training images" in out


def test_trained_methods_and_the_first_lines_texts():
    from nslviz.experiments.compare import mn_start_text, trained_methods
    from nslviz.training.config import TrainConfig

    assert trained_methods(["mn", "mn", "vanilla"]) == ["mn", "vanilla"]
    assert trained_methods(["mn", "mn_ifilm"], "vanilla") == ["vanilla", "mn", "mn_ifilm"]
    assert mn_start_text("scratch") == "MN starts from scratch (the paper)"
    with pytest.raises(ValueError, match="mn_start"):
        trained_methods(["mn"], "warm")
    assert TrainConfig(batch_size=32, optimizer="sgd", lr=0.1, weight_decay=2e-4).recipe_text() == \
        "batch 32, sgd lr 0.1, weight decay 0.0002"


def test_nsl_quick_mode_keeps_the_rows_asked_val_size_0_and_says_how_m_alone_trains(capsys):
    default = set_up("07_nsl_cifar.ipynb", quick=True)
    assert default["variants"] == ["cnn", "dynamic_dns"] and default["config"].val_size is None
    given = set_up("07_nsl_cifar.ipynb", quick=True, variants="static_dns,static_uns", val_size=0, similarity_epochs=1)
    assert given["variants"] == ["static_dns", "static_uns"] and given["config"].val_size == 0
    assert given["similarity_recipe"]["epochs"] == 1
    out = capsys.readouterr().out
    assert "every training image, last model tested" in out and "M alone on top of the CNN: epochs 1, optimizer adamw" in out


def test_estimators_quick_mode_names_an_unknown_table_and_keeps_the_small_tables_asked(capsys):
    for typo in ("iris,wien", ["winee"]):
        with pytest.raises(ValueError, match="unknown tables .*wi.*expected one or more of"):
            set_up("11_scikit_learn_estimators.ipynb", quick=True, tables=typo)
    given = set_up("11_scikit_learn_estimators.ipynb", quick=True, tables="iris,digits")
    assert given["config"].tables == ("iris",) and given["draws"] == 3
    assert "quick mode keeps the small tables ['iris']; pass quick=False to run ['iris', 'digits']" in capsys.readouterr().out
    assert set_up("11_scikit_learn_estimators.ipynb", quick=True, tables="classes10")["config"].tables == (
        "iris", "wine", "diabetes", "friedman1")                      # none of the small ones asked: all four


def test_learned_neighbors_names_a_missing_umap_before_anything_trains(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "umap", None)                  # as if umap-learn were not installed
    with pytest.raises(ImportError, match="embedding method 'umap' needs umap-learn: pip install umap-learn"):
        set_up("05_learned_neighbors.ipynb", quick=True, embedding="umap")


def test_the_paper_number_beside_a_run_is_the_table_3_column_of_its_settings():
    """Notebooks 03 and 04 offer MN Table 3's variants (classifier, optimizer, inner steps, α's form);
    the `paper %` beside such a run is that column of Table 3, not Table 1's number for another recipe."""
    assert set_up("03_cifar.ipynb", quick=False)["paper_row"] == {
        "vanilla": 76.51, "maxl": 77.94, "vanilla_ifilm": 77.16, "mn": 78.84, "mn_ifilm": 79.84}     # Table 1
    steps = set_up("03_cifar.ipynb", quick=False, inner_steps=3, step_size="diagonal")["paper_row"]
    assert steps == {"vanilla": 76.51, "maxl": 77.94, "vanilla_ifilm": 77.16, "mn": 78.40}   # ft:3+D, no iFiLM column
    sgd = set_up("03_cifar.ipynb", quick=False, classifier="dot", optimizer="sgd", method="vanilla")["paper_row"]
    assert sgd == {"vanilla": 76.65, "maxl": 77.94}                                          # dot-sgd
    tiny = set_up("04_imagenet.ipynb", quick=False, dataset="tiny-imagenet", backbone="densenet40", epochs=None,
                  step_size="diagonal")["paper_row"]
    assert tiny["mn"] == 53.16 and "mn_ifilm" not in tiny                                    # ft:1+D


@pytest.mark.parametrize("notebook, given, message", [
    ("01_spiral_toy.ipynb", {"sweep_temperatures": "0.1,-1"}, r"sweep_temperatures must be > 0, got -1.0"),
    ("01_spiral_toy.ipynb", {"sweep_entries": ""}, "sweep_entries must hold at least one value"),
    ("01_spiral_toy.ipynb", {"steps": 2.5}, r"parameter steps must be an integer \(the notebook's default is 3000\), got 2.5"),
    ("01_spiral_toy.ipynb", {"steps": -5}, "steps must be >= 1, got -5"),
    ("01_spiral_toy.ipynb", {"entries": 0}, "entries S must be >= 1, got 0"),
    ("01_spiral_toy.ipynb", {"temperature": 0.0}, "temperature T must be > 0, got 0.0"),
    ("01_spiral_toy.ipynb", {"seed": -1}, "seed must be an integer from 0 to"),
    ("02_knn_as_multitask.ipynb", {"neighbors": -3}, "neighbors must be >= 1, got -3"),
    ("02_knn_as_multitask.ipynb", {"linear_steps": ""}, "linear_steps must hold at least one value"),
    ("03_cifar.ipynb", {"dataset": "cifar1000"}, "unknown image dataset 'cifar1000'; expected one of"),
    ("03_cifar.ipynb", {"head_steps": 0}, "head_steps must be >= 1, got 0"),
    ("05_learned_neighbors.ipynb", {"run_dir": 2024}, "run_dir must be a folder path"),
    ("06_regression_uci.ipynb", {"max_rows": -1}, "max_rows must be >= 2, got -1"),
    ("07_nsl_cifar.ipynb", {"table": "4x"}, "NSL tables with variants are 1, 2, 3, 4, 5 and 8, got '4x'"),
    ("07_nsl_cifar.ipynb", {"variants": ""}, "variants must hold at least one value"),
    ("07_nsl_cifar.ipynb", {"similarity_epochs": 0}, "similarity_epochs must be >= 1, got 0"),
    ("07_nsl_cifar.ipynb", {"similarity_only": 3}, "parameter similarity_only must be true or false"),
    ("08_nsl_implicit_regularization.ipynb", {"higher_order_steps": 0}, "higher_order_steps must be >= 1, got 0"),
    ("08_nsl_implicit_regularization.ipynb", {"steps": 0}, "steps must be >= 1, got 0"),
    ("08_nsl_implicit_regularization.ipynb", {"rank": 13}, r"rank must be <= min\(inputs, outputs\) = 12, got 13"),
    ("08_nsl_implicit_regularization.ipynb", {"seed": -1}, "seed must be an integer from 0 to"),
    ("09_why_the_dictionary_learns.ipynb", {"datasets": "digitz"}, "unknown datasets 'digitz'; expected one of 'digits'"),
    ("09_why_the_dictionary_learns.ipynb", {"arms": "jiont"}, "unknown arms 'jiont'; expected one of 'joint'"),
    ("09_why_the_dictionary_learns.ipynb", {"seeds": -1}, "seeds must be an integer from 0 to"),
    ("09_why_the_dictionary_learns.ipynb", {"iterations": 0}, "iterations must be >= 1, got 0"),
    ("09_why_the_dictionary_learns.ipynb", {"head_steps": 0}, "head_steps must be >= 1, got 0"),
    ("09_why_the_dictionary_learns.ipynb", {"warmup": 0}, r"warmup must be between 1 and iterations - 1 = 299"),
    ("10_nsl_few_shot.ipynb", {"runs": "static_dsn"}, "unknown runs 'static_dsn'; expected one of 'none'"),
    ("11_scikit_learn_estimators.ipynb", {"draws": 1}, "draws must be >= 2, got 1"),
])
def test_a_bad_value_is_named_by_the_set_up_cell_before_anything_trains(notebook, given, message):
    """Each of these passed the set-up cell and failed later: after the training cells (a table, the
    heads' or the race's lengths, the draws), or with a library's message that named no parameter."""
    with pytest.raises(ValueError, match=message):
        set_up(notebook, papermill=True, quick=True, **given)


def test_implicit_regularization_refuses_a_given_lr_in_its_set_up_cell():
    """Quick mode replaces lr (0.3, said in the notebook); a full run checks the one given, before any flow."""
    with pytest.raises(ValueError, match="lr is in units of 1/λ_max and must be < 1"):
        set_up("08_nsl_implicit_regularization.ipynb", papermill=True, quick=False, lr=1.5)


def test_nsl_table_given_as_a_number_by_papermill_is_the_tables_text():
    from nslviz.paper import nsl_table_row
    assert set_up("07_nsl_cifar.ipynb", papermill=True, quick=True, table=3)["paper_row"] == nsl_table_row("3")
