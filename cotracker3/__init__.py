"""CoTracker3 (Karaev et al. 2024) in our own code: models, predictors, checkpoints, training.

The models and predictors import torch (~2 s), so they load on first use (PEP 562): a pipeline that only asks
which tracker to run, or catches CheckpointError, and then tracks with Lucas-Kanade never imports torch.
"""
import importlib

from .checkpoint import CheckpointError, build_model, load_weights, read_state_dict, resolve_checkpoint

_LAZY = {
    "CoTrackerThreeOffline": ".model",
    "CoTrackerThreeOnline": ".model",
    "CoTrackerPredictor": ".predictor",
    "CoTrackerOnlinePredictor": ".predictor",
}

__all__ = [
    "CoTrackerThreeOffline",
    "CoTrackerThreeOnline",
    "CoTrackerPredictor",
    "CoTrackerOnlinePredictor",
    "CheckpointError",
    "build_model",
    "load_weights",
    "read_state_dict",
    "resolve_checkpoint",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
