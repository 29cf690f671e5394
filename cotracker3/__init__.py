"""CoTracker3 (Karaev et al. 2024) in our own code: models, predictors, checkpoints, training."""
from .checkpoint import CheckpointError, build_model, load_weights, read_state_dict, resolve_checkpoint
from .model import CoTrackerThreeOffline, CoTrackerThreeOnline
from .predictor import CoTrackerOnlinePredictor, CoTrackerPredictor

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
