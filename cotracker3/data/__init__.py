"""Training and evaluation data: the synthetic Kubric-like generator and its datasets."""
