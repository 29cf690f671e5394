"""Training CoTracker3 on synthetic (or registered) data: configs, trainer, data plumbing."""
from .configs import CONFIGS, get_config, model_config
from .data import DATASETS, ResumableSampler, register_dataset
from .state import RunError, atomic_save
from .trainer import Trainer

__all__ = ["CONFIGS", "get_config", "model_config", "DATASETS", "ResumableSampler", "register_dataset",
           "RunError", "Trainer", "atomic_save"]
