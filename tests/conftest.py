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
