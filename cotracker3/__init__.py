"""CoTracker3 (Karaev et al. 2024) in our own code: models, predictors, checkpoints, training."""
