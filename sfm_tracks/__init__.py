"""sfm-tracks: point tracks for Structure-from-Motion (track providers, filters, pycolmap bridge)."""
from .tracks import Tracks

__all__ = ["Tracks"]
