import os

import pytest

from sfm_tracks import threads


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 2), (64, threads.MAX_WORKERS)])
def test_pools_take_the_usable_cores_up_to_the_cap(monkeypatch, cores, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert threads.workers() == expected
    assert threads.workers(3) == 3  # an explicit count is taken as given
