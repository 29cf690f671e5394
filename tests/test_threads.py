import os

import pytest

from sfm_tracks import threads


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 2), (64, threads.MAX_WORKERS)])
def test_pools_take_the_usable_cores_up_to_the_cap(monkeypatch, cores, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert threads.workers() == expected
    assert threads.workers(3) == 3  # an explicit count is taken as given


def test_ordered_map_keeps_the_items_order_and_raises_where_read():
    import time

    def slow_first(k):
        time.sleep(0.05 * max(0, 3 - k))  # the first items finish last
        if k == 4:
            raise ValueError("item 4")
        return k * k

    results = threads.ordered_map(slow_first, range(5), 2)
    assert [next(results) for _ in range(4)] == [0, 1, 4, 9]
    with pytest.raises(ValueError, match="item 4"):
        next(results)
