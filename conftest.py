"""Session-wide test settings (unit tests and the notebooks under nbval): quick mode, and run
directories in a fresh temporary folder so that no test reads results an earlier test run left.
The folder is removed when the session ends: each session writes about 80 MB of runs there, and
leaving them behind fills the disk of a machine that runs the suite often."""
import os
import shutil
import tempfile

os.environ.setdefault("NSLVIZ_QUICK", "1")
_RUNS = tempfile.mkdtemp(prefix="nslviz-test-runs-")
os.environ["NSLVIZ_RUNS"] = _RUNS


def pytest_unconfigure(config):
    shutil.rmtree(_RUNS, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked `after_notebooks` read the run directories that the notebooks (run under nbval in
    the same session, quick mode) wrote: they run last."""
    late = [item for item in items if item.get_closest_marker("after_notebooks")]
    items[:] = [item for item in items if not item.get_closest_marker("after_notebooks")] + late
