"""Session-wide test settings (unit tests and the notebooks under nbval): quick mode, and run
directories in a fresh temporary folder so that no test reads results an earlier test run left."""
import os
import tempfile

os.environ.setdefault("NSLVIZ_QUICK", "1")
os.environ["NSLVIZ_RUNS"] = tempfile.mkdtemp(prefix="nslviz-test-runs-")
