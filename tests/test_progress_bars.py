"""A progress bar ends full when its work is done, early stopping included: in JupyterLab a bar closed
short of its total turns red and stays on screen, which reads as a failure."""
import pytest
import torch
from tqdm.auto import tqdm as real_tqdm

import nslviz.experiments.implicit_regularization as implicit_regularization
import nslviz.training.steps as steps_module
import nslviz.training.tabular as tabular
from nslviz.training.tabular import build_mlp, fit_tabular


@pytest.fixture
def closed_bars(monkeypatch):
    """(n, total) of every bar each module opens, taken as it closes."""
    closed = []

    class Recording(real_tqdm):
        def close(self):
            if not getattr(self, "_recorded", False):
                closed.append((self.n, self.total))
                self._recorded = True
            super().close()

    for module in (steps_module, tabular, implicit_regularization):
        monkeypatch.setattr(module, "tqdm", Recording)
    return closed


def test_fixed_length_loops_end_full(closed_bars):
    model = torch.nn.Linear(2, 1)
    x, y = torch.randn(20, 2), torch.randn(20, 1)
    steps_module.train_steps(model, x, y, torch.nn.functional.mse_loss, steps=7, batch_size=4, lr=1e-2,
                             generator=torch.Generator().manual_seed(0), progress=True)
    config = implicit_regularization.ImplicitRegularizationConfig(steps=30, progress=True)
    implicit_regularization.run_implicit_regularization(config)
    assert closed_bars == [(7, 7), (30, 30)]


def test_early_stopping_ends_its_bar_full(closed_bars):
    x = torch.linspace(-1, 1, 60)[:, None]
    y = x ** 2
    result = fit_tabular(build_mlp(1, 1, 2, 8, seed=0), x[::2], y[::2], x[1::2], y[1::2], lr=1e-2,
                         max_epochs=500, patience=2, tol=1e9, seed=0, progress=True)
    assert result.stopped_early and closed_bars == [(result.epochs, result.epochs)]
