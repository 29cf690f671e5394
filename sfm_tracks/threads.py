"""How many threads a pool gets, for the steps whose result does not depend on it.

One rule for every such step (image writing, query SIFT, refinement, PnP between keyframes): the work they hand
out runs in OpenCV, pycolmap or numpy, which release the GIL, so a pool takes one thread per core this process may
run on (a container or `taskset` may allow fewer than the machine has), at most `MAX_WORKERS`: past that the Python
between the calls holds the GIL and more threads only contend.
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
