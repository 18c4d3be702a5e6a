"""What a learner must see in quick mode, read from the run directories that notebooks 03, 05 and 07
wrote in the same pytest run (nbval, NSLVIZ_QUICK=1): a dictionary that has learned, and a dynamic
similarity network ahead of the plain one. These tests run after the notebooks; without them
(`pytest tests`, `make test-fast`) they are skipped."""
from pathlib import Path

import pytest

from nslviz.paths import runs_root
from nslviz.training.rundir import RunDirectory

pytestmark = pytest.mark.after_notebooks


def _summary(request, notebook: str, run_dir: Path) -> dict:
    ran = any(Path(str(item.fspath)).name == notebook for item in request.session.items)
    summary = RunDirectory(run_dir, create=False).read_summary()
    if summary is None:
        if ran:
            pytest.fail(f"{notebook} ran in this pytest run but left no summary.json in {run_dir}")
        pytest.skip(f"{notebook} did not run in this pytest run (it writes {run_dir})")
    return summary


@pytest.mark.parametrize("method", ["mn", "mn_ifilm"])
def test_notebook_03_finetuning_helps(request, method):
    summary = _summary(request, "03_cifar.ipynb", runs_root() / "digits-convnet4-compare-seed0" / method)
    assert summary["test_acc"] > summary["test_acc_before_finetune"], summary
    assert summary["test_attended_value_acc"] >= 0.8, summary


def test_notebook_05_entries_retrieve_their_own_class(request):
    from nslviz.experiments.neighbors import analyze_neighbors
    group = runs_root() / "digits-convnet4-coarse-neighbors-seed0"
    summary = _summary(request, "05_learned_neighbors.ipynb", group / "mn")
    assert summary["test_attended_value_acc"] >= 0.8, summary
    retrieval = analyze_neighbors(group / "mn", k=5, seed=0).retrieval
    entries, real_images = retrieval.entries.purity.mean(), retrieval.baseline.purity.mean()
    assert entries >= 0.8 and entries >= real_images - 0.1, (entries, real_images)


def test_notebook_07_dynamic_similarity_ends_ahead_of_the_plain_cnn(request):
    """NSL Table 4's order on digits: the dynamic DNS network (its predictors at a tenth of the rate)
    at least as accurate as the plain CNN-9 on the test images."""
    group = runs_root() / "digits-cnn9-nsl-seed0"
    plain = _summary(request, "07_nsl_cifar.ipynb", group / "cnn")
    dynamic = _summary(request, "07_nsl_cifar.ipynb", group / "dynamic_dns")
    assert dynamic["test_acc"] >= plain["test_acc"], (dynamic["test_acc"], plain["test_acc"])
    assert RunDirectory(group / "dynamic_dns", create=False).read_config()["predictor_lr_scale"] == 0.1
