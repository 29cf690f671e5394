"""Thread pools for the steps that hand out independent pieces of work, and how many threads they get.

One rule for every such step (image writing, query SIFT, refinement, PnP between keyframes): their work runs in
OpenCV, pycolmap or numpy, which release the GIL, so a pool takes one thread per core this process may run on
(`cotracker3.cores.usable_cores`), at most `MAX_WORKERS`: the Python between the calls holds the GIL, so threads
stop paying somewhere (the cap image writing and refinement had before; measured only on 2 cores, where
refinement took 4.0-5.1 s on 2 threads and 6.1-6.6 s on 4: BENCHMARKS).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

from cotracker3.cores import usable_cores

MAX_WORKERS = 8


def workers(requested: int = -1) -> int:
    """`requested` threads if positive, else one per usable core, at most MAX_WORKERS."""
    if requested > 0:
        return requested
    return max(1, min(usable_cores(), MAX_WORKERS))


def ordered_map(fn: Callable, items: Iterable, requested: int = -1) -> Iterator:
    """fn(item) for each item on `workers(requested)` threads, yielded in the items' order as they are ready; an
    exception in fn is raised where its result is read."""
    with ThreadPoolExecutor(max_workers=workers(requested)) as pool:
        yield from pool.map(fn, items)
