"""How many threads a pool gets, for the steps that hand out independent pieces of work.

One rule for every such step (image writing, query SIFT, refinement, PnP between keyframes): their work runs in
OpenCV, pycolmap or numpy, which release the GIL, so a pool takes one thread per core this process may run on (a
container or `taskset` may allow fewer than the machine has), at most `MAX_WORKERS`: the Python between the calls
holds the GIL, so threads stop paying somewhere (the cap image writing and refinement had before; measured only on
2 cores, where refinement took 4.0-5.1 s on 2 threads and 6.1-6.6 s on 4: BENCHMARKS).
"""
from __future__ import annotations

import os

MAX_WORKERS = 8


def workers(requested: int = -1) -> int:
    """`requested` threads if positive, else one per usable core, at most MAX_WORKERS."""
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))
