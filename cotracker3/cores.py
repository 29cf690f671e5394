"""How many CPU cores this process may run on: a container or `taskset` may allow fewer than the machine has.

Torch-free, so that sfm_tracks' thread pools ask the same question as the training's DataLoader workers.
"""
from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores in this process's CPU affinity (os.cpu_count() where the platform has none), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
