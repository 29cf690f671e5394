"""Training CoTracker3 on synthetic (or registered) data: configs, trainer, data plumbing."""
from .configs import CONFIGS, get_config, model_config
from .data import DATASETS, ResumableSampler, register_dataset
from .trainer import Trainer, atomic_save

__all__ = ["CONFIGS", "get_config", "model_config", "DATASETS", "ResumableSampler", "register_dataset",
           "Trainer", "atomic_save"]
