"""The team's shared real data (``../shared/data``) for tests marked ``shared_data``.

A clone has no ``../shared`` beside it, so the README's TEST command deselects these tests
(pyproject addopts ``-m "not shared_data"``); ``.ci/run`` selects them with ``-m shared_data``.
Selected without the data they fail, never skip: a green run must mean they ran.
"""
import contextlib
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; fails the test with one clear line when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data folder {SHARED_DATA} not found: tests marked shared_data need the team's "
                    "data beside the repository (../shared/data); deselect them with -m 'not shared_data'",
                    pytrace=False)
    return SHARED_DATA


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """A test that asks for ``shared_data`` is marked ``shared_data`` even if its author forgot:
    runs before ``-m`` deselection, so a clone never runs it by default."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("shared_data"):
            item.add_marker(pytest.mark.shared_data)


@contextlib.contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Training tests on one thread: a 2-core machine shared with other jobs runs them faster and steadier."""
    with _torch_threads(1):
        yield


@pytest.fixture
def two_torch_threads():
    with _torch_threads(2):
        yield
