"""Session-wide test settings (unit tests and the notebooks under nbval): quick mode, and run
directories in a fresh temporary folder so that no test reads results an earlier test run left.
The folder is removed when the session ends: each session writes about 80 MB of runs there, and
leaving them behind fills the disk of a machine that runs the suite often.

`make test` runs two pytest-xdist workers (`-n 2`). They share the main process's run folder, run one
torch thread each, and take whole files as units of work, the notebooks first; notebooks 03, 04, 05
and 07 and the tests that read their runs are one unit (`unit_of_work`, `NotebooksFirstScheduling`)."""
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("NSLVIZ_QUICK", "1")
NOTEBOOKS = "notebooks"                                          # the notebooks' folder
AFTER_NOTEBOOKS_FILES = ("tests/test_quick_mode_shows_mn.py",)   # the files of the after_notebooks tests


def pytest_configure(config):
    """The run folder: made here, or, in a pytest-xdist worker (`config.workerinput`), the main
    process's. A worker runs one torch/OpenMP thread (and so does every notebook kernel or command it
    starts): the workers already keep the cores busy, and more threads would compete for them."""
    worker = getattr(config, "workerinput", None)
    config.nslviz_runs = worker["nslviz_runs"] if worker else tempfile.mkdtemp(prefix="nslviz-test-runs-")
    os.environ["NSLVIZ_RUNS"] = config.nslviz_runs
    if worker:
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        shutil.rmtree(config.nslviz_runs, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked `after_notebooks` read the run directories that the notebooks (run under nbval in
    the same session, quick mode) wrote: they run last (under pytest-xdist: last in their unit of work)."""
    late = [item for item in items if item.get_closest_marker("after_notebooks")]
    items[:] = [item for item in items if not item.get_closest_marker("after_notebooks")] + late
    strays = sorted({item.nodeid.split("::")[0] for item in late} - set(AFTER_NOTEBOOKS_FILES))
    if strays:
        raise pytest.UsageError(f"after_notebooks tests in {strays}: add their files to AFTER_NOTEBOOKS_FILES "
                                f"in conftest.py, so that they run in the unit of work of the notebooks they read")


SHARED_RUNS = ("03_cifar.ipynb", "04_imagenet.ipynb", "05_learned_neighbors.ipynb",
               "07_nsl_cifar.ipynb")                                  # one unit, in this order


def unit_of_work(nodeid: str) -> str:
    """A test's unit of work under pytest-xdist, run in collection order by one worker: its file (a
    notebook's cells share a kernel). Notebooks 03, 04, 05 and 07 and the after_notebooks tests are one
    unit: 04 in quick mode reuses 03's run directories, which admit one process at a time, and the
    after_notebooks tests read what 03, 05 and 07 wrote."""
    path = nodeid.split("::", 1)[0]
    if path.endswith(SHARED_RUNS) or path in AFTER_NOTEBOOKS_FILES:
        return f"{NOTEBOOKS}/shared-runs"
    return path


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:                      # pytest without pytest-xdist: one process, collection order
    pass
else:
    class NotebooksFirstScheduling(LoadScopeScheduling):
        """Units of work by `unit_of_work`; the notebooks' units are handed out first (they are the
        longest, and a long unit started last would keep one worker busy after the other is done).
        (`--dist loadgroup` would serve, but pytest-xdist 3.8 cannot rename the nodes of pytest 9.)"""

        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

        def _assign_work_unit(self, node) -> None:
            for unit in reversed([unit for unit in self.workqueue if unit.startswith(f"{NOTEBOOKS}/")]):
                self.workqueue.move_to_end(unit, last=False)
            super()._assign_work_unit(node)

    # optional: `pytest -p no:xdist` runs without the plugin that declares these hooks
    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(config, log):
        return NotebooksFirstScheduling(config, log)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(node):
        """Every worker writes its runs into the main process's folder (see pytest_configure)."""
        node.workerinput["nslviz_runs"] = node.config.nslviz_runs
