import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("NSLVIZ_QUICK", "1")


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny tensors (`pytestmark = pytest.mark.usefixtures("one_thread")`): one
    intra-op thread is as fast, and several times faster when other processes share the cores."""
    from nslviz._threads import torch_threads
    with torch_threads(1):
        yield


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """Every test leaves torch's intra-op thread count as it found it. A benchmark's main(--threads 1)
    sets it for the whole process; a later test that compares an in-process run with a command-line
    run (default threads) then differs in the last bits (float sums split over other threads)."""
    import torch
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def pytest_ignore_collect(collection_path, config):
    """tests/browser runs only when named on the command line (`make test-browser`): it drives a
    Chromium and a JupyterLab server, which the unit suite (`make test`) does not need."""
    from pathlib import Path

    browser_tests = Path(__file__).resolve().parent / "browser"
    if collection_path.resolve() != browser_tests:
        return None
    named = [Path(str(arg).split("::")[0]).resolve() for arg in config.args]
    return True if not any(path == browser_tests or browser_tests in path.parents for path in named) else None
